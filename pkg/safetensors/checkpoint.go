package safetensors

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// File names in a Hugging Face model directory.
const (
	singleFileName = "model.safetensors"
	indexFileName  = "model.safetensors.index.json"
)

// maxIndexBytes bounds the index file read into memory; real indexes of
// very large models are a few MB.
const maxIndexBytes = 64 << 20

// Checkpoint is the weights of a model directory: model.safetensors, or the
// shards listed by model.safetensors.index.json. Its methods are safe for
// concurrent use.
type Checkpoint struct {
	files []*File
	where map[string]*File // tensor name → file holding it
}

// OpenDir opens dir with default Options.
func OpenDir(dir string) (*Checkpoint, error) {
	return OpenDirWith(dir, Options{})
}

// OpenDirWith opens dir's weights. Like transformers, it prefers
// model.safetensors and falls back to the sharded index.
func OpenDirWith(dir string, opts Options) (*Checkpoint, error) {
	single := filepath.Join(dir, singleFileName)
	if _, err := os.Stat(single); err == nil {
		f, err := OpenWith(single, opts)
		if err != nil {
			return nil, err
		}
		c := &Checkpoint{files: []*File{f}, where: map[string]*File{}}
		for name := range f.tensors {
			c.where[name] = f
		}
		return c, nil
	}
	data, err := readIndexFile(filepath.Join(dir, indexFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoWeights, dir)
	}
	if err != nil {
		return nil, err
	}
	weightMap, err := parseIndex(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return openShards(dir, weightMap, opts)
}

func readIndexFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxIndexBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes, limit %d", ErrIndex, path, st.Size(), maxIndexBytes)
	}
	return os.ReadFile(path)
}

// parseIndex parses model.safetensors.index.json and returns its weight_map
// (tensor name → shard file). Shard names must be plain file names, so the
// index cannot point outside its directory.
func parseIndex(data []byte) (map[string]string, error) {
	j := newJSONReader(bytes.NewReader(data), ErrIndex)
	var weightMap map[string]string
	err := j.object(func(key string) error {
		if key != "weight_map" {
			return j.skip() // "metadata" (total_size) and anything else
		}
		weightMap = map[string]string{}
		return j.object(func(tensor string) error {
			file, ok, err := j.str()
			if err == nil && !ok {
				err = j.errorf("weight_map[%q] must be a file name", tensor)
			}
			if err == nil {
				err = checkShardName(file)
			}
			weightMap[tensor] = file
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	if err := j.end(); err != nil {
		return nil, err
	}
	if len(weightMap) == 0 {
		return nil, fmt.Errorf("%w: weight_map is missing or empty", ErrIndex)
	}
	return weightMap, nil
}

func checkShardName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) ||
		filepath.IsAbs(name) || !filepath.IsLocal(name) {
		return fmt.Errorf("%w: %q", ErrShardName, name)
	}
	return nil
}

func openShards(dir string, weightMap map[string]string, opts Options) (*Checkpoint, error) {
	c := &Checkpoint{where: make(map[string]*File, len(weightMap))}
	if err := c.addShards(dir, weightMap, opts); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Checkpoint) addShards(dir string, weightMap map[string]string, opts Options) error {
	byName := map[string]*File{}
	for _, shard := range shardNames(weightMap) {
		path := filepath.Join(dir, shard)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrShardMissing, path)
		}
		f, err := OpenWith(path, opts)
		if err != nil {
			return err
		}
		c.files = append(c.files, f)
		byName[shard] = f
	}
	for tensor, shard := range weightMap {
		f := byName[shard]
		if _, ok := f.tensors[tensor]; !ok {
			return fmt.Errorf("%w: index puts %q in %s, which does not hold it", ErrShardMismatch, tensor, shard)
		}
		c.where[tensor] = f
	}
	return c.checkNoUnlisted()
}

// checkNoUnlisted refuses shard tensors the index does not assign to that
// shard: such a checkpoint is inconsistent, and which copy is right is unknown.
func (c *Checkpoint) checkNoUnlisted() error {
	for _, f := range c.files {
		for _, name := range f.Names() {
			if c.where[name] != f {
				return fmt.Errorf("%w: %s holds %q, which the index does not assign to it", ErrShardMismatch, filepath.Base(f.path), name)
			}
		}
	}
	return nil
}

func shardNames(weightMap map[string]string) []string {
	set := map[string]bool{}
	for _, f := range weightMap {
		set[f] = true
	}
	names := make([]string, 0, len(set))
	for f := range set {
		names = append(names, f)
	}
	sort.Strings(names)
	return names
}

// Names returns all tensor names, sorted.
func (c *Checkpoint) Names() []string {
	names := make([]string, 0, len(c.where))
	for n := range c.where {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Info describes the named tensor.
func (c *Checkpoint) Info(name string) (TensorInfo, bool) {
	f, ok := c.where[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Info(name)
}

// Float32 reads the named tensor from its file and converts it to float32.
func (c *Checkpoint) Float32(name string) ([]float32, error) {
	f, ok := c.where[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return f.Float32(name)
}

// Close closes every file of the checkpoint.
func (c *Checkpoint) Close() error {
	var errs []error
	for _, f := range c.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}
