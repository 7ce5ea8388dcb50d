// Sampling on the device, so that only token ids cross to the host.
#include <cuda_bf16.h>

#define NEG_INF __int_as_float(0xff800000) // NVRTC has no math.h and so no INFINITY

// ids[r] = the first index of the largest of logits[r, :vocab] (0 when none is above -inf, as
// worker/sample's greedy path does). One block per row; blockDim.x a multiple of 32, at most 1024.
extern "C" __global__ void argmax(int *ids, const float *logits, int vocab) {
	const float *row = logits + (size_t)blockIdx.x * vocab;
	float best = NEG_INF;
	int arg = 0;
	for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
		if (row[i] > best) {
			best = row[i];
			arg = i;
		}
	}
	// Larger value wins; equal values go to the smaller index. A thread that saw nothing
	// above -inf keeps index 0, which loses to no real candidate and ties to the right answer.
	for (int o = 16; o > 0; o >>= 1) {
		float ob = __shfl_xor_sync(0xffffffffu, best, o);
		int oa = __shfl_xor_sync(0xffffffffu, arg, o);
		if (ob > best || (ob == best && oa < arg)) {
			best = ob;
			arg = oa;
		}
	}
	__shared__ float wb[32];
	__shared__ int wa[32];
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
	if (lane == 0) {
		wb[warp] = best;
		wa[warp] = arg;
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		for (int w = 1; w < warps; w++) {
			if (wb[w] > best || (wb[w] == best && wa[w] < arg)) {
				best = wb[w];
				arg = wa[w];
			}
		}
		ids[blockIdx.x] = arg;
	}
}
