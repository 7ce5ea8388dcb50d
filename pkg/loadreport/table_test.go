package loadreport

import (
	"errors"
	"testing"
	"time"

	"github.com/lorafleet/lorafleet/internal/testutil"
	"github.com/nats-io/nats.go"
)

const testCluster = "test"

// tableFixture is a table on a fake clock plus a raw connection to publish crafted
// messages, as a misbehaving or restarted worker would.
type tableFixture struct {
	t     *testing.T
	nc    *nats.Conn
	table *Table
	clock *fakeClock
}

func newTableFixture(t *testing.T, interval time.Duration) *tableFixture {
	t.Helper()
	s := runServer(t, -1)
	clock := newFakeClock()
	subConn := connect(t, s)
	table, err := Subscribe(subConn, TableConfig{Cluster: testCluster, Interval: interval, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = table.Close() })
	// A flush round trip makes the server register the subscription before the
	// first publish from the other connection.
	if err := subConn.Flush(); err != nil {
		t.Fatal(err)
	}
	return &tableFixture{t: t, nc: connect(t, s), table: table, clock: clock}
}

// publishRaw sends data on the subject of worker and waits until the table has
// counted one more message, so that later checks see its effect.
func (f *tableFixture) publishRaw(worker string, data []byte) {
	f.t.Helper()
	subject, err := Subject(testCluster, worker)
	if err != nil {
		f.t.Fatal(err)
	}
	before := f.handled()
	if err := f.nc.Publish(subject, data); err != nil {
		f.t.Fatal(err)
	}
	testutil.Eventually(f.t, 2*time.Second, "table to handle the message", func() bool { return f.handled() > before })
}

func (f *tableFixture) publish(worker string, r Report) {
	f.t.Helper()
	b, err := Encode(r)
	if err != nil {
		f.t.Fatal(err)
	}
	f.publishRaw(worker, b)
}

func (f *tableFixture) handled() uint64 {
	s := f.table.Stats()
	return s.Accepted + s.Stale + s.Mismatched + s.Malformed
}

func (f *tableFixture) wantSeq(worker string, seq uint64) {
	f.t.Helper()
	r, ok := f.table.Get(worker)
	if !ok || r.Seq != seq {
		f.t.Fatalf("Get(%q) = seq %d, %v; want seq %d, true", worker, r.Seq, ok, seq)
	}
}

func TestTableExpiresAfterThreeIntervals(t *testing.T) {
	f := newTableFixture(t, time.Second)
	f.publish("w1", Report{Worker: "w1", Seq: 1})
	f.clock.Advance(3*time.Second - time.Nanosecond)
	f.wantSeq("w1", 1)
	if n := len(f.table.Snapshot()); n != 1 {
		t.Fatalf("Snapshot has %d reports before expiry, want 1", n)
	}
	f.clock.Advance(time.Nanosecond)
	if r, ok := f.table.Get("w1"); ok {
		t.Fatalf("Get returned %+v after 3 intervals", r)
	}
	if n := len(f.table.Snapshot()); n != 0 {
		t.Fatalf("Snapshot has %d reports after expiry, want 0", n)
	}
}

func TestTableIgnoresStaleAndDuplicateSeq(t *testing.T) {
	f := newTableFixture(t, time.Second)
	f.publish("w1", Report{Worker: "w1", Seq: 5, InFlight: 5})
	f.publish("w1", Report{Worker: "w1", Seq: 5, InFlight: 99})
	f.publish("w1", Report{Worker: "w1", Seq: 3, InFlight: 99})
	if got := f.table.Stats().Stale; got != 2 {
		t.Fatalf("Stale = %d, want 2", got)
	}
	r, _ := f.table.Get("w1")
	if r.Seq != 5 || r.InFlight != 5 {
		t.Fatalf("Get = seq %d in_flight %d, want the first seq 5 report (in_flight 5)", r.Seq, r.InFlight)
	}
	f.publish("w1", Report{Worker: "w1", Seq: 7})
	f.wantSeq("w1", 7)
}

func TestTableAcceptsRestartedWorker(t *testing.T) {
	f := newTableFixture(t, time.Second)
	f.publish("w1", Report{Worker: "w1", Seq: 40})
	f.publish("w1", Report{Worker: "w1", Seq: 1})
	f.wantSeq("w1", 1)

	// A lower seq other than 1 is accepted only once the stored report expired
	// (a restart whose first reports were lost).
	f.publish("w1", Report{Worker: "w1", Seq: 30})
	f.publish("w1", Report{Worker: "w1", Seq: 4})
	f.wantSeq("w1", 30)
	f.clock.Advance(3 * time.Second)
	f.publish("w1", Report{Worker: "w1", Seq: 4})
	f.wantSeq("w1", 4)
}

func TestTableIgnoresMismatchedWorker(t *testing.T) {
	f := newTableFixture(t, time.Second)
	f.publish("w1", Report{Worker: "w2", Seq: 1})
	if got := f.table.Stats(); got != (TableStats{Mismatched: 1}) {
		t.Fatalf("Stats = %+v, want one mismatched", got)
	}
	for _, w := range []string{"w1", "w2"} {
		if _, ok := f.table.Get(w); ok {
			t.Errorf("Get(%q) found a report published under another worker's subject", w)
		}
	}
}

func TestTableIgnoresMalformed(t *testing.T) {
	f := newTableFixture(t, time.Second)
	f.publishRaw("w1", []byte(`{"worker":"w1","seq":`))
	f.publishRaw("w1", []byte(`{"worker":"w1","seq":1,"kv_free":7}`))
	f.publishRaw("w1", nil)
	if got := f.table.Stats(); got != (TableStats{Malformed: 3}) {
		t.Fatalf("Stats = %+v, want three malformed", got)
	}
	if _, ok := f.table.Get("w1"); ok {
		t.Fatal("Get found a report after only malformed messages")
	}
	f.publish("w1", Report{Worker: "w1", Seq: 1})
	f.wantSeq("w1", 1)
}

func TestSubscribeRejectsBadConfig(t *testing.T) {
	nc := connect(t, runServer(t, -1))
	for _, cfg := range []TableConfig{{Cluster: "a.b"}, {Cluster: ""}, {Cluster: "c", Interval: -time.Second}} {
		if _, err := Subscribe(nc, cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Subscribe(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
	if _, err := Subscribe(nil, TableConfig{Cluster: "c"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Subscribe(nil conn) = %v, want ErrInvalidConfig", err)
	}
}

func TestTableForgetsExpiredWorkers(t *testing.T) {
	f := newTableFixture(t, time.Second)
	f.publish("w1", Report{Worker: "w1", Seq: 1})
	f.clock.Advance(3 * time.Second)
	f.publish("w2", Report{Worker: "w2", Seq: 1})
	f.table.mu.RLock()
	_, kept := f.table.reports["w1"]
	n := len(f.table.reports)
	f.table.mu.RUnlock()
	if kept || n != 1 {
		t.Fatalf("table holds %d entries (w1 kept: %v), want only w2", n, kept)
	}
}
