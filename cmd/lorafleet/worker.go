package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/lorafleet/lorafleet/worker"
)

func runWorker(args []string, e env) error {
	fs := newFlags("worker", "--model DIR --adapters DIR [--listen ADDR] [flags]", e)
	var c worker.Config
	var hostMiB, diskMiB int64
	fs.StringVar(&c.ModelDir, "model", "", "Hugging Face model directory")
	fs.StringVar(&c.AdaptersDir, "adapters", "", "directory of PEFT adapters (name or org/name)")
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:9000", "HTTP listen address")
	fs.StringVar(&c.Backend, "backend", "cpu", "what runs the forward passes: cpu, cuda (the lorafleet-cuda binary), or sim (a cost model of a GPU that computes nothing)")
	fs.IntVar(&c.GPUDevice, "gpu", 0, "cuda backend: GPU ordinal")
	fs.Float64Var(&c.GPUMemoryFraction, "gpu-memory-fraction", 0.9, "cuda backend: share of the GPU's memory to use (the KV cache gets what weights and adapters leave)")
	fs.BoolVar(&c.EnforceEager, "enforce-eager", false, "cuda backend: launch kernels one by one, each once the one before has ended, no CUDA graphs")
	fs.StringVar(&c.SimProfile, "sim-profile", "", "sim backend profile file (default: the built-in H100 + Llama-2-7B profile)")
	fs.Float64Var(&c.SimTimeScale, "sim-time-scale", 1, "sim backend: multiply modeled times by this (> 1 fits more workers on one machine)")
	fs.StringVar(&c.ModelName, "model-name", "", "name clients use for the base model (default: the model directory's name)")
	fs.IntVar(&c.Threads, "threads", 0, "CPU backend threads (0: all cores)")
	fs.IntVar(&c.Engine.MaxRunning, "max-running", 256, "sequences running at once")
	fs.IntVar(&c.Engine.MaxBatchTokens, "max-batch-tokens", 512, "tokens per forward pass (longer prompts are chunked)")
	fs.IntVar(&c.Engine.MaxWaiting, "max-waiting", 1024, "requests queued before new ones get 429")
	fs.IntVar(&c.Engine.MaxWaitingTokens, "max-waiting-tokens", 1<<20, "prompt tokens queued before new requests get 429")
	fs.IntVar(&c.Engine.Slots, "max-adapters", 8, "adapters resident on the device at once")
	fs.IntVar(&c.Engine.NumBlocks, "kv-blocks", 0, "KV cache blocks of 16 tokens (0: 8 full contexts)")
	fs.Int64Var(&hostMiB, "host-cache-mib", 4096, "MiB of parsed adapters kept in memory")
	fs.Int64Var(&diskMiB, "disk-cache-mib", 32768, "MiB of downloaded adapters kept on disk")
	fs.IntVar(&c.MaxLoRARank, "max-lora-rank", 64, "largest adapter rank accepted")
	fs.StringVar(&c.HubEndpoint, "hf-endpoint", "https://huggingface.co", "Hugging Face Hub-compatible endpoint for hf:// adapters")
	fs.StringVar(&c.HubCacheDir, "hf-cache", defaultHubCache(), "download cache for hf:// adapters")
	fs.Func("hf-redirect-host", "https host hub downloads may be redirected to, e.g. cas-bridge.xethub.hf.co (repeatable)", func(s string) error {
		c.HubRedirectHosts = append(c.HubRedirectHosts, s)
		return nil
	})
	fs.StringVar(&c.Gossip.Name, "node-name", "", "cluster node name (default with --join or --nats: HOST-PORT of --listen)")
	fs.StringVar(&c.Gossip.Bind, "gossip", "0.0.0.0:7946", "gossip listen address")
	fs.StringVar(&c.Gossip.Advertise, "advertise", "", "HTTP address routers should use (default: the listen address)")
	fs.Func("join", "gossip address of a cluster member to join (repeatable)", func(s string) error {
		c.Gossip.Seeds = append(c.Gossip.Seeds, s)
		return nil
	})
	fs.StringVar(&c.NATS.URL, "nats", "", "NATS server for load reports")
	fs.DurationVar(&c.NATS.Interval, "report-interval", 500*time.Millisecond, "how often load reports are published")
	fs.StringVar(&c.NATS.Cluster, "cluster", "lorafleet", "cluster name shared with the routers (NATS subjects)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 30*time.Second, "time in-flight requests get to finish on SIGTERM")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := required(fs, "model", c.ModelDir); err != nil {
		return err
	}
	if err := required(fs, "adapters", c.AdaptersDir); err != nil {
		return err
	}
	c.HostCacheBytes, c.DiskCacheBytes = hostMiB<<20, diskMiB<<20
	if c.Gossip.Name == "" && (len(c.Gossip.Seeds) > 0 || c.NATS.URL != "") {
		c.Gossip.Name = defaultNodeName(c.Listen)
	}
	key, err := gossipKey()
	if err != nil {
		return err
	}
	c.Gossip.Key = key
	// Secrets come from the environment, not flags, so they stay out of process listings.
	c.AdminToken = os.Getenv("LORAFLEET_ADMIN_TOKEN")
	c.HubToken = os.Getenv("HF_TOKEN")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	return worker.Run(ctx, c, log)
}

// defaultNodeName is unique per machine and port: HOST-PORT.
func defaultNodeName(listen string) string {
	host, err := os.Hostname()
	if err != nil {
		host = "worker"
	}
	_, port, _ := net.SplitHostPort(listen)
	return host + "-" + port
}

// gossipKey reads LORAFLEET_GOSSIP_KEY (base64 of 16, 24 or 32 bytes), if set.
func gossipKey() ([]byte, error) {
	v := os.Getenv("LORAFLEET_GOSSIP_KEY")
	if v == "" {
		return nil, nil
	}
	key, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("LORAFLEET_GOSSIP_KEY is not base64: %w", err)
	}
	return key, nil
}

func defaultHubCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "lorafleet", "hub")
}
