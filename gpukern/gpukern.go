// Package gpukern defines the kernels the transformer forward pass needs, behind one
// interface with two implementations: gpukern/cpuref (pure Go, the default backend and the
// reference) and gpukern/cuda (behind the cuda build tag; its kernel sources are in
// gpukern/cuda/kernels).
//
// Conventions shared by every kernel:
//   - Tensors are opaque buffers owned by the backend; shapes are passed with each call and
//     all matrices are row-major.
//   - Small per-step metadata (token ids, positions, KV slots, segments) travels as host
//     slices; a device backend copies it to the device (gpukern/cuda: once per flush of the
//     kernels it records).
//   - Kernels do not validate shapes against the data they are given: the caller (the model)
//     owns shapes. A wrong shape is a programming error, never user input.
package gpukern

// Tensor is a buffer of float32 elements (as seen by the caller) owned by a Backend. A device
// backend may store weights, adapters and the KV cache in a narrower type such as bf16;
// activations (Alloc) keep float32.
type Tensor interface {
	// Len is the number of elements.
	Len() int
}

// KVCache is the paged key/value cache of every layer. Slot s (= block·BlockSize + offset)
// of a layer holds KVHeads·HeadDim values of K and of V.
type KVCache struct {
	K, V      []Tensor // one per layer, each [NumBlocks·BlockSize, KVHeads·HeadDim]
	NumBlocks int
	BlockSize int
	KVHeads   int
	HeadDim   int
}

// AttnSeq describes one sequence's rows in a batch for Attention. Its query rows are
// [QStart, QStart+QLen); they are the last QLen of its CtxLen tokens, so query row i sees
// context positions 0..CtxLen-QLen+i (causal). Prefill has QLen == CtxLen, a decode step
// QLen == 1, a chunked prefill anything between.
type AttnSeq struct {
	QStart, QLen int
	CtxLen       int
	Blocks       []int32 // the sequence's block table: position p lives in Blocks[p/BlockSize]
}

// AttnParams are the attention dimensions shared by every sequence in a call.
type AttnParams struct {
	Heads, KVHeads, HeadDim int
	Scale                   float32 // usually 1/sqrt(HeadDim)
}

// LoRAPart is one adapter's matrices for one part of a projection. A projection may fuse
// several (q, k and v; gate and up) whose weights are stacked by rows, and an adapter has
// matrices of its own rank for each part it touches: A [Rank, in], B [out, Rank] with out the
// part's output size. A nil A means the adapter leaves the part unchanged.
type LoRAPart struct {
	A, B  Tensor
	Rank  int
	Scale float32
}

// HostTensor is a tensor in host memory: float32, or bfloat16 when BF16 is set (the host
// tier of a backend that holds adapters in bf16 keeps them so, in half the memory).
type HostTensor struct {
	F32  []float32
	BF16 []uint16
}

// Len is the number of elements.
func (h HostTensor) Len() int {
	if h.BF16 != nil {
		return len(h.BF16)
	}
	return len(h.F32)
}

// LoRASegment is a run of consecutive batch rows that share one adapter (or none). Parts
// holds the adapter's matrices for each part of the projection being computed, in the order
// of their output columns; nil Parts means the rows have no adapter. Every segment with
// Parts has one per part of the projection.
type LoRASegment struct {
	Start, End int
	Parts      []LoRAPart
}

// SampleParams are one row's settings for Backend.Sample.
//
// With Temperature ≤ 0 the row's token is its argmax (the first index of the largest logit; 0
// when none is above -inf). Otherwise, with z = logits/Temperature and p = softmax(z), in
// worker/sample's (vLLM's) order:
//  1. TopK (0 < TopK < vocab) keeps the tokens whose logit is ≥ the TopK-th largest (ties kept);
//  2. MinP (> 0) drops the tokens with p < MinP·max(p);
//  3. TopP (< 1) keeps, of the rest, the tokens with p ≥ t for the largest t whose kept mass
//     reaches TopP of the remaining mass;
//  4. the token is the first index, in vocabulary order, at which the running sum of the
//     survivors' p exceeds U times their total (the last survivor if rounding leaves none).
//
// Tokens whose logit is -inf are never picked unless no logit is finite (then the argmax rule).
type SampleParams struct {
	Temperature, TopP, MinP float32
	TopK                    int32
	U                       float32 // uniform in [0, 1), from the request's seeded generator
}

// Backend runs the kernels. Implementations are not safe for concurrent use: one forward pass
// at a time.
type Backend interface {
	// Name identifies the backend ("cpu", "cuda").
	Name() string

	// Alloc returns a zeroed activation buffer of n elements.
	Alloc(n int) Tensor
	// Weight stores read-only parameters (copied; the backend may convert them).
	Weight(data []float32) Tensor
	// AllocCache returns a zeroed KV cache buffer of n elements, in the backend's cache type.
	AllocCache(n int) Tensor
	// AdapterWeights stores one LoRA adapter's tensors (copied, possibly converted) in the
	// backend's adapter memory, which may be a fixed pool: it fails when the pool is full or
	// the adapter is larger than a pool slot. The data must stay unchanged until the
	// tensors are freed. FreeAdapterWeights returns them.
	AdapterWeights(data []HostTensor) ([]Tensor, error)
	FreeAdapterWeights(ts []Tensor)
	// Free releases t; it must not be used afterwards.
	Free(t Tensor)
	// Upload copies host data into t (len(src) ≤ t.Len()).
	Upload(t Tensor, src []float32)
	// Download copies the first len(dst) elements of t to the host.
	Download(dst []float32, t Tensor)
	// Sync waits for queued work and reports a failure of any kernel since the last Sync.
	Sync() error

	// Embedding gathers rows: out[i,:] = table[ids[i],:], for rows of dim elements. It also
	// serves as the row gather of hidden states before the LM head.
	Embedding(out, table Tensor, ids []int32, dim int)
	// RMSNorm: out[r,:] = x[r,:] / sqrt(mean(x[r,:]²) + eps) · w. With a non-nil residual,
	// x += residual (+ delta, when non-nil: a LoRA delta of the residual) first and is kept
	// (the residual add fused with the norm after it); out may alias residual.
	RMSNorm(out, x, residual, delta, w Tensor, rows, dim int, eps float32)
	// MatMul: out[m,n] = x[m,k] · w[n,k]ᵀ (w in Hugging Face's [out, in] layout).
	MatMul(out, x, w Tensor, m, n, k int)
	// AddBias: x[r,:] += bias, for rows of dim elements.
	AddBias(x, bias Tensor, rows, dim int)
	// Add: out = a + b elementwise over n elements (out may alias a or b).
	Add(out, a, b Tensor, n int)
	// SiLUMul: out[r, i] = silu(g[r, i]) · g[r, dim+i] for out [rows, dim], where g is the
	// fused gate and up projections gateUp [rows, 2·dim] plus, when non-nil, their LoRA delta
	// of the same shape; out does not alias gateUp.
	SiLUMul(out, gateUp, delta Tensor, rows, dim int)
	// RoPEWriteKV takes the fused q, k and v projections qkv [rows, (heads + 2·KVHeads)·HeadDim]
	// (a row holds q, then k, then v) plus, when non-nil, their LoRA delta of the same shape,
	// and leaves both unchanged. It writes to q [rows,
	// heads·HeadDim] the heads of q rotated by their row's position, in rotate_half order
	// (pairs i and i+HeadDim/2), and stores row i's k, rotated the same way, and v at slot
	// slots[i] of a layer of the cache. cosSin is [maxPos, HeadDim] holding cos(pos·inv[i]) in
	// the first half of a row and sin in the second.
	RoPEWriteKV(q, qkv, delta Tensor, rows, heads int, pos []int32, cosSin Tensor, cache *KVCache, layer int, slots []int32)
	// Attention computes causal attention with grouped KV heads over the paged cache:
	// out [rows, Heads·HeadDim] from q [rows, Heads·HeadDim]. Given the seqs of the Attention
	// call before it, with no Sync between, it must get them unchanged (every layer of a
	// step passes the same): a backend may reuse what it made of them.
	Attention(out, q Tensor, cache *KVCache, layer int, seqs []AttnSeq, p AttnParams)
	// LoRAShrink: v[r, p·vStride + j] = x[r, 0:in] · A[j, :] for j < Rank, for every part p
	// (with an A) of the segment of each row. A row of v has parts·vStride elements, vStride ≥
	// every Rank; the elements of parts without an adapter are not written.
	//
	// A device backend may run it, and the LoRAExpand after it, concurrently with the calls
	// that follow, up to the next call given the expand's delta (RMSNorm, SiLUMul,
	// RoPEWriteKV, RoPEAttention) or Add: those calls must not write x, v or delta.
	LoRAShrink(v, x Tensor, segs []LoRASegment, in, vStride int)
	// LoRAExpand writes the LoRA delta of a projection: delta[r, off+o] = Scale · v[r,
	// p·vStride : p·vStride+Rank] · B[o, :] for o < outDims[p] and every part p with an A of
	// the segment of row r, where off is the sum of outDims[:p], and 0 for the other rows and
	// parts; a row of delta has the sum of outDims elements. Given the segs of the LoRAShrink
	// just before, it must get them unchanged: a backend may reuse what it made of them.
	//
	// The delta is for the calls named at LoRAShrink to add to the output of the projection's
	// MatMul, the next call, of the shrink's x: a backend may instead add it to that output
	// itself and leave delta unwritten, adding nothing where those calls name it.
	LoRAExpand(delta, v Tensor, segs []LoRASegment, outDims []int, vStride int)
	// Sample picks one token for each of rows row0.. row0+len(params)-1 of logits [_, vocab]
	// into ids (see SampleParams), so that only token ids leave the device.
	Sample(ids []int32, logits Tensor, row0, vocab int, params []SampleParams)
}

// RoPEAttender is a backend that does RoPEWriteKV and then Attention of the same rows in one
// call, where it can in fewer kernels (a step of decode rows: the attention kernel rotates q
// and k and writes the cache itself). The arguments are RoPEWriteKV's and Attention's; heads is
// p.Heads, and q may be left unwritten.
type RoPEAttender interface {
	RoPEAttention(out, q, qkv, delta Tensor, rows int, pos []int32, cosSin Tensor, cache *KVCache, layer int, slots []int32,
		seqs []AttnSeq, p AttnParams)
}

// RoPEAttention does RoPEWriteKV and then Attention of the same rows on be (the arguments as
// RoPEAttender's), in one call where be is a RoPEAttender.
func RoPEAttention(be Backend, out, q, qkv, delta Tensor, rows int, pos []int32, cosSin Tensor, cache *KVCache, layer int,
	slots []int32, seqs []AttnSeq, p AttnParams) {
	if ra, ok := be.(RoPEAttender); ok {
		ra.RoPEAttention(out, q, qkv, delta, rows, pos, cosSin, cache, layer, slots, seqs, p)
		return
	}
	be.RoPEWriteKV(q, qkv, delta, rows, p.Heads, pos, cosSin, cache, layer, slots)
	be.Attention(out, q, cache, layer, seqs, p)
}
