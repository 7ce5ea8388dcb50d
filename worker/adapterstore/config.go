package adapterstore

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/lorafleet/lorafleet/pkg/peft"
)

// Config sets up a Store. Validate fills zero fields with the documented defaults.
type Config struct {
	// Root is the local adapter directory: ID "name" or "org/name" is the directory
	// Root/name or Root/org/name holding adapter_config.json. Required.
	Root string
	// CacheDir holds hub downloads (the disk tier). Without it, hf:// IDs are refused with
	// ErrInvalidID. One Store per CacheDir.
	CacheDir string
	// Endpoint is the Hugging Face Hub-compatible endpoint. Default "https://huggingface.co".
	Endpoint string
	// Token, if set, is sent to Endpoint as "Authorization: Bearer <Token>".
	Token string
	// MaxFileBytes caps each downloaded file. Default 2 GiB.
	MaxFileBytes int64
	// IdleTimeout fails a download (ErrFetchTimeout) that receives nothing for this long,
	// including while waiting for the response headers. Default 30 s.
	IdleTimeout time.Duration
	// HostCacheBytes bounds the parsed adapters kept in memory (Adapter.Bytes()). Default 4 GiB.
	HostCacheBytes int64
	// DiskCacheBytes bounds the downloaded files kept in CacheDir. Default 32 GiB.
	DiskCacheBytes int64
	// FailureTTL is how long a failed load is remembered and returned without retrying.
	// Default 30 s.
	FailureTTL time.Duration
	// Base describes the base model's layers and modules (model.Config.PEFTBase()). Required.
	Base peft.Base
	// MaxRank is the largest LoRA rank accepted. Default 64.
	MaxRank int
	// BF16 keeps adapters in bf16 in the host tier (peft.Options.BF16), for a backend that
	// holds them in bf16 on the device: half the memory, and an upload is a copy. Default
	// float32.
	BF16 bool
	// RedirectHosts are the hosts (host or host:port) besides Endpoint's that a download may
	// be redirected to, over https and without the token. The Hugging Face Hub redirects
	// every LFS file (adapter_model.safetensors) to its CDN, so for huggingface.co list the
	// CDN hosts in use, e.g. "cas-bridge.xethub.hf.co" and "cdn-lfs.hf.co". Default none.
	RedirectHosts []string
	// Client downloads from the hub. Default: one with dial and TLS handshake timeouts and no
	// proxy; IdleTimeout bounds the rest. The Store uses a copy whose CheckRedirect refuses
	// redirects to hosts other than Endpoint's and RedirectHosts.
	Client *http.Client
	// Observe, if set, is called once per Get that hit the host tier (tier "host", result
	// "hit") and once per load, whoever started it: tier "disk" (a local directory or a cached
	// download) or "hub" (downloaded), result "ok" or "error".
	Observe func(tier, result string, d time.Duration)
	// Delay, if set, is how long a successful load from tier ("disk" or "hub") waits before
	// the adapter is served: worker/sim's modeled load time of a full-size adapter.
	Delay func(tier string, a *peft.Adapter) time.Duration
}

// Validate fills in the defaults and checks the settings.
func (c *Config) Validate() error {
	if c.Root == "" {
		return errors.New("adapterstore: Root is required")
	}
	if c.Base.NumLayers <= 0 || len(c.Base.Modules) == 0 {
		return errors.New("adapterstore: Base (the base model's layers and modules) is required")
	}
	setDefault(&c.Endpoint, "https://huggingface.co")
	c.Endpoint = strings.TrimSuffix(c.Endpoint, "/")
	if u, err := url.Parse(c.Endpoint); err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("adapterstore: Endpoint %q is not an http(s) URL", c.Endpoint)
	}
	setDefault(&c.MaxFileBytes, 2<<30)
	setDefault(&c.IdleTimeout, 30*time.Second)
	setDefault(&c.HostCacheBytes, 4<<30)
	setDefault(&c.DiskCacheBytes, 32<<30)
	setDefault(&c.FailureTTL, 30*time.Second)
	setDefault(&c.MaxRank, peft.DefaultMaxRank)
	if c.MaxFileBytes < 0 || c.IdleTimeout < 0 || c.HostCacheBytes < 0 || c.DiskCacheBytes < 0 || c.FailureTTL < 0 || c.MaxRank < 0 {
		return errors.New("adapterstore: negative limit in Config")
	}
	return nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
