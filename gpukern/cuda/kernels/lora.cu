// Multi-LoRA over a batch whose rows may each use a different adapter (SGMV style): one launch
// covers every adapter in the batch, adapters of different ranks mix, and a projection may
// fuse several parts (q, k and v; gate and up), each with its own matrices and rank. The
// tables are per (row, part), entry t = r * parts + p: the part's A or B as a device pointer
// (so adapters stay wherever their slot in the adapter pool is), its rank (0: the row has no
// adapter for the part) and its scale. A row of v holds parts * vstride values, part p's at
// p * vstride.

// Shrink: v[r, p*vstride + j] = x[r, :] . A[j, :] for j < rank, with x [rows, in] in fp32, A
// [rank, in] in bf16 and v in fp32. Grid (rows, parts * n) with n = ceil(vstride /
// SHRINK_J): blockIdx.y / n is the part, and a block computes SHRINK_J consecutive j (blocks
// past the rank return at once). The block's warps split `in` between them, each keeping
// SHRINK_J rows of A in flight, and add their partial sums in shared memory: a decode step has
// few rows, and only many loads in flight per SM stream A at memory speed. Where in is a
// multiple of 8 and the rows 16-byte aligned, a lane reads 8 elements at once (one 16-byte load
// of each row of A, two of x).
#define SHRINK_J 4

__device__ __forceinline__ float dot8(float4 x0, float4 x1, uint4 w) {
	return x0.x * bf16_lo(w.x) + x0.y * bf16_hi(w.x) + x0.z * bf16_lo(w.y) + x0.w * bf16_hi(w.y) +
		x1.x * bf16_lo(w.z) + x1.y * bf16_hi(w.z) + x1.z * bf16_lo(w.w) + x1.w * bf16_hi(w.w);
}

extern "C" __global__ void lora_shrink(float *v, const float *x, const unsigned long long *a_ptrs,
		const int *ranks, int parts, int in, int vstride) {
	__shared__ float sums[32][SHRINK_J]; // per warp
	int n = gridDim.y / parts, p = blockIdx.y / n, j0 = (blockIdx.y % n) * SHRINK_J;
	int r = blockIdx.x, t = r * parts + p, rank = ranks[t];
	if (j0 >= rank) {
		return; // the whole block
	}
	int jn = min(SHRINK_J, rank - j0);
	const __nv_bfloat16 *a = (const __nv_bfloat16 *)a_ptrs[t] + (size_t)j0 * in;
	const float *xr = x + (size_t)r * in;
	bool vec = (in & 7) == 0 && (((unsigned long long)a | (unsigned long long)xr) & 15) == 0;
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
	float acc[SHRINK_J] = {};
	if (vec) {
		// Consecutive warps read consecutive 512-byte runs of each row of A.
		for (int k = threadIdx.x * 8; k < in; k += blockDim.x * 8) {
			float4 x0 = *(const float4 *)(xr + k), x1 = *(const float4 *)(xr + k + 4);
#pragma unroll
			for (int jj = 0; jj < SHRINK_J; jj++) {
				if (jj < jn) {
					acc[jj] += dot8(x0, x1, *(const uint4 *)(a + (size_t)jj * in + k));
				}
			}
		}
	} else {
		for (int k = threadIdx.x; k < in; k += blockDim.x) {
			float xk = xr[k];
#pragma unroll
			for (int jj = 0; jj < SHRINK_J; jj++) {
				if (jj < jn) {
					acc[jj] += xk * __bfloat162float(a[(size_t)jj * in + k]);
				}
			}
		}
	}
#pragma unroll
	for (int jj = 0; jj < SHRINK_J; jj++) {
		acc[jj] = warp_sum(acc[jj]);
		if (lane == 0) {
			sums[warp][jj] = acc[jj];
		}
	}
	__syncthreads();
	if (threadIdx.x < jn) {
		float s = 0.0f;
		for (int w = 0; w < warps; w++) {
			s += sums[w][threadIdx.x];
		}
		v[(size_t)t * vstride + j0 + threadIdx.x] = s;
	}
}

// Expand: out[r, out_off[p] + o] = scale * v[r, p*vstride : p*vstride + rank] . B[o, :] for
// o < out_off[p+1] - out_off[p], with B [that many, rank] in bf16 and rows of out of
// out_off[parts] values; 0 where the row has no adapter for the part (rank 0). Every element of
// out is written (not added to): out is the delta buffer that the side stream fills beside the
// base GEMM, shared between projections and so holding stale values, and the kernel that reads
// the GEMM's output adds it. Grid (rows, ceil(out_off[parts] / blockDim.x)): a thread computes
// one column, whose part it finds in out_off; dynamic shared memory of parts * vstride floats
// holds the row of v. A thread reads its row of B 8 values at a time where rank is a multiple
// of 8 and B 16-byte aligned.
extern "C" __global__ void lora_expand(float *out, const float *v, const unsigned long long *b_ptrs, const int *ranks,
		const float *scales, const int *out_off, int parts, int vstride) {
	DYNAMIC_SHARED(float, vs);
	int r = blockIdx.x;
	const int *rr = ranks + (size_t)r * parts;
	for (int p = 0; p < parts; p++) {
		for (int j = threadIdx.x; j < rr[p]; j += blockDim.x) {
			vs[p * vstride + j] = v[((size_t)r * parts + p) * vstride + j];
		}
	}
	__syncthreads();
	int o = blockIdx.y * blockDim.x + threadIdx.x, width = out_off[parts];
	if (o >= width) {
		return;
	}
	int p = 0;
	while (o >= out_off[p + 1]) {
		p++;
	}
	int t = r * parts + p, rank = ranks[t];
	float *dst = out + (size_t)r * width + o;
	if (rank == 0) {
		*dst = 0.0f;
		return;
	}
	const __nv_bfloat16 *b0 = (const __nv_bfloat16 *)b_ptrs[t];
	const __nv_bfloat16 *b = b0 + (size_t)(o - out_off[p]) * rank;
	const float *vp = vs + p * vstride;
	float acc = 0.0f;
	if ((rank & 7) == 0 && ((unsigned long long)b0 & 15) == 0) {
		for (int j = 0; j < rank; j += 8) {
			uint4 w = *(const uint4 *)(b + j);
			acc += vp[j] * bf16_lo(w.x) + vp[j + 1] * bf16_hi(w.x) + vp[j + 2] * bf16_lo(w.y) + vp[j + 3] * bf16_hi(w.y);
			acc += vp[j + 4] * bf16_lo(w.z) + vp[j + 5] * bf16_hi(w.z) + vp[j + 6] * bf16_lo(w.w) + vp[j + 7] * bf16_hi(w.w);
		}
	} else {
		for (int j = 0; j < rank; j++) {
			acc += vp[j] * __bfloat162float(b[j]);
		}
	}
	*dst = scales[t] * acc;
}
