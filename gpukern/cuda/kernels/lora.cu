// Multi-LoRA over a batch whose rows may each use a different adapter (SGMV style): one launch
// covers every adapter in the batch, adapters of different ranks mix, and a projection may
// fuse several parts (q, k and v; gate and up), each with its own matrices and rank. The
// tables are per (row, part), entry t = r * parts + p: the part's A or B as a device pointer
// (so adapters stay wherever their slot in the adapter pool is), its rank (0: the row has no
// adapter for the part) and its scale. A row of v holds parts * vstride values, part p's at
// p * vstride.

// Rows that share an adapter (a segment) are computed together, up to LORA_GROUP of them per
// block, so that each block reads its part of A or B once for all of them: lead[r] is the
// number of rows, from r on, that row r's blocks compute (0 for a row an earlier one covers).
// Blocks of rows with lead 0 return at once: the grid keeps one block row per batch row, so
// it stays the same whichever adapters a step mixes (a CUDA graph replays it). The group is
// small since its accumulators take registers, and occupancy is what streams A and B.
//
// The shrink and the expand are latency-bound at decode sizes (a few MB each, measured on an
// H100 with Nsight Compute): the shrink reads its table entries in one round trip, before any
// branch on them; the expand computes several columns a thread, so that its table lookups are
// paid once for all their loads of B, which are in flight together. On an H100, these two
// launches on a side stream beside the base GEMMs beat both one launch of the two (a
// persistent lora_fused) and the LoRA folded into the GEMMs (bench/results/engine, c32cba4).
#define LORA_GROUP 4

// The kernels run LORA_THREADS threads a block, and launch bounds hold them to the registers
// of LORA_BLOCKS blocks an SM: Nsight Compute on the H100 found 3 (lora_expand at 80
// registers). At 4 ptxas needs no spills (TestKernelResources); at 5 lora_expand spills.
#define LORA_THREADS 256
#define LORA_BLOCKS 4

// Shrink: v[r, p*vstride + j] = x[r, :] . A[j, :] for j < rank, with x [rows, in] in fp32, A
// [rank, in] in bf16 and v in fp32. Grid (rows, parts * n) with n = ceil(vstride /
// SHRINK_J): blockIdx.y / n is the part, and a block computes SHRINK_J consecutive j (blocks
// past the rank return at once) for its group of rows. The block's warps split `in` between
// them, each keeping SHRINK_J rows of A in flight, and add their partial sums in shared
// memory. Where in is a multiple of 8 and the rows 16-byte aligned, a lane reads 8 elements at
// once (one 16-byte load of each row of A, two of x).
#define SHRINK_J 4

// a[i] for a run-time i < N, by selects: indexing a register array at run time would put it on
// the stack.
template <int N, class T> __device__ __forceinline__ T pick(const T (&a)[N], int i) {
	T r = a[0];
#pragma unroll
	for (int k = 1; k < N; k++) {
		r = i == k ? a[k] : r;
	}
	return r;
}

__device__ __forceinline__ float dot8(float4 x0, float4 x1, uint4 w) {
	return x0.x * bf16_lo(w.x) + x0.y * bf16_hi(w.x) + x0.z * bf16_lo(w.y) + x0.w * bf16_hi(w.y) +
		x1.x * bf16_lo(w.z) + x1.y * bf16_hi(w.z) + x1.z * bf16_lo(w.w) + x1.w * bf16_hi(w.w);
}

// Block (r0, y) of lora_shrink's grid: sums is shared memory of SHRINK_SUMS floats, for the
// warps' partial sums.
#define SHRINK_SUMS (32 * LORA_GROUP * SHRINK_J)
__device__ __forceinline__ void shrink_block(float *sums, float *v, const float *x, const unsigned long long *a_ptrs,
		const int *ranks, const int *lead, int parts, int in, int vstride, int n, int r0, int y) {
	int p = y / n, j0 = (y % n) * SHRINK_J, t = r0 * parts + p;
	int g = lead[r0], rank = ranks[t];
	unsigned long long a_row0 = a_ptrs[t];
	if (g == 0 || j0 >= rank) {
		return; // the whole block
	}
	int jn = min(SHRINK_J, rank - j0);
	const __nv_bfloat16 *a = (const __nv_bfloat16 *)a_row0 + (size_t)j0 * in;
	const float *x0r = x + (size_t)r0 * in;
	bool vec = (in & 7) == 0 && (((unsigned long long)a | (unsigned long long)x0r) & 15) == 0;
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
	float acc[LORA_GROUP][SHRINK_J] = {};
	if (vec) {
		// Consecutive warps read consecutive 512-byte runs of each row of A.
#pragma unroll 2
		for (int k = threadIdx.x * 8; k < in; k += blockDim.x * 8) {
			uint4 w[SHRINK_J];
#pragma unroll
			for (int jj = 0; jj < SHRINK_J; jj++) {
				w[jj] = jj < jn ? *(const uint4 *)(a + (size_t)jj * in + k) : make_uint4(0, 0, 0, 0);
			}
#pragma unroll
			for (int q = 0; q < LORA_GROUP; q++) {
				if (q < g) {
					const float *xr = x0r + (size_t)q * in + k;
					float4 xa = *(const float4 *)xr, xb = *(const float4 *)(xr + 4);
#pragma unroll
					for (int jj = 0; jj < SHRINK_J; jj++) {
						acc[q][jj] += dot8(xa, xb, w[jj]);
					}
				}
			}
		}
	} else {
		for (int k = threadIdx.x; k < in; k += blockDim.x) {
			float w[SHRINK_J];
#pragma unroll
			for (int jj = 0; jj < SHRINK_J; jj++) {
				w[jj] = jj < jn ? __bfloat162float(a[(size_t)jj * in + k]) : 0.0f;
			}
#pragma unroll
			for (int q = 0; q < LORA_GROUP; q++) {
				if (q < g) {
					float xk = x0r[(size_t)q * in + k];
#pragma unroll
					for (int jj = 0; jj < SHRINK_J; jj++) {
						acc[q][jj] += xk * w[jj];
					}
				}
			}
		}
	}
#pragma unroll
	for (int q = 0; q < LORA_GROUP; q++) {
		if (q < g) { // g is the block's: every lane of a warp takes the same branch
#pragma unroll
			for (int jj = 0; jj < SHRINK_J; jj++) {
				float s = warp_sum(acc[q][jj]);
				if (lane == 0) {
					sums[warp * LORA_GROUP * SHRINK_J + q * SHRINK_J + jj] = s;
				}
			}
		}
	}
	__syncthreads();
	for (int i = threadIdx.x; i < g * SHRINK_J; i += blockDim.x) {
		int q = i / SHRINK_J, jj = i % SHRINK_J;
		if (jj < jn) {
			float s = 0.0f;
			for (int w = 0; w < warps; w++) {
				s += sums[w * LORA_GROUP * SHRINK_J + i];
			}
			v[((size_t)(r0 + q) * parts + p) * vstride + j0 + jj] = s;
		}
	}
}

extern "C" __global__ void __launch_bounds__(LORA_THREADS, LORA_BLOCKS) lora_shrink(float *v, const float *x, const unsigned long long *a_ptrs,
		const int *ranks, const int *lead, int parts, int in, int vstride) {
	pdl_wait();
	__shared__ float sums[SHRINK_SUMS];
	shrink_block(sums, v, x, a_ptrs, ranks, lead, parts, in, vstride, gridDim.y / parts, blockIdx.x, blockIdx.y);
}

// Expand: out[r, out_off[p] + o] = scale * v[r, p*vstride : p*vstride + rank] . B[o, :] for
// o < out_off[p+1] - out_off[p], with B [that many, rank] in bf16 and rows of out of
// out_off[parts] values; 0 where the row has no adapter for the part (rank 0). parts is at
// most LORA_MAX_PARTS. Every element of out is written (not added to): out is the delta buffer
// that the side stream fills beside the base GEMM, shared between projections and so holding
// stale values, and the kernel that reads the GEMM's output adds it. Grid (rows,
// ceil(out_off[parts] / (blockDim.x * EXPAND_C))): a thread computes EXPAND_C columns,
// blockDim.x apart (so that a warp's loads of B stay contiguous), for the block's group of
// rows, and finds each column's part in out_off; dynamic shared memory of LORA_GROUP * parts *
// vstride floats holds the group's rows of v. A thread reads its rows of B once for the group,
// 8 values of each column's row at a time where rank is a multiple of 8 and B 16-byte aligned,
// all EXPAND_C columns' loads at once.
//
// Latency: the block's table entries and its rows of v are loaded together first (every row
// of v the group could have, before lead says how many it has: the extra rows are a few
// hundred bytes from L2), then the first 8 values of B of each column, which the tables
// address, while v goes to shared memory. Loading each in turn after what it depends on made
// six round trips to memory before the first multiply.
#define EXPAND_C 4
#define LORA_MAX_PARTS 3

// The rows of v that the group of r0 may use, n values, into shared memory, from L2: each is
// read by a few blocks only.
__device__ __forceinline__ void load_v(float *vs, const float *v, int r0, int row, int n) {
	for (int i = threadIdx.x; i < n; i += blockDim.x) {
		vs[i] = __ldcg(v + (size_t)r0 * row + i); // past a part's rank: never read
	}
}

// Block (r0, y) of lora_expand's grid over rows rows; vs is shared memory of LORA_GROUP *
// parts * vstride floats.
__device__ __forceinline__ void expand_block(float *vs, float *out, const float *v, const unsigned long long *b_ptrs,
		const int *ranks, const float *scales, const int *lead, const int *out_off, int parts, int vstride, int rows,
		int r0, int y) {
	int row = parts * vstride;
	int g = lead[r0], width = out_off[parts];
	int off[LORA_MAX_PARTS], rp[LORA_MAX_PARTS];
	float sp[LORA_MAX_PARTS];
	unsigned long long bp[LORA_MAX_PARTS];
#pragma unroll
	for (int p = 0; p < LORA_MAX_PARTS; p++) {
		int t = r0 * parts + p; // the group's rows share these
		off[p] = p < parts ? out_off[p] : 0;
		rp[p] = p < parts ? ranks[t] : 0;
		sp[p] = p < parts ? scales[t] : 0.0f;
		bp[p] = p < parts ? b_ptrs[t] : 0ull;
	}
	int n = min(LORA_GROUP, rows - r0) * row; // the rows of v that exist
	load_v(vs, v, r0, row, n);
	if (g == 0) {
		return; // the whole block: an earlier row's blocks compute this row
	}
	int o0 = y * blockDim.x * EXPAND_C + threadIdx.x;
	// Each column's part, rank, scale and row of B (null past the width or without an adapter).
	const __nv_bfloat16 *b[EXPAND_C];
	int pc[EXPAND_C], rk[EXPAND_C], rank = 0;
	float scale[EXPAND_C];
	bool vec = true;
#pragma unroll
	for (int c = 0; c < EXPAND_C; c++) {
		int o = o0 + c * blockDim.x, p = 0;
		b[c] = nullptr;
		pc[c] = rk[c] = 0;
		scale[c] = 0.0f;
		if (o < width) {
#pragma unroll
			for (int q = 1; q < LORA_MAX_PARTS; q++) {
				p += q < parts && o >= off[q];
			}
			int r = pick(rp, p);
			const __nv_bfloat16 *b0 = (const __nv_bfloat16 *)pick(bp, p);
			if (r > 0) {
				b[c] = b0 + (size_t)(o - pick(off, p)) * r;
				pc[c] = p;
				rk[c] = r;
				scale[c] = pick(sp, p);
				rank = max(rank, r);
				vec = vec && (r & 7) == 0 && ((unsigned long long)b0 & 15) == 0;
			}
		}
	}
	uint4 w[EXPAND_C]; // the first 8 values of B of each column, loading while v is stored
#pragma unroll
	for (int c = 0; c < EXPAND_C; c++) {
		w[c] = vec && 0 < rk[c] ? *(const uint4 *)b[c] : make_uint4(0, 0, 0, 0);
	}
	__syncthreads(); // v is in shared memory (vec differs between threads: one barrier for all)
	float acc[LORA_GROUP][EXPAND_C] = {};
	// Columns of one thread may be in parts of different ranks: j runs to the largest, and a
	// column past its own rank adds nothing.
	if (vec) {
		for (int j = 0; j < rank; j += 8) {
#pragma unroll
			for (int c = 0; c < EXPAND_C; c++) {
				float w8[8];
				unpack8(w8, w[c]);
#pragma unroll
				for (int q = 0; q < LORA_GROUP; q++) {
					if (q < g && j < rk[c]) {
						const float *vq = vs + q * row + pc[c] * vstride + j;
#pragma unroll
						for (int e = 0; e < 8; e++) {
							acc[q][c] += vq[e] * w8[e];
						}
					}
				}
			}
#pragma unroll
			for (int c = 0; c < EXPAND_C; c++) {
				w[c] = j + 8 < rk[c] ? *(const uint4 *)(b[c] + j + 8) : make_uint4(0, 0, 0, 0);
			}
		}
	} else {
		for (int j = 0; j < rank; j++) {
#pragma unroll
			for (int c = 0; c < EXPAND_C; c++) {
				if (j < rk[c]) {
					float w = __bfloat162float(b[c][j]);
#pragma unroll
					for (int q = 0; q < LORA_GROUP; q++) {
						if (q < g) {
							acc[q][c] += vs[q * row + pc[c] * vstride + j] * w;
						}
					}
				}
			}
		}
	}
#pragma unroll
	for (int c = 0; c < EXPAND_C; c++) {
		int o = o0 + c * blockDim.x;
		if (o < width) {
#pragma unroll // so that acc stays in registers
			for (int q = 0; q < LORA_GROUP; q++) {
				if (q < g) {
					out[(size_t)(r0 + q) * width + o] = scale[c] * acc[q][c];
				}
			}
		}
	}
}

extern "C" __global__ void __launch_bounds__(LORA_THREADS, LORA_BLOCKS) lora_expand(float *out, const float *v,
		const unsigned long long *b_ptrs, const int *ranks, const float *scales, const int *lead, const int *out_off,
		int parts, int vstride) {
	pdl_wait();
	DYNAMIC_SHARED(float, vs);
	expand_block(vs, out, v, b_ptrs, ranks, scales, lead, out_off, parts, vstride, gridDim.x, blockIdx.x, blockIdx.y);
}
