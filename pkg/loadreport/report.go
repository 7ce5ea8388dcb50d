// Package loadreport carries worker load to the router over NATS. Workers publish a
// Report every interval (Publisher); the router keeps the latest unexpired report per
// worker (Table) and routes on it without ever asking a worker on the request path.
package loadreport

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on a decoded report. A report is untrusted input: anything on the NATS
// account can publish on the subject.
const (
	// MaxAdapters is the most adapter IDs one report may list.
	MaxAdapters = 4096
	// MaxAdapterIDBytes is the longest adapter ID accepted.
	MaxAdapterIDBytes = 256
	// MaxTokenBytes is the longest cluster or worker name accepted.
	MaxTokenBytes = 256
	// MaxReportBytes caps an encoded report; it is the NATS server's default max_payload.
	MaxReportBytes = 1 << 20
)

// Sentinel errors; the returned errors wrap them with detail.
var (
	ErrInvalidToken  = errors.New("loadreport: invalid subject token")
	ErrInvalidReport = errors.New("loadreport: invalid report")
	ErrTooLarge      = errors.New("loadreport: report too large")
)

const subjectPrefix = "lorafleet.load."

// Report is one worker's load, published every interval.
type Report struct {
	Worker       string    `json:"worker"`
	Seq          uint64    `json:"seq"`       // increases by one per report from a worker process, from 1
	InFlight     int       `json:"in_flight"` // requests being answered
	Waiting      int       `json:"waiting"`
	Running      int       `json:"running"`
	KVFree       float64   `json:"kv_free"`  // fraction of KV cache free, 0..1
	Adapters     []string  `json:"adapters"` // adapter IDs resident on the device
	TokensPerSec float64   `json:"tokens_per_sec"`
	Draining     bool      `json:"draining"`
	Sent         time.Time `json:"sent"`
}

// ValidToken reports whether s can be one token of a NATS subject: non-empty, at most
// MaxTokenBytes, valid UTF-8, and free of '.', '*', '>', whitespace and control characters.
func ValidToken(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalidToken)
	}
	if len(s) > MaxTokenBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidToken, len(s), MaxTokenBytes)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %q is not UTF-8", ErrInvalidToken, s)
	}
	for _, r := range s {
		if r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("%w: %q contains %q", ErrInvalidToken, s, r)
		}
	}
	return nil
}

// Subject is the subject a worker publishes on: "lorafleet.load.<cluster>.<worker>".
func Subject(cluster, worker string) (string, error) {
	if err := ValidToken(cluster); err != nil {
		return "", fmt.Errorf("cluster: %w", err)
	}
	if err := ValidToken(worker); err != nil {
		return "", fmt.Errorf("worker: %w", err)
	}
	return subjectPrefix + cluster + "." + worker, nil
}

// wildcard is the subject the router subscribes to for a cluster.
func wildcard(cluster string) (string, error) {
	if err := ValidToken(cluster); err != nil {
		return "", fmt.Errorf("cluster: %w", err)
	}
	return subjectPrefix + cluster + ".*", nil
}

// Encode validates r and marshals it, so that nothing Decode would refuse goes on the wire.
func Encode(r Report) ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("loadreport: encode: %w", err)
	}
	if len(b) > MaxReportBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), MaxReportBytes)
	}
	return b, nil
}

// Decode parses and validates a report received from the network. Unknown fields are
// ignored so that newer workers can add fields without breaking older routers.
func Decode(b []byte) (Report, error) {
	if len(b) > MaxReportBytes {
		return Report{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), MaxReportBytes)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return Report{}, fmt.Errorf("%w: %w", ErrInvalidReport, err)
	}
	if err := r.validate(); err != nil {
		return Report{}, err
	}
	return r, nil
}

func (r *Report) validate() error {
	if err := ValidToken(r.Worker); err != nil {
		return fmt.Errorf("%w: worker: %w", ErrInvalidReport, err)
	}
	if r.Seq == 0 {
		return fmt.Errorf("%w: seq 0 (sequences start at 1)", ErrInvalidReport)
	}
	if r.InFlight < 0 || r.Waiting < 0 || r.Running < 0 {
		return fmt.Errorf("%w: negative count (in_flight %d, waiting %d, running %d)",
			ErrInvalidReport, r.InFlight, r.Waiting, r.Running)
	}
	// The negated comparisons also reject NaN.
	if !(r.KVFree >= 0 && r.KVFree <= 1) {
		return fmt.Errorf("%w: kv_free %v outside [0,1]", ErrInvalidReport, r.KVFree)
	}
	if !(r.TokensPerSec >= 0) || math.IsInf(r.TokensPerSec, 1) {
		return fmt.Errorf("%w: tokens_per_sec %v", ErrInvalidReport, r.TokensPerSec)
	}
	return validateAdapters(r.Adapters)
}

func validateAdapters(ids []string) error {
	if len(ids) > MaxAdapters {
		return fmt.Errorf("%w: %d adapters, limit %d", ErrInvalidReport, len(ids), MaxAdapters)
	}
	for i, id := range ids {
		if id == "" || len(id) > MaxAdapterIDBytes {
			return fmt.Errorf("%w: adapter %d: id of %d bytes (want 1..%d)",
				ErrInvalidReport, i, len(id), MaxAdapterIDBytes)
		}
	}
	return nil
}
