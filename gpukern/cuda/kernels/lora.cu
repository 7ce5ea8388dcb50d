// Multi-LoRA over segments of rows that share an adapter (SGMV style): one launch covers every
// adapter in the batch, and adapters of different ranks mix. Each row names its segment in
// row_seg (-1: no adapter for this module); a segment's A or B is a device pointer in a table,
// so adapters stay wherever their slot in the adapter pool is.
// Shrink: v[r, j] = x[r, :] . A[j, :] for j < rank, with x [rows, in] in fp32, A [rank, in] in
// bf16 and v [rows, vstride] in fp32. Grid (rows, ceil(max_rank / warps)); a warp per output.
// Where in is a multiple of 8 and the rows 16-byte aligned, a lane reads 8 elements of each at
// once (one 16-byte load of A, two of x), which is what keeps this bound by memory rather than
// by load instructions.
extern "C" __global__ void lora_shrink(float *v, const float *x, const int *row_seg,
		const unsigned long long *a_ptrs, const int *ranks, int in, int vstride) {
	int r = blockIdx.x, s = row_seg[r];
	if (s < 0) {
		return;
	}
	const __nv_bfloat16 *a = (const __nv_bfloat16 *)a_ptrs[s];
	const float *xr = x + (size_t)r * in;
	bool vec = (in & 7) == 0 && (((unsigned long long)a | (unsigned long long)xr) & 15) == 0;
	int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
	for (int j = blockIdx.y * warps + (threadIdx.x >> 5); j < ranks[s]; j += gridDim.y * warps) {
		const __nv_bfloat16 *aj = a + (size_t)j * in;
		float acc = 0.0f;
		if (vec) {
			for (int k = lane * 8; k < in; k += 32 * 8) {
				uint4 w = *(const uint4 *)(aj + k);
				float4 x0 = *(const float4 *)(xr + k), x1 = *(const float4 *)(xr + k + 4);
				acc += x0.x * bf16_lo(w.x) + x0.y * bf16_hi(w.x) + x0.z * bf16_lo(w.y) + x0.w * bf16_hi(w.y);
				acc += x1.x * bf16_lo(w.z) + x1.y * bf16_hi(w.z) + x1.z * bf16_lo(w.w) + x1.w * bf16_hi(w.w);
			}
		} else {
			for (int k = lane; k < in; k += 32) {
				acc += xr[k] * __bfloat162float(aj[k]);
			}
		}
		acc = warp_sum(acc);
		if (lane == 0) {
			v[(size_t)r * vstride + j] = acc;
		}
	}
}

// Expand: out[r, o] += scale * v[r, :rank] . B[o, :] for o < out_dim, with B [out_dim, rank]
// in bf16. Grid (rows, ceil(out_dim / blockDim.x)); dynamic shared memory of max_rank floats.
// A thread reads its row of B 8 values at a time where rank is a multiple of 8 and B 16-byte
// aligned.
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
	const __nv_bfloat16 *b0 = (const __nv_bfloat16 *)b_ptrs[s];
	const __nv_bfloat16 *b = b0 + (size_t)o * rank;
	float acc = 0.0f;
	if ((rank & 7) == 0 && ((unsigned long long)b0 & 15) == 0) {
		for (int j = 0; j < rank; j += 8) {
			uint4 w = *(const uint4 *)(b + j);
			acc += vr[j] * bf16_lo(w.x) + vr[j + 1] * bf16_hi(w.x) + vr[j + 2] * bf16_lo(w.y) + vr[j + 3] * bf16_hi(w.y);
			acc += vr[j + 4] * bf16_lo(w.z) + vr[j + 5] * bf16_hi(w.z) + vr[j + 6] * bf16_lo(w.w) + vr[j + 7] * bf16_hi(w.w);
		}
	} else {
		for (int j = 0; j < rank; j++) {
			acc += vr[j] * __bfloat162float(b[j]);
		}
	}
	out[(size_t)r * out_dim + o] += scales[s] * acc;
}
