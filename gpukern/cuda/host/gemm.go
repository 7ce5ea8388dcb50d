package host

// The bounds of GEMMSplits: a chunk of k gets at least MinSplitSteps steps of k (each of a
// block's 8 warps two of them), and a tile at most MaxGEMMSplits chunks, so that a chunk's
// block still streams long enough to hide its ramp and its partial sums stay a few KB.
const (
	MaxGEMMSplits = 4
	MinSplitSteps = 16
)

// GEMMSplits is how many chunks of k our decode GEMM (gemm.cuh's gemm_small) cuts each of its
// tiles into, a block each, for a GEMM of tiles tiles of steps steps of k where slots blocks
// run at once: blocks of equal length run in waves, and a last wave that is part empty leaves
// SMs idle (Nsight Compute on the H100: 24% of qkv's cycles at batch 32, whose 384 blocks are
// 1.45 waves). The chunk count of least time, counted as waves per chunk, the fewest chunks
// of those that tie; 1: not split.
func GEMMSplits(tiles, steps, slots int) int {
	if tiles <= 0 || slots <= 0 {
		return 1
	}
	best, bestWaves := 1, (tiles+slots-1)/slots
	for s := 2; s <= MaxGEMMSplits && steps/s >= MinSplitSteps; s++ {
		waves := (tiles*s + slots - 1) / slots
		if waves*best < bestWaves*s { // waves/s < bestWaves/best
			best, bestWaves = s, waves
		}
	}
	return best
}
