//go:build cudaemu && asan

package kernels

// go test -asan instruments the C code of cgo packages but not the C++: the emulated kernels
// are instrumented here, so that their reads and writes past a buffer are reported.

// #cgo CXXFLAGS: -fsanitize=address
import "C"
