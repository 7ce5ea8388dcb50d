package membership

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/memberlist"
)

// Roles a node can announce in its Meta.
const (
	RoleWorker = "worker"
	RoleRouter = "router"
)

// MaxCapacity bounds Meta.Capacity: the router turns capacity into ring weight, so an
// unbounded value gossiped by a faulty peer could blow up the ring.
const MaxCapacity = 1024

var (
	// ErrMetaTooLarge is returned when encoded meta exceeds memberlist.MetaMaxSize.
	ErrMetaTooLarge = errors.New("membership: node meta too large")
	// ErrInvalidMeta is returned for meta that does not parse or fails validation.
	ErrInvalidMeta = errors.New("membership: invalid node meta")
)

// Meta is what a node gossips about itself. It travels as the memberlist node meta,
// so its encoding must stay within memberlist.MetaMaxSize (512 bytes).
type Meta struct {
	Role     string `json:"role"`           // RoleWorker or RoleRouter
	HTTPAddr string `json:"http,omitempty"` // where the node serves HTTP (host:port); required for workers
	Model    string `json:"model,omitempty"`
	Capacity int    `json:"cap,omitempty"` // ring weight: 1..MaxCapacity for workers
	Version  string `json:"ver,omitempty"`
}

// Encode validates m and returns its compact JSON form.
func (m Meta) Encode() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("membership: encode meta: %w", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMetaTooLarge, len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// DecodeMeta parses meta gossiped by a peer. The bytes are untrusted: unknown fields
// are ignored (newer peers may add some), everything else is validated.
func DecodeMeta(b []byte) (Meta, error) {
	if len(b) > memberlist.MetaMaxSize {
		return Meta{}, fmt.Errorf("%w: %d bytes, limit %d", ErrMetaTooLarge, len(b), memberlist.MetaMaxSize)
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Errorf("%w: %w", ErrInvalidMeta, err)
	}
	if err := m.validate(); err != nil {
		return Meta{}, err
	}
	return m, nil
}

func (m Meta) validate() error {
	for _, f := range []struct{ name, v string }{
		{"role", m.Role}, {"http address", m.HTTPAddr}, {"model", m.Model}, {"version", m.Version},
	} {
		if !printable(f.v) {
			return fmt.Errorf("%w: %s is not printable UTF-8", ErrInvalidMeta, f.name)
		}
	}
	if m.Capacity < 0 || m.Capacity > MaxCapacity {
		return fmt.Errorf("%w: capacity %d outside [0, %d]", ErrInvalidMeta, m.Capacity, MaxCapacity)
	}
	if m.HTTPAddr != "" {
		if err := checkHostPort(m.HTTPAddr); err != nil {
			return err
		}
	}
	switch m.Role {
	case RoleRouter:
		return nil
	case RoleWorker:
		return m.validateWorker()
	default:
		return fmt.Errorf("%w: unknown role %q", ErrInvalidMeta, m.Role)
	}
}

func (m Meta) validateWorker() error {
	switch {
	case m.HTTPAddr == "":
		return fmt.Errorf("%w: worker without http address", ErrInvalidMeta)
	case m.Model == "":
		return fmt.Errorf("%w: worker without model", ErrInvalidMeta)
	case m.Capacity < 1:
		return fmt.Errorf("%w: worker capacity %d, want >= 1", ErrInvalidMeta, m.Capacity)
	}
	return nil
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: http address %q: %w", ErrInvalidMeta, addr, err)
	}
	p, err := strconv.Atoi(port)
	if host == "" || err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%w: http address %q needs a host and a port in 1..65535", ErrInvalidMeta, addr)
	}
	return nil
}

// printable rejects invalid UTF-8 and control characters: these strings end up in
// logs and metric labels.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
