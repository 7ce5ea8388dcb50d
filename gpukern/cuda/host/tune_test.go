package host

import (
	"testing"
	"time"
)

func TestFastest(t *testing.T) {
	for _, c := range []struct {
		times []time.Duration
		want  int
	}{
		{[]time.Duration{5, 3, 4}, 1},
		{[]time.Duration{3, 3, 4}, 0},    // a tie: the first, GemmEx
		{[]time.Duration{0, 7, 6}, 2},    // GemmEx failed
		{[]time.Duration{4, 0, 0}, 0},    // every cuBLASLt algorithm failed
		{[]time.Duration{0, 0}, 0},       // all failed: GemmEx
		{[]time.Duration{9}, 0},          // cuBLASLt offered none
		{[]time.Duration{9, 2, 0, 1}, 3}, // a failure between
	} {
		if got := Fastest(c.times); got != c.want {
			t.Errorf("Fastest(%v) = %d, want %d", c.times, got, c.want)
		}
	}
}
