package adapterstore

import "errors"

// Errors of Get and Register; messages are safe to show a client.
var (
	ErrInvalidID    = errors.New("adapterstore: invalid adapter id")     // HTTP 400
	ErrNotFound     = errors.New("adapterstore: adapter not found")      // 404
	ErrBadAdapter   = errors.New("adapterstore: adapter cannot be used") // 400
	ErrFetch        = errors.New("adapterstore: hub download failed")    // 502
	ErrFetchTimeout = errors.New("adapterstore: hub download timed out") // 504
)
