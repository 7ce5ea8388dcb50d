// Package membership lets lorafleet workers and routers find each other by gossip
// (hashicorp/memberlist). Each node announces a small Meta; the router feeds its hash
// ring from the join, leave and update events.
package membership

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// ErrStopped is returned by calls on a Member that has left or shut down.
var ErrStopped = errors.New("membership: member has left or shut down")

// updateTimeout bounds how long UpdateMeta waits for its broadcast to go out; the new
// meta is applied locally and keeps spreading even when the wait times out.
const updateTimeout = 5 * time.Second

// Member is this process's membership in the cluster.
type Member struct {
	ml     *memberlist.Memberlist
	del    *delegate
	events *dispatcher // nil without Config.Events
	cfg    Config

	stopRejoin chan struct{}
	rejoinDone chan struct{}

	mu      sync.Mutex // serialises Leave, Shutdown and UpdateMeta against each other
	left    bool
	stopped bool
}

// Start creates the memberlist and joins cfg.Seeds. A failed initial join is logged,
// not returned: the rejoin loop keeps trying every cfg.RejoinInterval. Joining blocks
// for up to memberlist's TCP timeout per unreachable seed.
func Start(cfg Config) (*Member, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	meta, err := cfg.Meta.Encode()
	if err != nil {
		return nil, err
	}
	m := &Member{cfg: cfg, stopRejoin: make(chan struct{}), rejoinDone: make(chan struct{})}
	if cfg.Events != nil {
		m.events = startDispatcher(cfg.Events)
	}
	m.del = newDelegate(meta, cfg.Logger, m.events)
	m.ml, err = memberlist.Create(cfg.memberlistConfig(m.del))
	if err != nil {
		if m.events != nil {
			m.events.close()
		}
		return nil, fmt.Errorf("membership: start %q: %w", cfg.Name, err)
	}
	m.joinMissingSeeds()
	go m.rejoinLoop()
	return m, nil
}

// Members returns the alive members, this node included, sorted by name.
func (m *Member) Members() []Node { return m.del.snapshot() }

// LocalAddr returns the gossip address peers reach this node at (host:port): the
// advertised address, with the port actually bound when Config.BindPort was 0.
func (m *Member) LocalAddr() string { return m.ml.LocalNode().Address() }

// UpdateMeta gossips new meta for this node. It waits up to 5 s for the broadcast.
func (m *Member) UpdateMeta(meta Meta) error {
	b, err := meta.Encode()
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.left || m.stopped {
		return ErrStopped
	}
	m.del.setMeta(b)
	if err := m.ml.UpdateNode(updateTimeout); err != nil {
		return fmt.Errorf("membership: update meta: %w", err)
	}
	return nil
}

// Leave tells the cluster this node is going away, waiting up to timeout for the
// message to go out (0: wait indefinitely), and stops rejoining. Call Shutdown after.
func (m *Member) Leave(timeout time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return ErrStopped
	}
	if !m.left {
		m.left = true
		m.stopRejoinLoop()
	}
	if err := m.ml.Leave(timeout); err != nil {
		return fmt.Errorf("membership: leave: %w", err)
	}
	return nil
}

// Shutdown stops gossip without a leave message (peers detect the node as failed) and
// stops event delivery; events still queued are dropped. Safe to call more than once.
func (m *Member) Shutdown() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return nil
	}
	m.stopped = true
	if !m.left {
		m.stopRejoinLoop()
	}
	err := m.ml.Shutdown()
	if m.events != nil {
		m.events.close()
	}
	if err != nil {
		return fmt.Errorf("membership: shutdown: %w", err)
	}
	return nil
}

func (m *Member) stopRejoinLoop() {
	close(m.stopRejoin)
	<-m.rejoinDone
}

// rejoinLoop re-joins seeds that are not alive members. memberlist stops probing nodes
// it declared dead, so without this two sides of a healed partition stay apart.
func (m *Member) rejoinLoop() {
	defer close(m.rejoinDone)
	t := time.NewTicker(m.cfg.RejoinInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stopRejoin:
			return
		case <-t.C:
			m.joinMissingSeeds()
		}
	}
}

func (m *Member) joinMissingSeeds() {
	missing := m.missingSeeds()
	if len(missing) == 0 {
		return
	}
	if _, err := m.ml.Join(missing); err != nil {
		m.cfg.Logger.Printf("[WARN] membership: join %v: %v", missing, err)
	}
}

// missingSeeds lists the seeds whose address is not an alive member's. A seed given by
// host name never matches and is joined every interval, which is harmless.
func (m *Member) missingSeeds() []string {
	alive := map[string]bool{m.LocalAddr(): true}
	for _, n := range m.del.snapshot() {
		alive[n.Addr] = true
	}
	var missing []string
	for _, s := range m.cfg.Seeds {
		if !alive[s] {
			missing = append(missing, s)
		}
	}
	return missing
}
