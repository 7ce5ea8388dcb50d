package host

import "testing"

// The splits of Llama-2-7B's decode GEMMs on an H100 (132 SMs, two blocks an SM: 264 slots),
// counted by hand from their waves, and the bounds.
func TestGEMMSplits(t *testing.T) {
	for _, c := range []struct {
		name                string
		tiles, steps, slots int
		want                int
	}{
		{"qkv: 384 blocks are 1.45 waves, 768 are 2.9", 384, 128, 264, 2},
		{"gate/up: 688 blocks are 2.6 waves, 2,064 are 7.8", 688, 128, 264, 3},
		{"o: 128 blocks fill half a wave, 256 all of it", 128, 128, 264, 2},
		{"down: as o, over a longer k", 128, 344, 264, 2},
		{"LM head: 1,000 blocks are 3.8 waves, no split does better", 1000, 128, 264, 1},
		{"a full wave already", 264, 128, 264, 1},
		{"one tile, a long k: the most chunks", 1, 128, 264, MaxGEMMSplits},
		{"chunks of at least MinSplitSteps steps", 1, 3*MinSplitSteps - 1, 264, 2},
		{"too short a k to split", 1, 2*MinSplitSteps - 1, 264, 1},
		{"no slots", 10, 128, 0, 1},
	} {
		if got := GEMMSplits(c.tiles, c.steps, c.slots); got != c.want {
			t.Errorf("%s: GEMMSplits(%d, %d, %d) = %d, want %d", c.name, c.tiles, c.steps, c.slots, got, c.want)
		}
	}
}
