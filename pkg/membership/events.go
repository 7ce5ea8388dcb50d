package membership

import (
	"log"
	"sort"
	"sync"

	"github.com/hashicorp/memberlist"
)

// EventType says what happened to a node.
type EventType int

// Event types.
const (
	EventJoin   EventType = iota + 1 // the node became alive (first seen, or back from dead)
	EventLeave                       // the node left or was declared dead
	EventUpdate                      // the node's Meta changed
)

func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	case EventUpdate:
		return "update"
	default:
		return "unknown"
	}
}

// Node is a cluster member as seen through gossip.
type Node struct {
	Name string
	Addr string // gossip address, host:port
	Meta Meta
}

// Event reports a membership change. For EventLeave, Node.Meta is the last meta known.
type Event struct {
	Type EventType
	Node Node
}

// delegate plugs into memberlist: it serves the local meta, rejects peers whose meta is
// invalid, and keeps its own member table so Members never reads memberlist's nodes
// outside memberlist's lock.
type delegate struct {
	logger *log.Logger
	events *dispatcher // nil when Config.Events is nil

	mu      sync.Mutex
	meta    []byte
	members map[string]Node
}

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
	_ memberlist.AliveDelegate = (*delegate)(nil)
)

func newDelegate(meta []byte, logger *log.Logger, events *dispatcher) *delegate {
	return &delegate{logger: logger, events: events, meta: meta, members: make(map[string]Node)}
}

func (d *delegate) setMeta(meta []byte) {
	d.mu.Lock()
	d.meta = meta
	d.mu.Unlock()
}

// NodeMeta returns the encoded local meta; Meta.Encode already bounds it by
// memberlist.MetaMaxSize, the only limit memberlist passes.
func (d *delegate) NodeMeta(int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.meta
}

// NotifyAlive drops alive messages with invalid meta, so such peers never become members.
func (d *delegate) NotifyAlive(n *memberlist.Node) error {
	_, err := DecodeMeta(n.Meta)
	return err
}

// NotifyJoin, NotifyLeave and NotifyUpdate run under memberlist's state lock: they only
// touch the table and queue the event.
func (d *delegate) NotifyJoin(n *memberlist.Node)   { d.record(EventJoin, n) }
func (d *delegate) NotifyLeave(n *memberlist.Node)  { d.record(EventLeave, n) }
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.record(EventUpdate, n) }

func (d *delegate) record(t EventType, n *memberlist.Node) {
	meta, err := DecodeMeta(n.Meta)
	if err != nil && t != EventLeave { // NotifyAlive vetted it; only a leave may carry stale meta
		d.logger.Printf("[WARN] membership: ignoring %s of %q: %v", t, n.Name, err)
		return
	}
	node := Node{Name: n.Name, Addr: n.Address(), Meta: meta}
	d.mu.Lock()
	if t == EventLeave {
		delete(d.members, n.Name)
	} else {
		d.members[n.Name] = node
	}
	d.mu.Unlock()
	if d.events != nil {
		d.events.push(Event{Type: t, Node: node})
	}
}

// NotifyMsg, GetBroadcasts, LocalState and MergeRemoteState complete memberlist.Delegate;
// lorafleet gossips nothing beyond node meta.
func (d *delegate) NotifyMsg([]byte)                {}
func (d *delegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d *delegate) LocalState(bool) []byte          { return nil }
func (d *delegate) MergeRemoteState([]byte, bool)   {}

func (d *delegate) snapshot() []Node {
	d.mu.Lock()
	nodes := make([]Node, 0, len(d.members))
	for _, n := range d.members {
		nodes = append(nodes, n)
	}
	d.mu.Unlock()
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	return nodes
}

// dispatcher delivers events to the user callback in order on its own goroutine. The
// queue is unbounded so memberlist never blocks on a slow callback and no event is
// lost; membership churn keeps it short.
type dispatcher struct {
	fn   func(Event)
	wake chan struct{}
	stop chan struct{}
	done chan struct{}

	mu    sync.Mutex
	queue []Event
}

func startDispatcher(fn func(Event)) *dispatcher {
	d := &dispatcher{
		fn:   fn,
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go d.run()
	return d
}

func (d *dispatcher) push(e Event) {
	d.mu.Lock()
	d.queue = append(d.queue, e)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

func (d *dispatcher) run() {
	defer close(d.done)
	for {
		select {
		case <-d.stop:
			return
		case <-d.wake:
		}
		for e, ok := d.pop(); ok; e, ok = d.pop() {
			d.fn(e)
		}
	}
}

// pop returns the next event, or false when the queue is empty or the dispatcher stops.
func (d *dispatcher) pop() (Event, bool) {
	select {
	case <-d.stop:
		return Event{}, false
	default:
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.queue) == 0 {
		return Event{}, false
	}
	e := d.queue[0]
	d.queue[0] = Event{}
	d.queue = d.queue[1:]
	return e, true
}

// close stops delivery (pending events are dropped) and waits for the goroutine.
func (d *dispatcher) close() {
	close(d.stop)
	<-d.done
}
