//go:build !cuda

package main

import (
	"errors"

	"github.com/lorafleet/lorafleet/gpukern"
)

// cudaBuilt says whether this binary has the CUDA backend.
const cudaBuilt = false

func newCUDABackend(int, []int) (gpukern.Backend, func(), error) {
	return nil, nil, errors.New("this binary has no CUDA backend: build it with `make build-cuda` (bin/lorafleet-cuda)")
}
