//go:build cuda

package main

import (
	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/gpukern/cuda"
)

// cudaBuilt says whether this binary has the CUDA backend.
const cudaBuilt = true

// newCUDABackend opens the GPU with an adapter pool of slots slots, each holding tensors of
// the given lengths.
func newCUDABackend(slots int, lens []int) (gpukern.Backend, func(), error) {
	be, err := cuda.New(cuda.Config{AdapterSlots: slots, AdapterSlotElems: cuda.SlotElems(lens)})
	if err != nil {
		return nil, nil, err
	}
	return be, be.Close, nil
}
