package engine

import (
	"context"
	"sync"
	"time"

	"github.com/lorafleet/lorafleet/worker/sample"
)

// Stream carries one request's tokens from the step loop to its caller. The loop never
// blocks on it: tokens queue here until Recv takes them.
type Stream struct {
	mu      sync.Mutex
	pending []sample.Result
	finish  FinishReason
	err     error
	done    bool
	notify  chan struct{} // capacity 1: "something changed"

	arrived   time.Time
	admitted  time.Time // first admission into the running set
	firstTok  time.Time
	preempted int
}

func newStream(now time.Time) *Stream {
	return &Stream{notify: make(chan struct{}, 1), arrived: now}
}

func (s *Stream) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// push queues tokens; called by the loop.
func (s *Stream) push(rs []sample.Result, now time.Time) {
	if len(rs) == 0 {
		return
	}
	s.mu.Lock()
	if s.firstTok.IsZero() {
		s.firstTok = now
	}
	s.pending = append(s.pending, rs...)
	s.mu.Unlock()
	s.wake()
}

// end finishes the stream with a reason or an error; only the first call counts.
func (s *Stream) end(reason FinishReason, err error) {
	s.mu.Lock()
	if !s.done {
		s.done, s.finish, s.err = true, reason, err
	}
	s.mu.Unlock()
	s.wake()
}

func (s *Stream) markAdmitted(now time.Time) {
	s.mu.Lock()
	if s.admitted.IsZero() {
		s.admitted = now
	}
	s.mu.Unlock()
}

func (s *Stream) countPreemption() {
	s.mu.Lock()
	s.preempted++
	s.mu.Unlock()
}

// Recv appends the tokens generated since the last call to buf, waiting until there is at
// least one or the request has ended. finish is set once the sequence has ended normally;
// err is set when it ended with an error (an adapter that failed to load, a shutdown) or
// ctx ended first.
func (s *Stream) Recv(ctx context.Context, buf []sample.Result) (toks []sample.Result, finish FinishReason, err error) {
	for {
		s.mu.Lock()
		toks = append(buf, s.pending...)
		s.pending = s.pending[:0]
		done, finish, err := s.done, s.finish, s.err
		s.mu.Unlock()
		if len(toks) > len(buf) || done {
			return toks, finish, err
		}
		select {
		case <-s.notify:
		case <-ctx.Done():
			return toks, "", ctx.Err()
		}
	}
}

// Timing is when a request reached each stage, for latency metrics.
type Timing struct {
	Arrived    time.Time // Submit was called
	Admitted   time.Time // first scheduled (zero if never)
	FirstToken time.Time // first token generated (zero if none)
	Preempted  int       // times the request was preempted and recomputed
}

// Timing reports the request's timestamps so far.
func (s *Stream) Timing() Timing {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Timing{Arrived: s.arrived, Admitted: s.admitted, FirstToken: s.firstTok, Preempted: s.preempted}
}
