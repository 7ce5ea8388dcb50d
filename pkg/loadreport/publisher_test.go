package loadreport

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lorafleet/lorafleet/internal/testutil"
	"github.com/nats-io/nats.go"
)

// startPublisher runs a publisher for worker on nc until the test ends and returns
// the number of times its source was called.
func startPublisher(t *testing.T, nc *nats.Conn, worker string, interval time.Duration, r Report) (*Publisher, *atomic.Uint64) {
	t.Helper()
	calls := new(atomic.Uint64)
	p, err := NewPublisher(nc, PublisherConfig{Cluster: testCluster, Worker: worker, Interval: interval}, func() Report {
		calls.Add(1)
		return r
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return p, calls
}

func TestPublishedReportReachesTable(t *testing.T) {
	s := runServer(t, -1)
	table, err := Subscribe(connect(t, s), TableConfig{Cluster: testCluster, Interval: 20 * time.Millisecond, Now: newFakeClock().Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = table.Close() })
	start := time.Now()
	// The source's Worker, Seq and Sent are overwritten by the publisher.
	src := Report{Worker: "ignored", Seq: 99, InFlight: 4, Waiting: 3, Running: 2, KVFree: 0.75,
		Adapters: []string{"org/sql-lora", "chat"}, TokensPerSec: 1234.5, Draining: true}
	startPublisher(t, connect(t, s), "wb", 20*time.Millisecond, src)
	startPublisher(t, connect(t, s), "wa", 20*time.Millisecond, Report{KVFree: 1})

	testutil.Eventually(t, 3*time.Second, "reports from both workers", func() bool { return len(table.Snapshot()) == 2 })
	got, ok := table.Get("wb")
	if !ok {
		t.Fatal("Get(wb) found nothing")
	}
	want := Report{Worker: "wb", Seq: got.Seq, InFlight: 4, Waiting: 3, Running: 2, KVFree: 0.75,
		Adapters: []string{"org/sql-lora", "chat"}, TokensPerSec: 1234.5, Draining: true, Sent: got.Sent}
	if !reportsEqual(got, want) {
		t.Errorf("Get(wb) = %+v\nwant       %+v", got, want)
	}
	if got.Seq < 1 || got.Seq > 1000 {
		t.Errorf("Seq = %d, want a small count from 1", got.Seq)
	}
	if got.Sent.Before(start.Add(-time.Second)) || got.Sent.After(time.Now()) {
		t.Errorf("Sent = %v, want between %v and now", got.Sent, start)
	}
	workers := []string{}
	for _, r := range table.Snapshot() {
		workers = append(workers, r.Worker)
	}
	if !slices.Equal(workers, []string{"wa", "wb"}) {
		t.Errorf("Snapshot workers = %v, want [wa wb]", workers)
	}
	first := got.Seq
	testutil.Eventually(t, 3*time.Second, "seq to advance", func() bool {
		r, _ := table.Get("wb")
		return r.Seq > first
	})
}

// TestSurvivesNATSRestart stops the server under a running publisher and table, checks
// the publisher keeps ticking, then starts a server on the same port and waits for the
// clients to reconnect and fresh reports to arrive.
func TestSurvivesNATSRestart(t *testing.T) {
	s1 := runServer(t, -1)
	port := serverPort(t, s1)
	table, err := Subscribe(connect(t, s1), TableConfig{Cluster: testCluster, Interval: 20 * time.Millisecond, Now: newFakeClock().Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = table.Close() })
	pubConn := connect(t, s1)
	_, calls := startPublisher(t, pubConn, "w1", 20*time.Millisecond, Report{})
	testutil.Eventually(t, 3*time.Second, "first report", func() bool { _, ok := table.Get("w1"); return ok })

	s1.Shutdown()
	testutil.Eventually(t, 3*time.Second, "publisher to notice the outage", func() bool { return !pubConn.IsConnected() })
	before := calls.Load()
	// 10 intervals are 200ms; allow a loaded machine plenty, but far less than a
	// blocking publish would take (nats.go's flusher timeout is a minute).
	testutil.Eventually(t, 2*time.Second, "source to be called on schedule while NATS is down", func() bool {
		return calls.Load() >= before+10
	})

	runServer(t, port)
	restarted := calls.Load()
	testutil.Eventually(t, 5*time.Second, "a report made after the restart", func() bool {
		r, ok := table.Get("w1")
		return ok && r.Seq > restarted
	})
}

func TestPublisherCountsDrops(t *testing.T) {
	s := runServer(t, -1)
	// No reconnect buffer: every report made while disconnected is dropped.
	nc := connect(t, s, nats.ReconnectBufSize(-1))
	p, _ := startPublisher(t, nc, "w1", 10*time.Millisecond, Report{})
	if p.Dropped() != 0 {
		t.Fatalf("Dropped = %d while connected", p.Dropped())
	}
	s.Shutdown()
	testutil.Eventually(t, 3*time.Second, "drops while NATS is down", func() bool { return p.Dropped() >= 3 })
}

func TestPublisherDropsInvalidReport(t *testing.T) {
	p, calls := startPublisher(t, connect(t, runServer(t, -1)), "w1", 10*time.Millisecond, Report{KVFree: 1.5})
	testutil.Eventually(t, 3*time.Second, "invalid reports to be dropped", func() bool { return p.Dropped() >= 2 })
	if p.Dropped() > calls.Load() {
		t.Fatalf("Dropped %d > source calls %d", p.Dropped(), calls.Load())
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	nc := connect(t, runServer(t, -1))
	p, err := NewPublisher(nc, PublisherConfig{Cluster: testCluster, Worker: "w1"}, func() Report { return Report{} })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stopped atomic.Bool
	go func() {
		p.Run(ctx)
		stopped.Store(true)
	}()
	cancel()
	testutil.Eventually(t, 2*time.Second, "Run to return", stopped.Load)
}

func TestNewPublisherRejectsBadConfig(t *testing.T) {
	nc := connect(t, runServer(t, -1))
	src := func() Report { return Report{} }
	for _, cfg := range []PublisherConfig{
		{Cluster: "c", Worker: "w.1"}, {Cluster: "c>", Worker: "w"}, {Cluster: "c"},
		{Cluster: "c", Worker: "w", Interval: -1},
	} {
		if _, err := NewPublisher(nc, cfg, src); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewPublisher(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
	if _, err := NewPublisher(nc, PublisherConfig{Cluster: "c", Worker: "w"}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("NewPublisher(nil source) = %v, want ErrInvalidConfig", err)
	}
	if _, err := NewPublisher(nil, PublisherConfig{Cluster: "c", Worker: "w"}, src); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("NewPublisher(nil conn) = %v, want ErrInvalidConfig", err)
	}
}
