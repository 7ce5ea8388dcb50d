package worker

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/lorafleet/lorafleet/worker/engine"
)

// Config is what `lorafleet worker` runs. Zero fields take the documented defaults.
type Config struct {
	// ModelDir is the Hugging Face model directory (config.json, safetensors, tokenizer.json).
	// Required.
	ModelDir string
	// AdaptersDir holds PEFT adapters as AdaptersDir/name or AdaptersDir/org/name. Required.
	AdaptersDir string
	// Listen is the HTTP address. Default 127.0.0.1:9000.
	Listen string
	// ModelName is the name clients use for the base model. Default: ModelDir's last element.
	ModelName string
	// Backend runs the forward passes: "cpu" (the default), "cuda" (binaries built with the
	// cuda tag) or "sim", a cost model of a GPU that computes nothing (worker/sim).
	Backend string
	// Threads for the CPU backend. Default 0: GOMAXPROCS.
	Threads int
	// GPUDevice is the CUDA backend's GPU ordinal. Default 0.
	GPUDevice int
	// GPUMemoryFraction is the share of the GPU's memory the CUDA backend may use; the KV
	// cache gets what the weights, the adapter pool and a 2 GiB reserve leave of it (unless
	// Engine.NumBlocks is set). Default 0.9, as vLLM's gpu_memory_utilization.
	GPUMemoryFraction float64
	// EnforceEager makes the CUDA backend launch every kernel on its own, once the one before it
	// has ended, instead of replaying repeated decode steps as CUDA graphs (vLLM's
	// --enforce-eager) and starting kernels while the one before them finishes. Default false.
	EnforceEager bool
	// SimProfile is the sim backend's profile file. Default: the built-in H100 profile.
	SimProfile string
	// SimTimeScale multiplies the sim backend's modeled times (> 1 runs slower than the
	// modeled GPU, to fit many workers on one machine). Default 1.
	SimTimeScale float64

	// Engine holds the scheduling limits: MaxRunning, MaxBatchTokens, MaxWaiting,
	// MaxWaitingTokens, Slots (resident adapters), KV cache size. Defaults: engine.Config's.
	Engine engine.Config

	// HubCacheDir is where hf:// adapters are downloaded. Default: no hub downloads.
	HubCacheDir string
	// HubEndpoint is the Hugging Face Hub-compatible endpoint. Default https://huggingface.co.
	HubEndpoint string
	// HubToken is sent as a bearer token to the hub. Optional.
	HubToken string
	// HubRedirectHosts are the https hosts a hub download may be redirected to (the Hub
	// sends large files to a CDN). Default: none, only the endpoint's own host.
	HubRedirectHosts []string
	// HubIdleTimeout fails a download that receives nothing for this long. Default 30 s.
	HubIdleTimeout time.Duration
	// HostCacheBytes bounds parsed adapters kept in memory. Default 4 GiB.
	HostCacheBytes int64
	// DiskCacheBytes bounds the hub download cache. Default 32 GiB.
	DiskCacheBytes int64
	// MaxLoRARank refuses adapters of a larger rank. Default 64.
	MaxLoRARank int

	// DrainTimeout is how long in-flight requests may run after shutdown begins. Default 30 s.
	DrainTimeout time.Duration
	// StuckAfter turns /readyz to 503 when requests are pending and no step has finished for
	// this long. Default 60 s.
	StuckAfter time.Duration
	// AdminToken guards /v1/load_lora_adapter and /v1/unload_lora_adapter (Bearer). Empty:
	// the admin endpoints answer 403.
	AdminToken string
	// Gossip, when Gossip.Name is set, makes the worker a cluster member: routers learn its
	// HTTP address from it. Default: a standalone worker.
	Gossip Gossip
	// NATS, when NATS.URL is set, publishes load reports for the routers (needs Gossip.Name).
	NATS NATS

	// AdapterLabels is how many distinct adapters get their own label in per-adapter metrics;
	// the rest share "other". Default 32.
	AdapterLabels int
}

// Gossip is the worker's cluster membership (hashicorp/memberlist).
type Gossip struct {
	Name      string   // unique node name; empty: no membership
	Bind      string   // gossip host:port. Default 0.0.0.0:7946
	Seeds     []string // gossip addresses of nodes to join
	Advertise string   // HTTP host:port routers should use. Default: the listener's address
	Fast      bool     // test timings (see membership.Config.Fast)
	Key       []byte   // gossip encryption key (16, 24 or 32 bytes); every node needs the same
}

// errNoCUDA is the answer to the cuda backend in a binary built without the cuda tag.
var errNoCUDA = errors.New("worker: this binary has no CUDA backend: build it with `make build-cuda` (bin/lorafleet-cuda)")

// validate fills defaults and checks the config.
func (c *Config) validate() error {
	if c.ModelDir == "" {
		return errors.New("worker: model directory is required")
	}
	if c.AdaptersDir == "" {
		return errors.New("worker: adapters directory is required")
	}
	if c.ModelName == "" {
		c.ModelName = filepath.Base(filepath.Clean(c.ModelDir))
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:9000"
	}
	if c.Backend == "" {
		c.Backend = "cpu"
	}
	switch {
	case c.Backend == "cuda" && !cudaBuilt:
		return errNoCUDA
	case c.Backend != "cpu" && c.Backend != "sim" && c.Backend != "cuda":
		return fmt.Errorf("worker: unknown backend %q (have: cpu, cuda, sim)", c.Backend)
	}
	if c.GPUMemoryFraction == 0 {
		c.GPUMemoryFraction = 0.9
	}
	if !(c.GPUMemoryFraction > 0 && c.GPUMemoryFraction <= 1) || c.GPUDevice < 0 { // also NaN
		return fmt.Errorf("worker: GPU memory fraction %v must be in (0, 1], device %d ≥ 0", c.GPUMemoryFraction, c.GPUDevice)
	}
	if c.SimTimeScale == 0 {
		c.SimTimeScale = 1
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.StuckAfter == 0 {
		c.StuckAfter = 60 * time.Second
	}
	if c.AdapterLabels == 0 {
		c.AdapterLabels = 32
	}
	if c.Threads < 0 || c.DrainTimeout < 0 || c.StuckAfter < 0 || c.AdapterLabels < 0 || c.MaxLoRARank < 0 ||
		c.HostCacheBytes < 0 || c.DiskCacheBytes < 0 || c.HubIdleTimeout < 0 || c.SimTimeScale < 0 {
		return errors.New("worker: negative limit in config")
	}
	return nil
}
