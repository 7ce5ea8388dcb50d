package adapterstore

import (
	"fmt"
	"strings"
)

// ValidID checks an adapter ID without touching the file system: `name` or `org/name`
// (segments of letters, digits, '-', '_' and '.', not starting with '.'), or
// `hf://org/name[@revision]`.
func ValidID(id string) error {
	if rest, ok := strings.CutPrefix(id, hubScheme); ok {
		_, _, err := parseHub(rest)
		return err
	}
	return validPath(id)
}

func validPath(id string) error {
	segs := strings.Split(id, "/")
	if len(segs) > 2 {
		return fmt.Errorf("%w: %q has more than two path segments", ErrInvalidID, id)
	}
	for _, s := range segs {
		if err := validSegment(s); err != nil {
			return fmt.Errorf("%w: %q: %v", ErrInvalidID, id, err)
		}
	}
	return nil
}

func validSegment(s string) error {
	if s == "" || len(s) > 96 {
		return fmt.Errorf("segment must have 1 to 96 characters")
	}
	if s[0] == '.' {
		return fmt.Errorf("segment %q starts with '.'", s)
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return fmt.Errorf("character %q is not allowed", c)
		}
	}
	return nil
}

const hubScheme = "hf://"

// parseHub splits "org/name[@revision]" into repo and revision (default main).
func parseHub(s string) (repo, rev string, err error) {
	repo, rev, found := strings.Cut(s, "@")
	if !found {
		rev = "main"
	}
	if err := validSegment(rev); err != nil || strings.Count(repo, "/") != 1 {
		return "", "", fmt.Errorf("%w: hub adapters are hf://org/name[@revision], got %q", ErrInvalidID, hubScheme+s)
	}
	if err := validPath(repo); err != nil {
		return "", "", err
	}
	return repo, rev, nil
}
