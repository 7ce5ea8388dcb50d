package adapterstore

import (
	"errors"
	"io/fs"
	"os"
)

// Errors of Get and Register. Every error the Store returns wraps one of them (or is the
// caller's context error), and its message is safe to show a client: it names IDs, never
// the server's directories.
var (
	ErrInvalidID    = errors.New("adapterstore: invalid adapter id")     // HTTP 400
	ErrNotFound     = errors.New("adapterstore: adapter not found")      // 404
	ErrBadAdapter   = errors.New("adapterstore: adapter cannot be used") // 400
	ErrFetch        = errors.New("adapterstore: hub download failed")    // 502
	ErrFetchTimeout = errors.New("adapterstore: hub download timed out") // 504
)

// badAdapter is ErrBadAdapter and the loader's error, with a message in which the adapter's
// directory is replaced by its ID.
type badAdapter struct {
	msg string
	err error
}

func (e *badAdapter) Error() string   { return e.msg }
func (e *badAdapter) Unwrap() []error { return []error{ErrBadAdapter, e.err} }

// fsCause describes a file system error without its path, which is the server's.
func fsCause(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Op + ": " + le.Err.Error()
	}
	return "file system error"
}
