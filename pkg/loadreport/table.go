package loadreport

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// lifetimeIntervals is how many intervals a report stays valid: a worker that misses
// two reports in a row is still routed to, one that misses three is not.
const lifetimeIntervals = 3

// TableConfig configures the router's table of worker reports.
type TableConfig struct {
	// Cluster picks the subjects lorafleet.load.<Cluster>.*; it must pass ValidToken.
	Cluster string
	// Interval is the workers' publishing interval. Default DefaultInterval (500ms).
	// A report expires 3 intervals after it was received.
	Interval time.Duration
	// Now reads the clock. Default time.Now; tests inject a fake clock.
	Now func() time.Time
}

// TableStats counts what the table did with the messages it received.
type TableStats struct {
	Accepted   uint64 // stored as the worker's latest report
	Stale      uint64 // seq not above the stored, unexpired report's seq
	Mismatched uint64 // Worker field differs from the subject's last token
	Malformed  uint64 // Decode refused the payload
}

type entry struct {
	report   Report
	received time.Time
}

// Table is the router's view of worker load: the latest unexpired report of each
// worker. It is safe for concurrent use; reads take a read lock that the NATS
// handler holds only to store one entry, so they never wait on NATS.
//
// Expiry uses the router's clock at receipt, not Report.Sent, so clock skew between
// machines does not matter.
//
// Ordering: a report is stored when no unexpired report of that worker is stored,
// when its Seq is above the stored Seq, or when its Seq is 1 — a restarted worker
// process starts again at 1 and must not be locked out until the old report expires.
// Anything else (a duplicate or a reordered older report) is ignored.
//
// Reports returned by Get and Snapshot share their Adapters slice with the table:
// treat it as read-only.
type Table struct {
	sub *nats.Subscription
	ttl time.Duration
	now func() time.Time

	mu        sync.RWMutex
	reports   map[string]entry
	nextSweep time.Time

	accepted, stale, mismatched, malformed atomic.Uint64
}

// Subscribe checks cfg and subscribes to the cluster's load reports on nc.
func Subscribe(nc *nats.Conn, cfg TableConfig) (*Table, error) {
	t, err := newTable(cfg)
	if err != nil {
		return nil, err
	}
	if nc == nil {
		return nil, fmt.Errorf("%w: nil connection", ErrInvalidConfig)
	}
	subject, err := wildcard(cfg.Cluster)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	t.sub, err = nc.Subscribe(subject, func(m *nats.Msg) { t.receive(m.Subject, m.Data) })
	if err != nil {
		return nil, fmt.Errorf("loadreport: subscribe %s: %w", subject, err)
	}
	return t, nil
}

func newTable(cfg TableConfig) (*Table, error) {
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("%w: negative interval %v", ErrInvalidConfig, cfg.Interval)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Table{
		ttl:     lifetimeIntervals * cfg.Interval,
		now:     cfg.Now,
		reports: make(map[string]entry),
	}, nil
}

// Close unsubscribes; closing twice is an error from nats.go. The reports already held stay readable until they expire.
func (t *Table) Close() error {
	if err := t.sub.Unsubscribe(); err != nil {
		return fmt.Errorf("loadreport: unsubscribe: %w", err)
	}
	return nil
}

// Get returns the worker's latest report, and false when there is none or it expired.
func (t *Table) Get(worker string) (Report, bool) {
	now := t.now()
	t.mu.RLock()
	e, ok := t.reports[worker]
	t.mu.RUnlock()
	if !ok || t.expired(e, now) {
		return Report{}, false
	}
	return e.report, true
}

// Snapshot returns the unexpired reports, sorted by worker.
func (t *Table) Snapshot() []Report {
	now := t.now()
	t.mu.RLock()
	out := make([]Report, 0, len(t.reports))
	for _, e := range t.reports {
		if !t.expired(e, now) {
			out = append(out, e.report)
		}
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(a, b Report) int { return strings.Compare(a.Worker, b.Worker) })
	return out
}

// Stats returns the message counters.
func (t *Table) Stats() TableStats {
	return TableStats{
		Accepted:   t.accepted.Load(),
		Stale:      t.stale.Load(),
		Mismatched: t.mismatched.Load(),
		Malformed:  t.malformed.Load(),
	}
}

func (t *Table) expired(e entry, now time.Time) bool {
	return !now.Before(e.received.Add(t.ttl))
}

// receive handles one message; it runs on the subscription's goroutine.
func (t *Table) receive(subject string, data []byte) {
	r, err := Decode(data)
	if err != nil {
		t.malformed.Add(1)
		return
	}
	if subject[strings.LastIndexByte(subject, '.')+1:] != r.Worker {
		t.mismatched.Add(1)
		return
	}
	if !t.store(r) {
		t.stale.Add(1)
		return
	}
	t.accepted.Add(1)
}

// store applies the ordering rule documented on Table and reports whether r was kept.
func (t *Table) store(r Report) bool {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.reports[r.Worker]
	if ok && !t.expired(old, now) && r.Seq <= old.report.Seq && r.Seq != 1 {
		return false
	}
	t.reports[r.Worker] = entry{report: r, received: now}
	t.sweep(now)
	return true
}

// sweep forgets expired workers, at most once per lifetime, so that the map does not
// grow with every worker name ever seen. Forgetting is safe: an expired entry would
// accept any seq anyway. The caller holds t.mu.
func (t *Table) sweep(now time.Time) {
	if now.Before(t.nextSweep) {
		return
	}
	t.nextSweep = now.Add(t.ttl)
	for w, e := range t.reports {
		if t.expired(e, now) {
			delete(t.reports, w)
		}
	}
}
