package loadreport

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// DefaultInterval is how often a worker publishes, and the unit of a report's lifetime.
const DefaultInterval = 500 * time.Millisecond

// ErrInvalidConfig is wrapped by constructor errors about their arguments.
var ErrInvalidConfig = errors.New("loadreport: invalid config")

// PublisherConfig configures a worker's publisher.
type PublisherConfig struct {
	// Cluster and Worker name the subject (see Subject); both must pass ValidToken.
	Cluster, Worker string
	// Interval between reports. Default DefaultInterval (500ms). Must match the
	// router's TableConfig.Interval, which expires a report after 3 intervals.
	Interval time.Duration
}

// Publisher publishes a worker's load every interval.
type Publisher struct {
	nc       *nats.Conn
	subject  string
	worker   string
	interval time.Duration
	source   func() Report

	seq     atomic.Uint64
	dropped atomic.Uint64
}

// NewPublisher checks cfg and returns a publisher that reports source() on nc.
// source is called once per interval from Run's goroutine; it should be quick.
func NewPublisher(nc *nats.Conn, cfg PublisherConfig, source func() Report) (*Publisher, error) {
	if nc == nil || source == nil {
		return nil, fmt.Errorf("%w: nil connection or source", ErrInvalidConfig)
	}
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("%w: negative interval %v", ErrInvalidConfig, cfg.Interval)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	subject, err := Subject(cfg.Cluster, cfg.Worker)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return &Publisher{nc: nc, subject: subject, worker: cfg.Worker, interval: cfg.Interval, source: source}, nil
}

// Dropped counts reports that never reached the NATS client: the source returned an
// invalid report, the reconnect buffer was full, the connection was closed, or the
// previous report was still waiting to be handed over.
func (p *Publisher) Dropped() uint64 { return p.dropped.Load() }

// Run publishes one report at once and then one per interval until ctx is done.
// The tick loop never waits on NATS: a separate goroutine hands reports to nats.go,
// whose Publish can block on its connection lock while a flush to a stalled socket is
// in progress. Only the newest report waits for it; an older waiting one is dropped.
func (p *Publisher) Run(ctx context.Context) {
	out := make(chan []byte, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.send(ctx, out)
	}()
	defer func() { <-done }()

	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for {
		if b, ok := p.next(); ok {
			p.offer(out, b)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// next builds the next report; seq advances even for a dropped report, so the router
// sees gaps rather than repeats.
func (p *Publisher) next() ([]byte, bool) {
	r := p.source()
	r.Worker = p.worker
	r.Seq = p.seq.Add(1)
	r.Sent = time.Now().UTC()
	b, err := Encode(r)
	if err != nil {
		p.dropped.Add(1)
		return nil, false
	}
	return b, true
}

// offer puts b in the one-slot mailbox, replacing (and dropping) a report still there.
func (p *Publisher) offer(out chan []byte, b []byte) {
	for {
		select {
		case out <- b:
			return
		default:
		}
		select {
		case <-out:
			p.dropped.Add(1)
		default:
		}
	}
}

func (p *Publisher) send(ctx context.Context, out <-chan []byte) {
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-out:
			// nats.go buffers while reconnecting; a full buffer or a closed
			// connection loses this report, and the next interval brings a fresh one.
			if err := p.nc.Publish(p.subject, b); err != nil {
				p.dropped.Add(1)
			}
		}
	}
}
