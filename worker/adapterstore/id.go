package adapterstore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

const (
	hubScheme  = "hf://"
	defaultRev = "main"
	maxSegment = 96 // the Hub's limit for a repo name
)

// ValidID checks an adapter ID without touching the file system: `name` or `org/name`
// (segments of letters, digits, '-', '_' and '.', not starting with '.'), or
// `hf://org/name[@revision]` (the revision is one such segment; default "main").
func ValidID(id string) error {
	_, err := source(id)
	return err
}

// source returns the canonical form of an ID, under which it is loaded and cached: the ID
// itself for a directory under Root, hf://org/name@revision for the hub.
func source(id string) (string, error) {
	rest, ok := strings.CutPrefix(id, hubScheme)
	if !ok {
		return id, validPath(id)
	}
	ref, err := parseHub(rest)
	if err != nil {
		return "", err
	}
	return ref.String(), nil
}

// validPath checks a `name` or `org/name` ID. Since each segment is a plain name that cannot
// be "." or "..", the ID joined to a directory stays inside it.
func validPath(id string) error {
	segs := strings.Split(id, "/")
	if len(segs) > 2 {
		return fmt.Errorf("%w: %s has more than two path segments", ErrInvalidID, quote(id))
	}
	for _, s := range segs {
		if err := validSegment(s); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalidID, quote(id), err)
		}
	}
	return nil
}

func validSegment(s string) error {
	if s == "" || len(s) > maxSegment {
		return fmt.Errorf("a path segment must have 1 to %d characters", maxSegment)
	}
	if s[0] == '.' {
		return errors.New("a path segment cannot start with '.'")
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return fmt.Errorf("character %q is not allowed", c)
		}
	}
	return nil
}

// hubRef is a repository revision on the hub.
type hubRef struct {
	repo string // org/name
	rev  string
}

// key names the revision in the disk tier: CacheDir/org/name@rev.
func (r hubRef) key() string    { return r.repo + "@" + r.rev }
func (r hubRef) String() string { return hubScheme + r.key() }

// parseHub parses what follows hf://: org/name[@revision].
func parseHub(s string) (hubRef, error) {
	repo, rev, found := strings.Cut(s, "@")
	if !found {
		rev = defaultRev
	}
	if strings.Count(repo, "/") != 1 || validSegment(rev) != nil {
		return hubRef{}, fmt.Errorf("%w: hub adapters are hf://org/name[@revision], got %s", ErrInvalidID, quote(hubScheme+s))
	}
	if err := validPath(repo); err != nil {
		return hubRef{}, err
	}
	return hubRef{repo: repo, rev: rev}, nil
}

// quote quotes an ID for an error message, cut short: the ID comes from the client.
func quote(id string) string {
	const limit = 2 * maxSegment
	if len(id) > limit {
		return strconv.Quote(id[:limit]) + "..."
	}
	return strconv.Quote(id)
}
