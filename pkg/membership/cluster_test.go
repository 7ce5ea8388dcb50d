package membership

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/lorafleet/lorafleet/internal/testutil"
)

// recorder collects the events one node delivers.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) record(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// saw reports whether an event of type t about node name matching ok was delivered.
func (r *recorder) saw(t EventType, name string, ok func(Meta) bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.events, func(e Event) bool {
		return e.Type == t && e.Node.Name == name && ok(e.Node.Meta)
	})
}

func anyMeta(Meta) bool { return true }

func metaFor(i int) Meta {
	return Meta{Role: RoleWorker, HTTPAddr: fmt.Sprintf("127.0.0.1:%d", 8000+i), Model: "llama", Capacity: 1, Version: "t"}
}

func names(nodes []Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Name
	}
	return out
}

func start(t *testing.T, cfg Config) (*Member, *recorder) {
	t.Helper()
	rec := &recorder{}
	cfg.Events = rec.record
	cfg.Fast = true
	m, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start(%s): %v", cfg.Name, err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m, rec
}

func hasMembers(m *Member, want ...string) func() bool {
	return func() bool { return slices.Equal(names(m.Members()), want) }
}

func TestMockNetworkJoinUpdateLeave(t *testing.T) {
	var mnet memberlist.MockNetwork
	// MockNetwork's maps are not locked: create every transport before any node runs.
	transports := []*memberlist.MockTransport{mnet.NewTransport("n1"), mnet.NewTransport("n2"), mnet.NewTransport("n3")}
	members := make([]*Member, 3)
	recs := make([]*recorder, 3)
	for i, tr := range transports {
		cfg := Config{Name: fmt.Sprintf("n%d", i+1), Meta: metaFor(i + 1), Transport: tr}
		if i > 0 {
			cfg.Seeds = []string{members[0].LocalAddr()}
		}
		members[i], recs[i] = start(t, cfg)
	}
	all := []string{"n1", "n2", "n3"}
	for i, m := range members {
		testutil.Eventually(t, 5*time.Second, fmt.Sprintf("n%d sees 3 members", i+1), hasMembers(m, all...))
		for j, name := range all {
			want := metaFor(j + 1)
			testutil.Eventually(t, time.Second, "join event", func() bool {
				return recs[i].saw(EventJoin, name, func(got Meta) bool { return got == want })
			})
		}
	}
	if got := members[0].Members()[1]; got.Addr != members[1].LocalAddr() || got.Meta != metaFor(2) {
		t.Fatalf("n1 sees n2 as %+v, want addr %s meta %+v", got, members[1].LocalAddr(), metaFor(2))
	}

	updated := metaFor(2)
	updated.Capacity = 8
	if err := members[1].UpdateMeta(updated); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 2} {
		testutil.Eventually(t, 5*time.Second, "update event", func() bool {
			return recs[i].saw(EventUpdate, "n2", func(m Meta) bool { return m.Capacity == 8 })
		})
	}

	if err := members[2].Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1} {
		testutil.Eventually(t, 5*time.Second, "leave event", func() bool { return recs[i].saw(EventLeave, "n3", anyMeta) })
		testutil.Eventually(t, time.Second, "n3 gone", hasMembers(members[i], "n1", "n2"))
	}
	if err := members[2].UpdateMeta(metaFor(3)); !errors.Is(err, ErrStopped) {
		t.Fatalf("UpdateMeta after Leave: %v, want ErrStopped", err)
	}
}

func TestUDPFailureDetection(t *testing.T) {
	cfg := func(i int) Config {
		return Config{Name: fmt.Sprintf("u%d", i), BindAddr: "127.0.0.1", Meta: metaFor(i)}
	}
	m1, r1 := start(t, cfg(1))
	c2, c3 := cfg(2), cfg(3)
	c2.Seeds = []string{m1.LocalAddr()}
	c3.Seeds = []string{m1.LocalAddr()}
	m2, r2 := start(t, c2)
	m3, _ := start(t, c3)
	if _, port, _ := net.SplitHostPort(m3.LocalAddr()); port == "0" {
		t.Fatalf("LocalAddr %s does not report the bound port", m3.LocalAddr())
	}
	for _, m := range []*Member{m1, m2, m3} {
		testutil.Eventually(t, 5*time.Second, "3 members", hasMembers(m, "u1", "u2", "u3"))
	}

	begin := time.Now()
	if err := m3.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*recorder{r1, r2} {
		testutil.Eventually(t, 5*time.Second, "u3 declared dead", func() bool { return r.saw(EventLeave, "u3", anyMeta) })
	}
	t.Logf("crashed node dropped by both peers after %v", time.Since(begin))
	for _, m := range []*Member{m1, m2} {
		if !hasMembers(m, "u1", "u2")() {
			t.Fatalf("members after failure: %v", names(m.Members()))
		}
	}
}

// cutTransport simulates a network partition: while cut is set, every packet this
// node sends is dropped and every stream it opens fails. Cutting both sides isolates them.
type cutTransport struct {
	*memberlist.NetTransport
	cut atomic.Bool
}

var _ memberlist.NodeAwareTransport = (*cutTransport)(nil)

var errCut = errors.New("partitioned")

func newCutTransport(t *testing.T) *cutTransport {
	t.Helper()
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"},
		Logger:    log.New(io.Discard, "", 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &cutTransport{NetTransport: nt}
}

func (c *cutTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return c.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (c *cutTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if c.cut.Load() {
		return time.Now(), nil // UDP loss is silent
	}
	return c.NetTransport.WriteToAddress(b, a)
}

func (c *cutTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return c.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (c *cutTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if c.cut.Load() {
		return nil, errCut
	}
	return c.NetTransport.DialAddressTimeout(a, timeout)
}

type pair struct {
	a, b   *Member
	ta, tb *cutTransport
}

// startPair starts a (no seeds) and b (seed a) on cuttable loopback transports.
func startPair(t *testing.T, prefix string, rejoin time.Duration) pair {
	p := pair{ta: newCutTransport(t), tb: newCutTransport(t)}
	p.a, _ = start(t, Config{Name: prefix + "a", Meta: metaFor(1), Transport: p.ta, RejoinInterval: rejoin})
	p.b, _ = start(t, Config{Name: prefix + "b", Meta: metaFor(2), Transport: p.tb, RejoinInterval: rejoin,
		Seeds: []string{p.a.LocalAddr()}})
	return p
}

func (p pair) setCut(v bool) { p.ta.cut.Store(v); p.tb.cut.Store(v) }

func (p pair) merged() bool { return len(p.a.Members()) == 2 && len(p.b.Members()) == 2 }

func (p pair) split() bool { return len(p.a.Members()) == 1 && len(p.b.Members()) == 1 }

// TestPartitionHeals runs two pairs through the same partition: the pair with a short
// RejoinInterval must merge again, the control pair (rejoin effectively off) shows that
// memberlist alone does not.
func TestPartitionHeals(t *testing.T) {
	healing := startPair(t, "h", 200*time.Millisecond)
	control := startPair(t, "c", time.Hour)
	for _, p := range []pair{healing, control} {
		testutil.Eventually(t, 5*time.Second, "pair merged", p.merged)
		p.setCut(true)
	}
	for _, p := range []pair{healing, control} {
		testutil.Eventually(t, 5*time.Second, "both sides declare the other dead", p.split)
	}
	// Past GossipToTheDeadTime (1 s in Fast) memberlist forgets dead nodes and stops
	// sending them anything, so only a rejoin can reconnect the sides.
	time.Sleep(1500 * time.Millisecond)
	healing.setCut(false)
	control.setCut(false)
	begin := time.Now()
	testutil.Eventually(t, 5*time.Second, "healed pair merged", healing.merged)
	t.Logf("partition healed after %v", time.Since(begin))
	time.Sleep(time.Second)
	if !control.split() {
		t.Fatalf("control pair merged without rejoin: %v / %v", names(control.a.Members()), names(control.b.Members()))
	}
}

func TestStartValidates(t *testing.T) {
	if _, err := Start(Config{Meta: metaFor(1)}); !errors.Is(err, ErrNoName) {
		t.Fatalf("Start without name: %v, want ErrNoName", err)
	}
	if _, err := Start(Config{Name: "x", Meta: Meta{Role: "db"}}); !errors.Is(err, ErrInvalidMeta) {
		t.Fatalf("Start with bad meta: %v, want ErrInvalidMeta", err)
	}
	if _, err := Start(Config{Name: "x", Meta: metaFor(1), BindAddr: "127.0.0.1", SecretKey: []byte("short")}); err == nil {
		t.Fatal("Start with a 5-byte SecretKey succeeded")
	}
}
