//go:build cuda

package worker

import (
	"cmp"
	"fmt"

	"github.com/lorafleet/lorafleet/gpukern/cuda"
	"github.com/lorafleet/lorafleet/pkg/peft"
	"github.com/lorafleet/lorafleet/worker/model"
)

// cudaBuilt says whether this binary has the CUDA backend.
const cudaBuilt = true

// activationReserve is device memory kept free of the KV cache for activations, cuBLAS and
// the kernels' scratch buffers.
const activationReserve = 2 << 30

// newCUDABackend loads the model onto the GPU with an adapter pool of Engine.Slots slots of
// MaxLoRARank, and sizes the KV cache from what is left of GPUMemoryFraction of the
// device's memory unless the config sets it.
func newCUDABackend(cfg *Config) (*backend, error) {
	mc, err := model.LoadConfig(cfg.ModelDir)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if mc.HeadDim > cuda.MaxHeadDim {
		return nil, fmt.Errorf("worker: the model's heads of %d values are above the CUDA backend's largest, %d", mc.HeadDim, cuda.MaxHeadDim)
	}
	rank := cmp.Or(cfg.MaxLoRARank, peft.DefaultMaxRank)
	if rank > cuda.MaxLoRARank {
		return nil, fmt.Errorf("worker: --max-lora-rank %d is above the CUDA backend's largest, %d", rank, cuda.MaxLoRARank)
	}
	slot := cuda.SlotElems(mc.AdapterLens(rank))
	be, err := cuda.New(cuda.Config{Device: cfg.GPUDevice, AdapterSlots: cmp.Or(cfg.Engine.Slots, 8), AdapterSlotElems: slot, NoGraphs: cfg.EnforceEager, NoEarlyLaunch: cfg.EnforceEager})
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	m, err := model.Load(cfg.ModelDir, be)
	if err != nil {
		be.Close()
		return nil, fmt.Errorf("worker: %w", err)
	}
	if cfg.Engine.NumBlocks == 0 {
		free, total, err := be.MemInfo()
		if err != nil {
			be.Close()
			return nil, fmt.Errorf("worker: %w", err)
		}
		bs := cmp.Or(cfg.Engine.BlockSize, 16)
		perBlock := int64(bs) * int64(2*mc.Layers*mc.KVHeads*mc.HeadDim) * 2 // K and V, bf16
		budget := int64(cfg.GPUMemoryFraction*float64(total)) - (total - free) - activationReserve
		if budget < perBlock {
			be.Close()
			return nil, fmt.Errorf("worker: no device memory left for the KV cache (%d MiB free of %d; --gpu-memory-fraction %.2f)",
				free>>20, total>>20, cfg.GPUMemoryFraction)
		}
		cfg.Engine.NumBlocks = int(budget / perBlock)
	}
	cfg.Engine.DeviceSampling, cfg.Engine.PadDecode = true, true
	return &backend{mc: &m.Config, fwd: m, bf16Adapters: true}, nil
}
