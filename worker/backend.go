package worker

import (
	"cmp"
	"fmt"
	"time"

	"github.com/lorafleet/lorafleet/gpukern/cpuref"
	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/worker/engine"
	"github.com/lorafleet/lorafleet/worker/model"
	"github.com/lorafleet/lorafleet/worker/sim"
)

// backend is what runs the forward passes: the model on the CPU or a GPU, or the simulated GPU.
type backend struct {
	mc         *model.Config
	fwd        engine.Forwarder
	storeDelay func(tier string, a *peft.Adapter) time.Duration // nil: loads take what they take
	// bf16Adapters: the device holds adapters in bf16, so the host tier keeps them so too,
	// in half the memory.
	bf16Adapters bool
}

// newBackend loads the model (or only its config, for the simulation).
func newBackend(cfg *Config) (*backend, error) {
	switch cfg.Backend {
	case "sim":
		return newSimBackend(cfg)
	case "cuda":
		return newCUDABackend(cfg)
	}
	m, err := model.Load(cfg.ModelDir, cpuref.New(cfg.Threads))
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	return &backend{mc: &m.Config, fwd: m}, nil
}

// newSimBackend also sizes the KV cache from the profile unless the config sets it.
func newSimBackend(cfg *Config) (*backend, error) {
	mc, err := model.LoadConfig(cfg.ModelDir)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	prof, err := sim.LoadProfile(cfg.SimProfile)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	s, err := sim.New(prof, &mc, cfg.SimTimeScale)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if cfg.Engine.NumBlocks == 0 {
		bs := cmp.Or(cfg.Engine.BlockSize, 16)
		cfg.Engine.NumBlocks = (prof.KVCacheTokens + bs - 1) / bs
	}
	cfg.Engine.DeviceSampling = true // as the GPU it models does
	return &backend{mc: &mc, fwd: s, storeDelay: s.StoreDelay}, nil
}
