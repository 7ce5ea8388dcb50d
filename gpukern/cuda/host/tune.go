package host

import "time"

// TunedGEMM is what timing found for one GEMM shape that cuBLAS runs (the backend's
// SetTunedGEMM): each candidate's mean time, cublasGemmEx (cuBLAS's own pick) first, then the
// algorithms cuBLASLt's heuristic offers, in its order, then the first few of those with
// their k split (0 where one failed to run), and the one picked.
type TunedGEMM struct {
	M, N, K int
	Times   []time.Duration
	Splits  []int  // each cuBLASLt candidate's parts of k (Times[1:]): 0 as the heuristic offered it
	Pick    int    // index into Times: 0 is GemmEx
	Note    string // why cuBLASLt offered no algorithm, where it did not
	Refused int    // GEMMs of the shape that the picked algorithm refused, run by GemmEx instead
}

// Fastest is the index of the least of times, ignoring zeros (candidates that failed), the
// first of those that tie; 0 where every one failed.
func Fastest(times []time.Duration) int {
	best := 0
	for i, t := range times {
		if t > 0 && (times[best] <= 0 || t < times[best]) {
			best = i
		}
	}
	return best
}
