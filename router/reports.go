package router

import (
	"context"
	"time"

	"github.com/lorafleet/lorafleet/pkg/loadreport"
)

// FollowReports applies the workers' load reports to the ring every interval until ctx ends:
// their in-flight counts, resident adapters and draining flags. A worker whose report expired
// is back to the router's own count, with no adapter known to be resident.
func (r *Router) FollowReports(ctx context.Context, t *loadreport.Table, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		seen := map[string]bool{}
		for _, rep := range t.Snapshot() {
			seen[rep.Worker] = true
			r.Report(rep.Worker, rep.InFlight, rep.Adapters, rep.Draining)
		}
		for _, l := range r.ring.Loads() {
			if !seen[l.ID] {
				r.Report(l.ID, 0, nil, false)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
