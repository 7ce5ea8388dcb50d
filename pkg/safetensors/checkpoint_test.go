package safetensors_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

func f32Tensor(name string, v ...float32) safetensors.Tensor {
	return safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: []int{len(v)}, Data: safetensors.EncodeF32(v)}
}

// shardedDir writes a two-shard checkpoint and returns its directory.
func shardedDir(t *testing.T, index string) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, tensors ...safetensors.Tensor) {
		if err := os.WriteFile(filepath.Join(dir, name), encode(t, tensors, nil), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("model-00001-of-00002.safetensors", f32Tensor("a", 1, 2), f32Tensor("b", 3))
	write("model-00002-of-00002.safetensors", f32Tensor("c", 4, 5, 6))
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), []byte(index), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

const goodIndex = `{"metadata":{"total_size":24},"weight_map":{
	"a":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors",
	"c":"model-00002-of-00002.safetensors"}}`

func TestOpenDirSharded(t *testing.T) {
	c, err := safetensors.OpenDir(shardedDir(t, goodIndex))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if names := c.Names(); !reflect.DeepEqual(names, []string{"a", "b", "c"}) {
		t.Errorf("names %v", names)
	}
	if info, ok := c.Info("c"); !ok || info.Len != 12 || !reflect.DeepEqual(info.Shape, []int{3}) {
		t.Errorf("Info(c) = %+v, %v", info, ok)
	}
	checkValues(t, c, "a", 2, map[int]float32{0: 1, 1: 2})
	checkValues(t, c, "c", 3, map[int]float32{2: 6})
	if _, err := c.Float32("d"); !errors.Is(err, safetensors.ErrNotFound) {
		t.Errorf("missing tensor: %v", err)
	}
}

func TestOpenDirSingleFile(t *testing.T) {
	c, err := safetensors.OpenDir(filepath.Join(testdata, "tiny-qwen2/model"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info, ok := c.Info("model.embed_tokens.weight")
	if !ok || !reflect.DeepEqual(info.Shape, []int{600, 96}) || len(c.Names()) != 26 {
		t.Errorf("embed_tokens %+v, %d names", info, len(c.Names()))
	}
	if err := c.Close(); err != nil {
		t.Error(err)
	}
}

func TestOpenDirRefuses(t *testing.T) {
	const s1 = `"model-00001-of-00002.safetensors"`
	const s2 = `"model-00002-of-00002.safetensors"`
	cases := []struct {
		name  string
		index string
		want  error
	}{
		{"parent dir", `{"weight_map":{"a":"../x.safetensors"}}`, safetensors.ErrShardName},
		{"absolute", `{"weight_map":{"a":"/etc/passwd"}}`, safetensors.ErrShardName},
		{"subdir", `{"weight_map":{"a":"sub/x.safetensors"}}`, safetensors.ErrShardName},
		{"backslash", `{"weight_map":{"a":"..\\x.safetensors"}}`, safetensors.ErrShardName},
		{"dot dot", `{"weight_map":{"a":".."}}`, safetensors.ErrShardName},
		{"missing shard", `{"weight_map":{"a":` + s1 + `,"b":` + s1 + `,"c":"model-00003.safetensors"}}`, safetensors.ErrShardMissing},
		{"wrong shard", `{"weight_map":{"a":` + s1 + `,"b":` + s1 + `,"c":` + s1 + `}}`, safetensors.ErrShardMismatch},
		{"unlisted tensor", `{"weight_map":{"a":` + s1 + `,"c":` + s2 + `}}`, safetensors.ErrShardMismatch},
		{"duplicate entry", `{"weight_map":{"a":` + s1 + `,"a":` + s2 + `}}`, safetensors.ErrDuplicateKey},
		{"empty weight map", `{"weight_map":{}}`, safetensors.ErrIndex},
		{"no weight map", `{"metadata":{}}`, safetensors.ErrIndex},
		{"file not string", `{"weight_map":{"a":1}}`, safetensors.ErrIndex},
		{"not json", `weight_map`, safetensors.ErrIndex},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ck, err := safetensors.OpenDir(shardedDir(t, c.index))
			if err == nil {
				ck.Close()
				t.Fatal("OpenDir succeeded")
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestOpenDirBrokenShard(t *testing.T) {
	dir := shardedDir(t, goodIndex)
	path := filepath.Join(dir, "model-00002-of-00002.safetensors")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, st.Size()-4); err != nil {
		t.Fatal(err)
	}
	if _, err := safetensors.OpenDir(dir); !errors.Is(err, safetensors.ErrOutOfBounds) {
		t.Fatalf("truncated shard: got %v, want ErrOutOfBounds", err)
	}
}

func TestOpenDirNoWeights(t *testing.T) {
	if _, err := safetensors.OpenDir(t.TempDir()); !errors.Is(err, safetensors.ErrNoWeights) {
		t.Fatalf("got %v, want ErrNoWeights", err)
	}
}
