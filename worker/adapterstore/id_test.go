package adapterstore

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidID(t *testing.T) {
	for _, id := range []string{"sql", "org/sql", "a.b-c_D9", "org/name.v1", "hf://org/name", "hf://org/name@v2", "hf://o/n@0123abcd"} {
		if err := ValidID(id); err != nil {
			t.Errorf("ValidID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{
		"", "../x", "/etc", "a/../../b", "a/./b", ".hidden", "org/.hidden", "a//b", "a/", "/", "a/b/c",
		"a\\b", "..\\x", "x\x00y", "C:x", "a b", "é", strings.Repeat("a", 97),
		"hf://", "hf://name", "hf://a/b/c", "hf://org/../x", "hf://org/n@", "hf://org/n@a/b", "hf://org/n@..",
		"hf://org/n@x@y", "HF://org/n", "hf:///org/n", "hf://org/n@rev\x00",
	} {
		if err := ValidID(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("ValidID(%q) = %v, want ErrInvalidID", id, err)
		}
	}
}

func TestSourceIsCanonical(t *testing.T) {
	for id, want := range map[string]string{
		"sql": "sql", "org/sql": "org/sql", "hf://org/sql": "hf://org/sql@main", "hf://org/sql@v2": "hf://org/sql@v2",
	} {
		if got, err := source(id); err != nil || got != want {
			t.Errorf("source(%q) = %q, %v; want %q", id, got, err, want)
		}
	}
}

func TestLongIDIsCutInMessages(t *testing.T) {
	err := ValidID(strings.Repeat("x/", 10000))
	if !errors.Is(err, ErrInvalidID) || len(err.Error()) > 400 {
		t.Errorf("%d byte message: %.80v", len(err.Error()), err)
	}
}

// FuzzValidID: ValidID never panics; an accepted path ID joined to a directory stays in it,
// and an accepted hub ID names one repository revision in the cache and on the hub.
func FuzzValidID(f *testing.F) {
	for _, s := range []string{"sql", "org/name", "../x", "/etc", "a/../../b", "a/./b", ".a", "a//b", "a\\b",
		"hf://org/n@rev", "hf://org/n", "hf://x", "hf://a/b/c", "hf://org/n@../x", "x\x00"} {
		f.Add(s)
	}
	root := filepath.FromSlash("/srv/adapters")
	f.Fuzz(func(t *testing.T, id string) {
		src, err := source(id)
		if err != nil {
			if !errors.Is(err, ErrInvalidID) {
				t.Fatalf("source(%q) = %v, not ErrInvalidID", id, err)
			}
			return
		}
		if ValidID(src) != nil {
			t.Fatalf("canonical form %q of %q is not valid", src, id)
		}
		rel := id
		if rest, ok := strings.CutPrefix(id, hubScheme); ok {
			ref, err := parseHub(rest)
			if err != nil || ref.String() != src || strings.Count(ref.key(), "/") != 1 || strings.Contains(ref.rev, "/") {
				t.Fatalf("hub id %q parsed to %+v (%v)", id, ref, err)
			}
			rel = ref.key()
		}
		p := filepath.Join(root, filepath.FromSlash(rel))
		// Join cleans: had it removed a "." or "..", p would differ from the plain concatenation.
		if !inside(root, p) || p != root+string(filepath.Separator)+filepath.FromSlash(rel) || len(strings.Split(rel, "/")) > 2 {
			t.Fatalf("accepted id %q resolves to %q, not a directory one or two levels below %s", id, p, root)
		}
	})
}
