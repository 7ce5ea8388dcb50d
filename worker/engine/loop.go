package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/worker/engine/sched"
	"github.com/lorafleet/lorafleet/worker/sample"
)

// Errors a submitted request can end with. Adapter store errors are passed through as they are.
var (
	ErrOverloaded = errors.New("engine: queue full")
	ErrDraining   = errors.New("engine: shutting down, not accepting requests")
	ErrAborted    = errors.New("engine: shut down before the request finished")
	ErrTooLong    = errors.New("engine: request too long")
)

// AdapterSource resolves an adapter ID to a checked host copy (the worker's adapter store).
type AdapterSource interface {
	Get(ctx context.Context, id string) (*peft.Adapter, error)
}

// Request is one generation to serve.
type Request struct {
	Prompt    []int
	Adapter   string // adapter ID; "" for the base model
	Sampler   *sample.Sampler
	MaxTokens int
}

// Stats is a snapshot of the loop, for metrics and readiness.
type Stats struct {
	Running, Waiting int      // sequences admitted / queued (including adapter loads)
	KVUsage          float64  // fraction of KV blocks in use
	Resident         int      // adapters on the device
	Uploading        int      // of those, the ones whose upload has not landed
	ResidentIDs      []string // their IDs (read-only)
	Generated        uint64   // tokens generated so far
	DeviceBytes      int64    // their size
	Loads, Evictions uint64   // device uploads and evictions so far
	Preemptions      uint64
	Steps            uint64
	LastStep         time.Time // end of the last step
}

// Loop serves requests: Submit queues them, and one goroutine steps the engine over what
// the scheduler plans. Everything but Submit, Unload and Stats runs on that goroutine.
type Loop struct {
	e     *Engine
	src   AdapterSource
	sched sched.Config

	inbox    inbox
	queued   atomic.Int64 // requests submitted and not yet admitted (queue bound)
	queuedTk atomic.Int64 // their prompt tokens
	arrivals atomic.Uint64
	ids      atomic.Uint64
	draining atomic.Bool
	stats    atomic.Pointer[Stats]

	// Owned by the loop goroutine.
	running, waiting []*Sequence
	byID             map[uint64]*Sequence
	slots            *slots
	state            sched.State
	plan             sched.Plan
	work             []work
	preemptions      uint64
	steps            uint64
	generated        uint64
	done             chan struct{}
}

// inbox hands new sequences and unloads from any goroutine to the loop.
type inbox struct {
	mu      sync.Mutex
	seqs    []*Sequence
	unloads []string
	closed  bool // the loop has stopped: nothing more is taken
	wake    chan struct{}
}

// put queues a sequence and/or an unload; it reports false once the loop has stopped.
func (b *inbox) put(s *Sequence, unload string) bool {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false
	}
	if s != nil {
		b.seqs = append(b.seqs, s)
	}
	if unload != "" {
		b.unloads = append(b.unloads, unload)
	}
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return true
}

// close stops the inbox and returns the sequences it still held.
func (b *inbox) close() []*Sequence {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	seqs := b.seqs
	b.seqs = nil
	return seqs
}

func (b *inbox) take(seqs []*Sequence, unloads []string) ([]*Sequence, []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	seqs, unloads = append(seqs, b.seqs...), append(unloads, b.unloads...)
	clear(b.seqs)
	b.seqs, b.unloads = b.seqs[:0], b.unloads[:0]
	return seqs, unloads
}

// Start runs the step loop until ctx ends; then every request still open ends with
// ErrAborted. src may be nil when no adapter is ever requested.
func (e *Engine) Start(ctx context.Context, src AdapterSource) *Loop {
	l := &Loop{
		e: e, src: src,
		sched: sched.Config{MaxBatchTokens: e.cfg.MaxBatchTokens, MaxRunning: e.cfg.MaxRunning, Slots: e.cfg.Slots, BlockSize: e.cfg.BlockSize},
		byID:  map[uint64]*Sequence{}, slots: newSlots(e.fwd), done: make(chan struct{}),
	}
	l.inbox.wake = make(chan struct{}, 1)
	l.publish()
	go l.run(ctx)
	return l
}

// Done is closed when the loop has stopped.
func (l *Loop) Done() <-chan struct{} { return l.done }

// Stats returns the latest snapshot, with the queue length as of now.
func (l *Loop) Stats() Stats {
	s := *l.stats.Load()
	s.Waiting += int(l.queued.Load())
	return s
}

// Drain stops admitting requests: Submit fails with ErrDraining from now on.
func (l *Loop) Drain() { l.draining.Store(true) }

// Unload drops every device copy of the adapter as soon as no sequence uses it.
func (l *Loop) Unload(id string) { l.inbox.put(nil, id) }

// Submit queues a request. It returns at once with ErrOverloaded when the queue is full, and
// otherwise after the request's adapter is in host memory (loading it if needed, while other
// requests keep running). The request ends when ctx does; cancelling ctx frees its sequence
// within one step.
func (l *Loop) Submit(ctx context.Context, r Request) (*Stream, error) {
	if l.draining.Load() {
		return nil, ErrDraining
	}
	s := &Sequence{Prompt: r.Prompt, Sampler: r.Sampler, MaxTokens: r.MaxTokens}
	if err := l.e.Check(s); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTooLong, err)
	}
	if need := l.e.pool.BlocksFor(len(r.Prompt) + r.MaxTokens); need > l.e.pool.TotalBlocks() {
		return nil, fmt.Errorf("%w: %d tokens need %d KV blocks, the cache has %d", ErrTooLong, len(r.Prompt)+r.MaxTokens, need, l.e.pool.TotalBlocks())
	}
	if !l.reserve(len(r.Prompt)) {
		return nil, ErrOverloaded
	}
	s.id, s.arrival, s.ctx = l.ids.Add(1), l.arrivals.Add(1), ctx
	s.stream = newStream(time.Now())
	if r.Adapter != "" {
		if l.src == nil {
			l.unreserve(len(r.Prompt))
			return nil, fmt.Errorf("engine: adapter %q requested but no adapter source is configured", r.Adapter)
		}
		pa, err := l.src.Get(ctx, r.Adapter)
		if err != nil {
			l.unreserve(len(r.Prompt))
			return nil, err
		}
		s.adapterID, s.host = r.Adapter, pa
	}
	if !l.inbox.put(s, "") {
		l.unreserve(len(r.Prompt))
		return nil, ErrDraining
	}
	return s.stream, nil
}

func (l *Loop) reserve(tokens int) bool {
	if l.queued.Add(1) > int64(l.e.cfg.MaxWaiting) {
		l.queued.Add(-1)
		return false
	}
	if l.queuedTk.Add(int64(tokens)) > int64(l.e.cfg.MaxWaitingTokens) {
		l.unreserve(tokens)
		return false
	}
	return true
}

func (l *Loop) unreserve(tokens int) {
	l.queued.Add(-1)
	l.queuedTk.Add(-int64(tokens))
}

func (l *Loop) run(ctx context.Context) {
	defer close(l.done)
	var seqs []*Sequence
	var unloads []string
	for {
		seqs, unloads = l.inbox.take(seqs[:0], unloads[:0])
		l.accept(seqs, unloads)
		l.dropCancelled()
		if ctx.Err() != nil {
			l.draining.Store(true)
			l.accept(l.inbox.close(), nil)
			l.failAll(ErrAborted)
			l.publish()
			return
		}
		if len(l.running)+len(l.waiting) == 0 {
			l.publish()
			select {
			case <-l.inbox.wake:
			case <-ctx.Done():
			}
			l.publish() // fresh LastStep: an idle loop that wakes up is not a stuck one
			continue
		}
		if err := l.step(); err != nil {
			l.failAll(err) // a backend failure: nothing running can be trusted
		}
		l.publish()
	}
}

// accept queues new sequences (in arrival order: a request whose adapter took long to load
// keeps its place) and applies unloads.
func (l *Loop) accept(seqs []*Sequence, unloads []string) {
	for _, s := range seqs {
		if s.host != nil {
			s.adapterKey = l.slots.ref(s.adapterID, s.host)
		}
		l.byID[s.id] = s
		l.enqueue(s)
	}
	for _, id := range unloads {
		l.slots.unload(id)
	}
}

func (l *Loop) enqueue(s *Sequence) {
	i, _ := slices.BinarySearchFunc(l.waiting, s.arrival, func(w *Sequence, a uint64) int {
		return cmp.Compare(w.arrival, a)
	})
	l.waiting = slices.Insert(l.waiting, i, s)
}

// dropCancelled ends the sequences whose request context ended (a client that went away).
func (l *Loop) dropCancelled() {
	keep := func(list []*Sequence) []*Sequence {
		return slices.DeleteFunc(list, func(s *Sequence) bool {
			if err := s.ctx.Err(); err != nil {
				l.end(s, "", err)
				return true
			}
			return false
		})
	}
	l.running, l.waiting = keep(l.running), keep(l.waiting)
}

// end releases everything a sequence holds and closes its stream. The caller removes it
// from running or waiting.
func (l *Loop) end(s *Sequence, reason FinishReason, err error) {
	if !s.admitted {
		l.unreserve(len(s.Prompt)) // still counted as queued
	}
	l.e.Release(s)
	l.slots.unref(s.adapterKey)
	delete(l.byID, s.id)
	s.stream.end(reason, err)
}

func (l *Loop) failAll(err error) {
	for _, s := range l.running {
		l.end(s, "", err)
	}
	for _, s := range l.waiting {
		l.end(s, "", err)
	}
	l.running, l.waiting = l.running[:0], l.waiting[:0]
}

// publish makes a new Stats snapshot visible to other goroutines.
func (l *Loop) publish() {
	l.stats.Store(&Stats{
		Running: len(l.running), Waiting: l.preemptedWaiting(), // Stats adds the queued count
		KVUsage: l.e.KVUsage(), Resident: len(l.slots.dev), Uploading: len(l.slots.uploading), ResidentIDs: l.slots.residents, Generated: l.generated,
		DeviceBytes: l.slots.deviceBytes,
		Loads:       l.slots.loads, Evictions: l.slots.evictions, Preemptions: l.preemptions,
		Steps: l.steps, LastStep: time.Now(),
	})
}

// preemptedWaiting counts waiting sequences that were admitted once and preempted since:
// the queued count (which also covers requests loading their adapter) no longer has them.
func (l *Loop) preemptedWaiting() int {
	n := 0
	for _, s := range l.waiting {
		if s.admitted {
			n++
		}
	}
	return n
}
