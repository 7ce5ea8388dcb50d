package adapterstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lorafleet/lorafleet/internal/testutil"
	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

func TestLocalAdapters(t *testing.T) {
	f := newFixture(t)
	copyDir(t, f.adapter("sql"), filepath.Join(f.root, "org", "sql2"))
	if err := os.Symlink("sql", filepath.Join(f.root, "linked")); err != nil {
		t.Fatal(err)
	}
	s := f.store(t, nil)
	ctx := context.Background()
	for id, rank := range map[string]int{"sql": 8, "org/sql2": 8, "chat": 16, "tiny": 4, "linked": 8} {
		a, err := s.Get(ctx, id)
		if err != nil {
			t.Errorf("Get(%q): %v", id, err)
			continue
		}
		if a.MaxRank() != rank || len(a.Weights) == 0 {
			t.Errorf("Get(%q): rank %d, %d weights; want rank %d", id, a.MaxRank(), len(a.Weights), rank)
		}
	}
	a1, _ := s.Get(ctx, "sql")
	a2, _ := s.Get(ctx, "sql")
	if a1 != a2 {
		t.Error("a second Get parsed the adapter again instead of using the host tier")
	}
}

// TestIDsLeavingRoot: every way out of Root is ErrInvalidID, a valid ID without an adapter
// is ErrNotFound, and nothing is read outside Root.
func TestIDsLeavingRoot(t *testing.T) {
	f := newFixture(t)
	outside := t.TempDir()
	copyDir(t, f.adapter("sql"), filepath.Join(outside, "evil"))
	copyDir(t, f.adapter("sql"), filepath.Join(f.root, ".hidden"))
	copyDir(t, f.adapter("sql"), filepath.Join(f.root, "leaky"))
	weights := filepath.Join(f.root, "leaky", weightsFile)
	if err := os.Remove(weights); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		filepath.Join(f.root, "escape"):      filepath.Join(outside, "evil"),
		filepath.Join(f.root, "up"):          "..",
		weights:                              filepath.Join(outside, "evil", weightsFile),
		filepath.Join(f.root, "dangling"):    filepath.Join(f.root, "nothing"),
		filepath.Join(f.root, "org", "back"): filepath.Join("..", "..", filepath.Base(outside), "evil"),
	} {
		writeFile(t, filepath.Join(filepath.Dir(link), ".keep"), nil)
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(f.root, "README"), []byte("not an adapter"))
	s := f.store(t, nil)
	for id, want := range map[string]error{
		"../x": ErrInvalidID, "/etc": ErrInvalidID, "a/../../b": ErrInvalidID, "a/./b": ErrInvalidID,
		".hidden": ErrInvalidID, "a\\b": ErrInvalidID, "a/b/c": ErrInvalidID, "": ErrInvalidID, "x\x00y": ErrInvalidID,
		"..": ErrInvalidID, "./sql": ErrInvalidID, "sql/": ErrInvalidID, "/": ErrInvalidID,
		"escape": ErrInvalidID, "leaky": ErrInvalidID, "up": ErrInvalidID, "org/back": ErrInvalidID,
		"missing": ErrNotFound, "org/missing": ErrNotFound, "dangling": ErrNotFound, "README": ErrNotFound,
		"org": ErrNotFound, // a directory, but not an adapter
	} {
		_, err := s.Get(context.Background(), id)
		if !errors.Is(err, want) {
			t.Errorf("Get(%q) = %v, want %v", id, err, want)
		}
		noPaths(t, err, f.root, outside)
	}
	if _, err := s.Get(context.Background(), "sql"); err != nil {
		t.Errorf("a good adapter after the refusals: %v", err)
	}
}

// TestBrokenAdapters: each way an adapter can be unusable is ErrBadAdapter wrapping the
// loader's reason, with a message naming the ID rather than the server's directory.
func TestBrokenAdapters(t *testing.T) {
	f := newFixture(t)
	sqlWeights := readFile(t, filepath.Join(f.adapter("sql"), weightsFile))
	sqlConfig := readFile(t, filepath.Join(f.adapter("sql"), configFile))
	broken := map[string]map[string][]byte{
		"truncated":   {configFile: sqlConfig, weightsFile: sqlWeights[:len(sqlWeights)/3]},
		"cut-header":  {configFile: sqlConfig, weightsFile: sqlWeights[:100]},
		"overlapping": {configFile: sqlConfig, weightsFile: overlapOffsets(t, sqlWeights)},
		"pickle-only": {configFile: sqlConfig, pickleFile: []byte("\x80\x04pickle")},
		"no-weights":  {configFile: sqlConfig},
		"bad-config":  {configFile: []byte(`{"r": 8,`), weightsFile: sqlWeights},
	}
	for name, files := range broken {
		for file, data := range files {
			writeFile(t, filepath.Join(f.root, name, file), data)
		}
	}
	copyDir(t, filepath.Join(f.testdata, "tiny-qwen2", "adapters", "support"), filepath.Join(f.root, "other-base"))
	s := f.store(t, func(c *Config) { c.MaxRank = 8 })
	for id, want := range map[string]error{
		"truncated":   safetensors.ErrOutOfBounds,
		"cut-header":  safetensors.ErrHeaderBeyondFile,
		"overlapping": safetensors.ErrOverlap,
		"pickle-only": peft.ErrPickle,
		"no-weights":  peft.ErrNoWeights,
		"bad-config":  peft.ErrConfig,
		"other-base":  peft.ErrShape,
		"chat":        peft.ErrRankTooLarge, // r 16 above MaxRank 8
	} {
		_, err := s.Get(context.Background(), id)
		if !errors.Is(err, ErrBadAdapter) || !errors.Is(err, want) {
			t.Errorf("Get(%q) = %v, want ErrBadAdapter and %v", id, err, want)
		}
		if err != nil && !strings.Contains(err.Error(), strings.TrimPrefix(want.Error(), "peft: ")) {
			t.Errorf("Get(%q): message %q does not say %q", id, err, want)
		}
		noPaths(t, err, f.root, f.testdata)
	}
	for _, id := range []string{"sql", "tiny"} {
		if _, err := s.Get(context.Background(), id); err != nil {
			t.Errorf("a good adapter after the broken ones: Get(%q) = %v", id, err)
		}
	}
}

// overlapOffsets rewrites a safetensors header so that the second tensor starts inside the
// first.
func overlapOffsets(t *testing.T, data []byte) []byte {
	t.Helper()
	n := binary.LittleEndian.Uint64(data[:8])
	var header map[string]json.RawMessage
	if err := json.Unmarshal(data[8:8+n], &header); err != nil {
		t.Fatal(err)
	}
	type info struct {
		DType   string   `json:"dtype"`
		Shape   []int    `json:"shape"`
		Offsets [2]int64 `json:"data_offsets"`
	}
	tensors := map[int64]string{} // begin → name
	for name, raw := range header {
		var ti info
		if name != "__metadata__" && json.Unmarshal(raw, &ti) == nil {
			tensors[ti.Offsets[0]] = name
		}
	}
	var first info
	if err := json.Unmarshal(header[tensors[0]], &first); err != nil {
		t.Fatal(err)
	}
	second := tensors[first.Offsets[1]]
	var ti info
	if err := json.Unmarshal(header[second], &ti); err != nil {
		t.Fatal(err)
	}
	ti.Offsets[0] -= 4
	ti.Offsets[1] -= 4
	b, err := json.Marshal(ti)
	if err != nil {
		t.Fatal(err)
	}
	header[second] = b
	hb, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(hb)))
	out = append(out, hb...)
	return append(out, data[8+n:]...)
}

func TestKnown(t *testing.T) {
	f := newFixture(t)
	copyDir(t, f.adapter("sql"), filepath.Join(f.root, "org", "sql2"))
	copyDir(t, f.adapter("sql"), filepath.Join(f.root, ".hidden"))
	copyDir(t, f.adapter("sql"), filepath.Join(f.root, "bad name"))
	copyDir(t, f.adapter("sql"), filepath.Join(f.root, "a", "b", "deep"))
	outside := t.TempDir()
	copyDir(t, f.adapter("sql"), filepath.Join(outside, "evil"))
	if err := os.Symlink(filepath.Join(outside, "evil"), filepath.Join(f.root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("tiny", filepath.Join(f.root, "linked")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(f.root, "empty", "README"), nil)
	writeFile(t, filepath.Join(f.root, configFile), nil) // Root itself is not an adapter
	s := f.store(t, nil)
	if err := s.Register(context.Background(), "alias", "sql"); err != nil {
		t.Fatal(err)
	}
	if err := s.Register(context.Background(), "chat", "tiny"); err != nil { // shadows a directory
		t.Fatal(err)
	}
	want := []string{"alias", "chat", "linked", "org/sql2", "sql", "tiny"}
	if got := s.Known(); !slices.Equal(got, want) {
		t.Errorf("Known() = %q, want %q", got, want)
	}
	// A new directory appears once the scan is stale and a background scan has run.
	copyDir(t, f.adapter("sql"), filepath.Join(f.root, "new"))
	if got := s.Known(); !slices.Equal(got, want) {
		t.Errorf("Known() scanned again within knownTTL: %q", got)
	}
	s.scanMu.Lock()
	s.scanTTL = 0
	s.scanMu.Unlock()
	testutil.Eventually(t, 5*time.Second, "the new adapter in Known()", func() bool { return slices.Contains(s.Known(), "new") })
}

// BenchmarkScan measures Known's directory scan, uncached, over 1000 adapters.
func BenchmarkScan(b *testing.B) {
	f := newFixture(b)
	for i := range 1000 {
		writeFile(b, filepath.Join(f.root, fmt.Sprintf("org%d", i%10), fmt.Sprintf("a%d", i), configFile), []byte("{}"))
	}
	s := f.store(b, nil)
	for b.Loop() {
		if n := len(s.local.scan()); n != 1003 {
			b.Fatalf("%d adapters", n)
		}
	}
}
