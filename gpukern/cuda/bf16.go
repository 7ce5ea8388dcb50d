//go:build cuda

package cuda

import "github.com/lorafleet/lorafleet/pkg/safetensors"

// toBF16 rounds src to bf16 (nearest even), as PyTorch's conversion does.
func toBF16(src []float32) []uint16 {
	out := make([]uint16, len(src))
	for i, x := range src {
		out[i] = safetensors.Float32ToBF16(x)
	}
	return out
}

func fromBF16(dst []float32, src []uint16) {
	for i, h := range src {
		dst[i] = safetensors.BF16ToFloat32(h)
	}
}
