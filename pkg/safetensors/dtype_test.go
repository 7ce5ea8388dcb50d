package safetensors_test

import (
	"bytes"
	"math"
	"testing"

	"github.com/lorafleet/lorafleet/pkg/safetensors"
)

// floatFromFields decodes a binary float from its fields with math.Ldexp,
// independently of the bit manipulation under test.
func floatFromFields(bits uint32, expBits, mantBits uint) float64 {
	sign := 1.0
	if bits>>(expBits+mantBits) != 0 {
		sign = -1
	}
	exp := int(bits>>mantBits) & (1<<expBits - 1)
	mant := float64(bits & (1<<mantBits - 1))
	bias := 1<<(expBits-1) - 1
	switch {
	case exp == 1<<expBits-1 && mant == 0:
		return math.Inf(int(sign))
	case exp == 1<<expBits-1:
		return math.NaN()
	case exp == 0:
		return sign * math.Ldexp(mant, 1-bias-int(mantBits))
	}
	return sign * math.Ldexp(mant+math.Ldexp(1, int(mantBits)), exp-bias-int(mantBits))
}

func checkAllPatterns(t *testing.T, name string, conv func(uint16) float32, expBits, mantBits uint) {
	for h := 0; h <= 0xffff; h++ {
		got := conv(uint16(h))
		want := floatFromFields(uint32(h), expBits, mantBits)
		switch {
		case math.IsNaN(want):
			if got == got {
				t.Fatalf("%s(%#04x) = %v, want NaN", name, h, got)
			}
		case float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want):
			t.Fatalf("%s(%#04x) = %v, want %v", name, h, got, want)
		}
	}
}

func TestF16ToFloat32AllPatterns(t *testing.T) {
	checkAllPatterns(t, "F16ToFloat32", safetensors.F16ToFloat32, 5, 10)
}

func TestBF16ToFloat32AllPatterns(t *testing.T) {
	checkAllPatterns(t, "BF16ToFloat32", safetensors.BF16ToFloat32, 8, 7)
}

func TestF16KnownValues(t *testing.T) {
	cases := []struct {
		h    uint16
		want float64
	}{
		{0x3c00, 1}, {0xc000, -2}, {0x7bff, 65504}, {0x0400, math.Ldexp(1, -14)},
		{0x0001, math.Ldexp(1, -24)}, {0x03ff, math.Ldexp(1023, -24)}, {0x8001, -math.Ldexp(1, -24)},
		{0x3555, math.Ldexp(0x155+0x400, -12)}, {0x7c00, math.Inf(1)}, {0xfc00, math.Inf(-1)},
	}
	for _, c := range cases {
		if got := safetensors.F16ToFloat32(c.h); float64(got) != c.want {
			t.Errorf("F16ToFloat32(%#04x) = %v, want %v", c.h, got, c.want)
		}
	}
	if z := safetensors.F16ToFloat32(0x8000); z != 0 || !math.Signbit(float64(z)) {
		t.Errorf("0x8000 = %v, want -0", z)
	}
	// NaN payload survives widening (quiet bit and low payload bits).
	if b := math.Float32bits(safetensors.F16ToFloat32(0x7e01)); b != 0x7fc02000 {
		t.Errorf("NaN 0x7e01 → %#08x, want 0x7fc02000", b)
	}
}

func TestEncodeBF16RoundsToNearestEven(t *testing.T) {
	cases := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3f80},
		{float32(1 + math.Ldexp(1, -8)), 0x3f80},                      // halfway, even stays down
		{float32(1 + 3*math.Ldexp(1, -8)), 0x3f82},                    // halfway, odd rounds up
		{float32(1 + math.Ldexp(1, -8) + math.Ldexp(1, -20)), 0x3f81}, // above halfway
		{-2, 0xc000},
		{math.MaxFloat32, 0x7f80}, // rounds to +Inf
		{float32(math.Inf(-1)), 0xff80},
		{float32(math.Ldexp(1, -133)), 0x0001}, // smallest BF16 subnormal
	}
	for _, c := range cases {
		got := safetensors.EncodeBF16([]float32{c.in})
		if want := []byte{byte(c.want), byte(c.want >> 8)}; !bytes.Equal(got, want) {
			t.Errorf("EncodeBF16(%v) = % x, want % x", c.in, got, want)
		}
	}
	nan := safetensors.EncodeBF16([]float32{float32(math.NaN())})
	if v := safetensors.BF16ToFloat32(uint16(nan[0]) | uint16(nan[1])<<8); v == v {
		t.Errorf("NaN encoded as % x", nan)
	}
}

func TestEncodeF32(t *testing.T) {
	got := safetensors.EncodeF32([]float32{1, -2.5})
	want := []byte{0, 0, 0x80, 0x3f, 0, 0, 0x20, 0xc0}
	if !bytes.Equal(got, want) {
		t.Errorf("EncodeF32 = % x, want % x", got, want)
	}
}

func TestDTypeSize(t *testing.T) {
	for d, want := range map[safetensors.DType]int{"F32": 4, "F16": 2, "BF16": 2, "I64": 0, "F64": 0} {
		if got := d.Size(); got != want {
			t.Errorf("%s.Size() = %d, want %d", d, got, want)
		}
	}
}
