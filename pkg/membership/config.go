package membership

import (
	"errors"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/hashicorp/memberlist"
)

// Defaults applied by Start to zero Config fields.
const (
	DefaultBindAddr       = "0.0.0.0"
	DefaultRejoinInterval = 10 * time.Second
)

// ErrNoName is returned by Start when Config.Name is empty.
var ErrNoName = errors.New("membership: Config.Name is required")

// Config configures a Member. Zero values take the documented defaults.
type Config struct {
	// Name is the node's unique name in the cluster. Required.
	Name string
	// BindAddr is the address gossip listens on (UDP and TCP). Default "0.0.0.0".
	// Ignored when Transport is set.
	BindAddr string
	// BindPort is the gossip port; 0 picks a free one (see Member.LocalAddr).
	// Ignored when Transport is set.
	BindPort int
	// AdvertiseAddr and AdvertisePort are what peers use to reach this node when it
	// differs from the bound address (NAT, containers). Default: derived from the bind.
	AdvertiseAddr string
	AdvertisePort int
	// Seeds are host:port gossip addresses of nodes to join. Empty: start a new cluster.
	Seeds []string
	// Meta is gossiped to every peer; it must pass Meta.Encode.
	Meta Meta
	// SecretKey enables gossip encryption (AES, 16, 24 or 32 bytes). Every node needs
	// the same key. Default: none.
	SecretKey []byte
	// RejoinInterval is how often seeds that are not alive members are joined again, so
	// a healed partition merges without restarts (memberlist stops talking to nodes it
	// declared dead). Default 10 s.
	RejoinInterval time.Duration
	// Fast selects test timings (probe every 100 ms, short suspicion): a crashed node is
	// dropped in about a second on loopback instead of several seconds. Default: the
	// memberlist LAN timings.
	Fast bool
	// Transport replaces the UDP/TCP transport, e.g. with memberlist.MockNetwork
	// transports in tests. Default: memberlist's NetTransport on BindAddr:BindPort.
	Transport memberlist.Transport
	// Events receives join, leave and update events, including this node's own join, one
	// call at a time and in order, from a goroutine of its own. It must not call
	// Member.Shutdown or Member.Leave. Default: none.
	Events func(Event)
	// Logger receives memberlist and membership logs. Default: discarded.
	Logger *log.Logger
}

// withDefaults validates c and returns a copy with defaults filled in.
func (c Config) withDefaults() (Config, error) {
	if c.Name == "" {
		return c, ErrNoName
	}
	if c.RejoinInterval < 0 {
		return c, fmt.Errorf("membership: RejoinInterval %v is negative", c.RejoinInterval)
	}
	if c.BindAddr == "" {
		c.BindAddr = DefaultBindAddr
	}
	if c.RejoinInterval == 0 {
		c.RejoinInterval = DefaultRejoinInterval
	}
	if c.Logger == nil {
		c.Logger = log.New(io.Discard, "", 0)
	}
	c.Seeds = append([]string(nil), c.Seeds...)
	return c, nil
}

// memberlistConfig translates c (defaults applied) into memberlist's configuration.
func (c Config) memberlistConfig(d *delegate) *memberlist.Config {
	mc := memberlist.DefaultLANConfig()
	if c.Fast {
		mc = fastConfig()
	}
	mc.Name = c.Name
	mc.BindAddr = c.BindAddr
	mc.BindPort = c.BindPort
	mc.AdvertiseAddr = c.AdvertiseAddr
	mc.AdvertisePort = c.AdvertisePort
	mc.SecretKey = c.SecretKey
	mc.Transport = c.Transport
	mc.Logger = c.Logger
	mc.Delegate = d
	mc.Events = d
	mc.Alive = d
	return mc
}

// fastConfig scales memberlist.DefaultLocalConfig down for tests on one machine.
func fastConfig() *memberlist.Config {
	mc := memberlist.DefaultLocalConfig()
	mc.ProbeInterval = 100 * time.Millisecond
	mc.ProbeTimeout = 50 * time.Millisecond
	mc.GossipInterval = 20 * time.Millisecond
	mc.PushPullInterval = time.Second
	mc.TCPTimeout = 200 * time.Millisecond
	mc.GossipToTheDeadTime = time.Second
	return mc
}
