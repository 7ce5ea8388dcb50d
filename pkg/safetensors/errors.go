package safetensors

import "errors"

// Every refusal has its own sentinel so callers (and tests) can tell them
// apart with errors.Is; the wrapping error adds the tensor or file name.
var (
	// ErrFileTooSmall: fewer than the 8 bytes that hold the header length.
	ErrFileTooSmall = errors.New("safetensors: file shorter than the 8-byte header length")
	// ErrHeaderTooLarge: the header length is above Options.MaxHeaderBytes.
	ErrHeaderTooLarge = errors.New("safetensors: header too large")
	// ErrHeaderBeyondFile: the header length points past the end of the file.
	ErrHeaderBeyondFile = errors.New("safetensors: header length beyond end of file")
	// ErrHeaderStart: the header does not begin with '{'.
	ErrHeaderStart = errors.New("safetensors: header does not start with '{'")
	// ErrHeaderUTF8: the header is not valid UTF-8.
	ErrHeaderUTF8 = errors.New("safetensors: header is not valid UTF-8")
	// ErrHeaderJSON: the header is not a well-formed safetensors JSON object.
	ErrHeaderJSON = errors.New("safetensors: header is not a valid JSON object")
	// ErrDuplicateKey: a JSON object repeats a key (encoding/json would keep the last).
	ErrDuplicateKey = errors.New("safetensors: duplicate key")
	// ErrMetadata: __metadata__ is not an object of string values.
	ErrMetadata = errors.New("safetensors: __metadata__ must map strings to strings")
	// ErrDType: a dtype other than F32, F16 or BF16.
	ErrDType = errors.New("safetensors: unsupported dtype")
	// ErrNegativeDim: a shape dimension below zero.
	ErrNegativeDim = errors.New("safetensors: negative dimension in shape")
	// ErrOverflow: product(shape)·dtype size does not fit in an int.
	ErrOverflow = errors.New("safetensors: shape size overflows")
	// ErrBadOffsets: data_offsets is not [begin, end] with 0 <= begin <= end.
	ErrBadOffsets = errors.New("safetensors: data_offsets must be [begin, end] with 0 <= begin <= end")
	// ErrOutOfBounds: a tensor ends past the end of the file.
	ErrOutOfBounds = errors.New("safetensors: tensor data outside the file")
	// ErrLength: end-begin differs from product(shape)·dtype size.
	ErrLength = errors.New("safetensors: tensor byte length does not match shape and dtype")
	// ErrOverlap: two tensors share bytes.
	ErrOverlap = errors.New("safetensors: tensor data overlaps another tensor")
	// ErrHole: unused bytes before a tensor (at the start or between tensors).
	ErrHole = errors.New("safetensors: hole in tensor data")
	// ErrIncompleteBuffer: bytes after the last tensor; like the reference Rust
	// crate (MetadataIncompleteBuffer) the tensors must cover the whole data region.
	ErrIncompleteBuffer = errors.New("safetensors: tensor data does not cover the end of the file")
	// ErrNotFound: no tensor of that name.
	ErrNotFound = errors.New("safetensors: tensor not found")

	// ErrNoWeights: a model directory holds neither model.safetensors nor its index.
	ErrNoWeights = errors.New("safetensors: no model.safetensors or model.safetensors.index.json")
	// ErrIndex: model.safetensors.index.json is malformed.
	ErrIndex = errors.New("safetensors: invalid model.safetensors.index.json")
	// ErrShardName: the index names a file that is not a plain name inside the directory.
	ErrShardName = errors.New("safetensors: shard file name must be a plain file name")
	// ErrShardMissing: the index names a file that does not exist.
	ErrShardMissing = errors.New("safetensors: shard file listed in the index is missing")
	// ErrShardMismatch: a tensor is not in the shard the index assigns it to.
	ErrShardMismatch = errors.New("safetensors: shard contents do not match the index")
)
