//go:build !cuda

package worker

// cudaBuilt says whether this binary has the CUDA backend.
const cudaBuilt = false

func newCUDABackend(*Config) (*backend, error) { return nil, errNoCUDA }
