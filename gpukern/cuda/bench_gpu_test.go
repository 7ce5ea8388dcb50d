//go:build cuda

package cuda_test

import (
	"math"
	"testing"
)

// TestCopyBandwidth measures a device-to-device copy, which checks that its bytes arrived. On
// the emulator the figure is the host's memmove, timed by the host's clock at the events; on a
// GPU it is the card's. A copy of nothing is refused.
func TestCopyBandwidth(t *testing.T) {
	for _, n := range []int64{1, 100, 3 << 20} {
		bw, err := gpu.CopyBandwidth(n)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !(bw > 0) || math.IsInf(bw, 0) {
			t.Errorf("%d bytes: bandwidth %g bytes/s", n, bw)
		}
		t.Logf("%d bytes: %.3g bytes/s", n, bw)
	}
	if _, err := gpu.CopyBandwidth(0); err == nil {
		t.Error("a copy of no bytes was timed")
	}
}
