package safetensors

import (
	"encoding/binary"
	"math"
)

// DType is a safetensors element type. Only the float types the engine
// computes with are accepted; any other dtype is refused with ErrDType.
type DType string

// Supported dtypes.
const (
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
)

// Size is the element size in bytes, or 0 for an unsupported dtype.
func (d DType) Size() int {
	switch d {
	case F32:
		return 4
	case F16, BF16:
		return 2
	}
	return 0
}

// BF16ToFloat32 widens a bfloat16 bit pattern; bfloat16 is the top half of a
// float32, so the conversion is exact for every value including NaN payloads.
func BF16ToFloat32(b uint16) float32 {
	return math.Float32frombits(uint32(b) << 16)
}

// F16ToFloat32 widens an IEEE 754 binary16 bit pattern exactly: every half
// value (subnormals, ±Inf, NaN with its payload) is representable in float32.
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0: // normal: rebias 15 → 127
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal: mant·2^-24 is a normal float32, so this product is exact.
	v := float32(mant) * 0x1p-24
	if sign != 0 {
		v = -v
	}
	return v
}

// EncodeF32 returns the little-endian F32 bytes of v.
func EncodeF32(v []float32) []byte {
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
	}
	return out
}

// EncodeBF16 returns the little-endian BF16 bytes of v, rounding to nearest
// even as PyTorch does; NaNs stay NaN (quiet) rather than rounding to Inf.
func EncodeBF16(v []float32) []byte {
	out := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(out[2*i:], Float32ToBF16(x))
	}
	return out
}

// BF16s rounds every value of v to BF16 (Float32ToBF16).
func BF16s(v []float32) []uint16 {
	out := make([]uint16, len(v))
	for i, x := range v {
		out[i] = Float32ToBF16(x)
	}
	return out
}

// Float32ToBF16 rounds x to the nearest BF16, ties to even; NaN stays a quiet NaN.
func Float32ToBF16(x float32) uint16 {
	b := math.Float32bits(x)
	if x != x {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// decode converts raw little-endian elements of dtype d into dst.
func decode(d DType, raw []byte, dst []float32) {
	switch d {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = F16ToFloat32(binary.LittleEndian.Uint16(raw[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = BF16ToFloat32(binary.LittleEndian.Uint16(raw[2*i:]))
		}
	}
}
