package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/lorafleet/lorafleet/pkg/loadreport"
)

// NATS is where the worker publishes its load reports for the routers.
type NATS struct {
	URL      string        // NATS server; empty: no reports
	Cluster  string        // subject prefix shared with the routers. Default "lorafleet"
	Interval time.Duration // default 500 ms
}

// publishLoad starts the load report publisher; the returned function stops it.
func (w *Worker) publishLoad(ctx context.Context) (func(), error) {
	n := w.cfg.NATS
	if n.URL == "" {
		return func() {}, nil
	}
	if w.cfg.Gossip.Name == "" {
		return nil, errors.New("worker: load reports need a node name (the routers match them to gossip members)")
	}
	if n.Cluster == "" {
		n.Cluster = "lorafleet"
	}
	// Reconnect forever: NATS being away must never take the worker down.
	nc, err := nats.Connect(n.URL, nats.Name(w.cfg.Gossip.Name), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		return nil, fmt.Errorf("worker: nats: %w", err)
	}
	var last struct {
		gen uint64
		at  time.Time
	}
	pub, err := loadreport.NewPublisher(nc, loadreport.PublisherConfig{Cluster: n.Cluster, Worker: w.cfg.Gossip.Name, Interval: n.Interval},
		func() loadreport.Report {
			s, now := w.loop.Stats(), time.Now()
			var tps float64
			if !last.at.IsZero() {
				tps = float64(s.Generated-last.gen) / now.Sub(last.at).Seconds()
			}
			last.gen, last.at = s.Generated, now
			return loadreport.Report{
				InFlight: int(w.inflight.Load()), Waiting: s.Waiting, Running: s.Running, KVFree: 1 - s.KVUsage,
				Adapters: s.ResidentIDs, TokensPerSec: tps, Draining: w.draining.Load(),
			}
		})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("worker: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { pub.Run(ctx); close(done) }()
	return func() { cancel(); <-done; nc.Close() }, nil
}
