//go:build cuda

package main

import (
	"github.com/lorafleet/lorafleet/bench/engine"
	"github.com/lorafleet/lorafleet/gpukern"
	"github.com/lorafleet/lorafleet/gpukern/cuda"
)

// cudaBuilt says whether this binary has the CUDA backend.
const cudaBuilt = true

// bench engine finds what it measures on a GPU by these interfaces: a method that drifted
// from one would silently drop its measurement, so the build checks them.
var _ interface {
	engine.Timer
	engine.Randomizer
	engine.Grapher
	engine.Flusher
	engine.SideStreamer
	engine.EarlyLauncher
	engine.RoPEFuser
	engine.Splitter
	engine.DeepGEMMChooser
	engine.LeanGEMMChooser
	engine.GEMMChooser
	engine.GEMMTuner
	engine.Uploader
	engine.MemInfoer
	engine.Profiler
	engine.GraphCounter
} = (*cuda.Backend)(nil)

// newCUDABackend opens the GPU with an adapter pool of slots slots, each holding tensors of
// the given lengths.
func newCUDABackend(slots int, lens []int) (gpukern.Backend, func(), error) {
	be, err := cuda.New(cuda.Config{AdapterSlots: slots, AdapterSlotElems: cuda.SlotElems(lens)})
	if err != nil {
		return nil, nil, err
	}
	return be, be.Close, nil
}
