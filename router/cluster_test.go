package router

import (
	"context"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/lorafleet/lorafleet/internal/testutil"
	"github.com/lorafleet/lorafleet/pkg/loadreport"
	"github.com/lorafleet/lorafleet/worker"
)

// The whole cluster in one process: embedded NATS, two workers that gossip and publish load
// reports, a router that follows both. Reports tell the router where adapters are resident,
// and NATS going away and coming back costs no request.
func TestReportsAndNATSOutage(t *testing.T) {
	ns := testutil.RunNATS(t, -1)
	natsURL := ns.ClientURL()
	port := ns.Addr().(*net.TCPAddr).Port
	r, self := gossipRouter(t)
	nc, err := nats.Connect(natsURL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	table, err := loadreport.Subscribe(nc, loadreport.TableConfig{Cluster: "test", Interval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer table.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.FollowReports(ctx, table, 50*time.Millisecond)
	for _, name := range []string{"wa", "wb"} {
		w := newWorker(t, func(c *worker.Config) {
			gossip(name, self)(c)
			c.NATS = worker.NATS{URL: natsURL, Cluster: "test", Interval: 100 * time.Millisecond}
		})
		serve(t, w.Serve)
	}
	cl := &cluster{r: r, url: "http://" + serve(t, r.Serve)}
	testutil.Eventually(t, 10*time.Second, "both workers in the ring", func() bool { return len(r.ring.Loads()) == 2 })
	_, _, home := cl.complete(t, map[string]any{"model": "sql", "prompt": "x", "max_tokens": 2})
	testutil.Eventually(t, 5*time.Second, "a report saying sql is resident", func() bool {
		for _, w := range clusterState(t, cl) {
			if w.ID == home && slices.Contains(w.Adapters, "sql") {
				return true
			}
		}
		return false
	})

	ns.Shutdown() // NATS goes away under load: requests keep succeeding
	for i := range 20 {
		if status, body, _ := cl.complete(t, map[string]any{"model": []string{"sql", "chat", "tiny-llama"}[i%3], "prompt": "x", "max_tokens": 2}); status != http.StatusOK {
			t.Fatalf("request %d without NATS: %d %s", i, status, body)
		}
	}
	before := table.Stats().Accepted
	testutil.RunNATS(t, port) // back on the same port: publishers and the table reconnect
	testutil.Eventually(t, 10*time.Second, "reports to resume", func() bool { return table.Stats().Accepted > before+2 })
}
