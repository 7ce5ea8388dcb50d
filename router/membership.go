package router

import "github.com/lorafleet/lorafleet/pkg/membership"

// Apply feeds a membership event to the router: workers join, change and leave the ring.
// Other roles are ignored.
func (r *Router) Apply(ev membership.Event) {
	if ev.Node.Meta.Role != membership.RoleWorker {
		return
	}
	switch ev.Type {
	case membership.EventJoin, membership.EventUpdate:
		r.SetWorker(ev.Node.Name, ev.Node.Meta.HTTPAddr, ev.Node.Meta.Capacity)
	case membership.EventLeave:
		r.RemoveWorker(ev.Node.Name)
	}
}
