// Multi-LoRA over segments of rows that share an adapter (SGMV style): one launch covers every
// adapter in the batch, and adapters of different ranks mix. Each row names its segment in
// row_seg (-1: no adapter for this module); a segment's A or B is a device pointer in a table,
// so adapters stay wherever their slot in the adapter pool is.
#include <cuda_bf16.h>

__device__ float lora_warp_sum(float v) {
	for (int o = 16; o > 0; o >>= 1) {
		v += __shfl_xor_sync(0xffffffffu, v, o);
	}
	return v;
}

// Shrink: v[r, j] = x[r, :] . A[j, :] for j < rank, with x [rows, in] and A [rank, in] in
// bf16 and v [rows, vstride] in fp32. Grid (rows, ceil(max_rank / warps)); a warp per output.
extern "C" __global__ void lora_shrink(float *v, const __nv_bfloat16 *x, const int *row_seg,
		const unsigned long long *a_ptrs, const int *ranks, int in, int vstride) {
	int r = blockIdx.x, s = row_seg[r];
	if (s < 0) {
		return;
	}
	const __nv_bfloat16 *a = (const __nv_bfloat16 *)a_ptrs[s];
	const __nv_bfloat16 *xr = x + (size_t)r * in;
	int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
	for (int j = blockIdx.y * warps + (threadIdx.x >> 5); j < ranks[s]; j += gridDim.y * warps) {
		float acc = 0.0f;
		for (int k = lane; k < in; k += 32) {
			acc += __bfloat162float(xr[k]) * __bfloat162float(a[(size_t)j * in + k]);
		}
		acc = lora_warp_sum(acc);
		if (lane == 0) {
			v[(size_t)r * vstride + j] = acc;
		}
	}
}

// Expand: out[r, o] += scale * v[r, :rank] . B[o, :] for o < out_dim, with B [out_dim, rank]
// in bf16. Grid (rows, ceil(out_dim / blockDim.x)); dynamic shared memory of max_rank floats.
extern "C" __global__ void lora_expand(float *out, const float *v, const int *row_seg,
		const unsigned long long *b_ptrs, const int *ranks, const float *scales, int out_dim, int vstride) {
	int r = blockIdx.x, s = row_seg[r];
	if (s < 0) {
		return;
	}
	extern __shared__ float vr[];
	int rank = ranks[s];
	for (int j = threadIdx.x; j < rank; j += blockDim.x) {
		vr[j] = v[(size_t)r * vstride + j];
	}
	__syncthreads();
	int o = blockIdx.y * blockDim.x + threadIdx.x;
	if (o >= out_dim) {
		return;
	}
	const __nv_bfloat16 *b = (const __nv_bfloat16 *)b_ptrs[s] + (size_t)o * rank;
	float acc = 0.0f;
	for (int j = 0; j < rank; j++) {
		acc += vr[j] * __bfloat162float(b[j]);
	}
	out[(size_t)r * out_dim + o] += scales[s] * acc;
}
