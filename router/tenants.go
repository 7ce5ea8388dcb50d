package router

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// TenantSpec is one tenant in the tenants file (JSON: {"tenants": [...]}).
type TenantSpec struct {
	Name string `json:"name"`
	// KeySHA256 is the hex sha256 of the tenant's API key: the file holds no secrets.
	KeySHA256 string `json:"key_sha256"`
	// Adapters are glob patterns (path.Match) of the adapters the tenant may use; the base
	// model is written as "" — include it to allow base-model requests. Empty: all.
	Adapters []string `json:"adapters"`
	// Limits; 0 means unlimited.
	RequestsPerMinute int `json:"requests_per_minute"`
	TokensPerMinute   int `json:"tokens_per_minute"` // charged max_tokens (or 16) per request
	Concurrency       int `json:"concurrency"`
}

// Tenants authenticates API keys and enforces each tenant's limits.
type Tenants struct {
	byKey map[string]*tenant // sha256 hex → tenant
}

type tenant struct {
	spec     TenantSpec
	requests *rate.Limiter
	tokens   *rate.Limiter
	mu       sync.Mutex
	active   int
}

// LoadTenants reads a tenants file.
func LoadTenants(file string) (*Tenants, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("router: tenants: %w", err)
	}
	var f struct {
		Tenants []TenantSpec `json:"tenants"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("router: tenants file %s: %w", file, err)
	}
	return NewTenants(f.Tenants)
}

// NewTenants checks the specs and builds their limiters.
func NewTenants(specs []TenantSpec) (*Tenants, error) {
	t := &Tenants{byKey: map[string]*tenant{}}
	for _, s := range specs {
		if k, err := hex.DecodeString(s.KeySHA256); err != nil || len(k) != sha256.Size {
			return nil, fmt.Errorf("router: tenant %q: key_sha256 must be 64 hex digits", s.Name)
		}
		for _, p := range s.Adapters {
			if _, err := path.Match(p, ""); err != nil {
				return nil, fmt.Errorf("router: tenant %q: bad adapter pattern %q", s.Name, p)
			}
		}
		if s.RequestsPerMinute < 0 || s.TokensPerMinute < 0 || s.Concurrency < 0 {
			return nil, fmt.Errorf("router: tenant %q: negative limit", s.Name)
		}
		if _, dup := t.byKey[s.KeySHA256]; dup {
			return nil, fmt.Errorf("router: tenant %q: key shared with another tenant", s.Name)
		}
		t.byKey[s.KeySHA256] = &tenant{spec: s, requests: perMinute(s.RequestsPerMinute), tokens: perMinute(s.TokensPerMinute)}
	}
	return t, nil
}

// perMinute allows n events a minute with a burst of n; nil for unlimited.
func perMinute(n int) *rate.Limiter {
	if n == 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(float64(n)/60), n)
}

// HashKey is how keys are stored in the tenants file.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

var errNoKey = errors.New("router: missing or unknown API key")

// authenticate finds the tenant of a bearer key.
func (t *Tenants) authenticate(key string) (*tenant, error) {
	if key == "" {
		return nil, errNoKey
	}
	tn, ok := t.byKey[HashKey(key)]
	if !ok {
		return nil, errNoKey
	}
	return tn, nil
}

func (tn *tenant) allows(adapter string) bool {
	if len(tn.spec.Adapters) == 0 {
		return true
	}
	for _, p := range tn.spec.Adapters {
		if ok, _ := path.Match(p, adapter); ok {
			return true
		}
	}
	return false
}

// admit charges a request to the tenant's limits. It returns how long to wait before a retry
// when a limit is reached, and otherwise a release function to call when the request ends.
func (tn *tenant) admit(tokens int, now time.Time) (release func(), retryAfter time.Duration) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if c := tn.spec.Concurrency; c > 0 && tn.active >= c {
		return nil, time.Second
	}
	r1, d1 := reserve(tn.requests, 1, now)
	r2, d2 := reserve(tn.tokens, min(tokens, tn.spec.TokensPerMinute), now)
	if d := max(d1, d2); d > 0 {
		for _, r := range []*rate.Reservation{r1, r2} { // a refused request costs nothing
			if r != nil {
				r.CancelAt(now)
			}
		}
		return nil, d
	}
	tn.active++
	return func() {
		tn.mu.Lock()
		tn.active--
		tn.mu.Unlock()
	}, 0
}

// reserve takes n events now, or says how long until they would be available; the
// reservation is returned so that it can be cancelled.
func reserve(l *rate.Limiter, n int, now time.Time) (*rate.Reservation, time.Duration) {
	if l == nil || n <= 0 {
		return nil, 0
	}
	r := l.ReserveN(now, n)
	if !r.OK() {
		return nil, time.Minute
	}
	return r, r.DelayFrom(now)
}
