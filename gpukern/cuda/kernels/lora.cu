// Multi-LoRA over a batch whose rows may each use a different adapter (SGMV style): one launch
// covers every adapter in the batch, adapters of different ranks mix, and a projection may
// fuse several parts (q, k and v; gate and up), each with its own matrices and rank. The
// tables are per (row, part), entry t = r * parts + p: the part's A or B as a device pointer
// (so adapters stay wherever their slot in the adapter pool is), its rank (0: the row has no
// adapter for the part) and its scale. A row of v holds parts * vstride values, part p's at
// p * vstride.

// Rows that share an adapter (a segment) are computed together, up to LORA_GROUP of them per
// block, so that each block reads its part of A or B once for all of them. The grids have
// blocks for groups, not rows (host.LoRA): groups holds each group's first row and number of
// rows, then zeros. A grid is sized for a power of two of groups (the host rounds up, so that
// it changes seldom with the adapter mix, since a CUDA graph replays one grid), and the
// blocks of groups past the count, of no rows, return at once. With direct set every
// group is one row, group g row g, and the kernels skip the lookup (batch 32 with 32
// adapters). The group is small since its accumulators take registers, and occupancy is what
// streams A and B.
//
// The shrink and the expand are latency-bound at decode sizes (a few MB each, measured on an
// H100 with Nsight Compute): each block reads its table entries in one round trip (after its
// group's, unless direct), before any branch on them; the expand computes several columns a
// thread, whose loads of B are in flight together. On an H100, these two launches on a side
// stream beside the base GEMMs beat both one launch of the two (a persistent lora_fused) and
// the LoRA folded into the GEMMs (bench/results/engine, c32cba4).
#define LORA_GROUP 4

// The kernels run LORA_THREADS threads a block, and launch bounds hold them to the registers
// of LORA_BLOCKS blocks an SM: Nsight Compute on the H100 found 3 (lora_expand at 80
// registers). At 4 ptxas needs no spills (TestKernelResources); at 5 lora_expand spills.
#define LORA_THREADS 256
#define LORA_BLOCKS 4

// Shrink: v[r, p*vstride + j] = x[r, :] . A[j, :] for j < rank, with x [rows, in] in fp32, A
// [rank, in] in bf16 and v in fp32. Grid: (groups rounded) * parts * n blocks, n = ceil(vstride /
// SHRINK_J): block b is group b / (parts * n), its part and j0 / SHRINK_J the rest, and it
// computes SHRINK_J consecutive j (blocks past the rank return at once) for its group of rows.
// The block's warps split `in` between them, each keeping SHRINK_J rows of A in flight, and
// add their partial sums in shared memory. Where in is a multiple of 8 and the rows 16-byte
// aligned, a lane reads 8 elements at once (one 16-byte load of each row of A, two of x).
#define SHRINK_J 4

__device__ __forceinline__ float dot8(float4 x0, float4 x1, uint4 w) {
	return x0.x * bf16_lo(w.x) + x0.y * bf16_hi(w.x) + x0.z * bf16_lo(w.y) + x0.w * bf16_hi(w.y) +
		x1.x * bf16_lo(w.z) + x1.y * bf16_hi(w.z) + x1.z * bf16_lo(w.w) + x1.w * bf16_hi(w.w);
}

// A block's group of rows: the first and how many (0: past the groups, nothing to compute).
struct RowGroup {
	int row, rows;
};

// Group gi of the launch's groups table (see above).
__device__ __forceinline__ RowGroup row_group(const int *groups, int gi, int direct) {
	if (direct) {
		return {gi, 1};
	}
	return {groups[2 * gi], groups[2 * gi + 1]};
}

// The shrink of j0 .. j0 + SHRINK_J - 1 (those below rank) of part p of group grp, whose A
// starts at a_row0; sums is shared memory of SHRINK_SUMS floats, for the warps' partial sums.
#define SHRINK_SUMS (32 * LORA_GROUP * SHRINK_J)
__device__ __forceinline__ void shrink_block(float *sums, float *v, const float *x, const __nv_bfloat16 *a_row0,
		RowGroup grp, int rank, int parts, int in, int vstride, int p, int j0) {
	const int g = grp.rows, r0 = grp.row, jn = min(SHRINK_J, rank - j0);
	const __nv_bfloat16 *a = a_row0 + (size_t)j0 * in;
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
		const int *ranks, const int *groups, int direct, int parts, int in, int vstride) {
	pdl_wait();
	__shared__ float sums[SHRINK_SUMS];
	const int n = (vstride + SHRINK_J - 1) / SHRINK_J, y = blockIdx.x % (parts * n), p = y / n, j0 = y % n * SHRINK_J;
	const RowGroup grp = row_group(groups, blockIdx.x / (parts * n), direct);
	const int t = grp.row * parts + p, rank = ranks[t];
	const unsigned long long a = a_ptrs[t];
	if (grp.rows == 0 || j0 >= rank) {
		return; // the whole block
	}
	shrink_block(sums, v, x, (const __nv_bfloat16 *)a, grp, rank, parts, in, vstride, p, j0);
}

// Expand: out[r, off_p + o] = scale * v[r, p*vstride : p*vstride + rank] . B[o, :] for o <
// d_p, the width of part p, its columns from off_p = end_{p-1} to end_p (end_{-1} = 0, and
// the ends of parts a projection lacks equal the last: width), with B [d_p, rank] in bf16; 0
// where the row has no adapter for the part (rank 0). parts is at most LORA_MAX_PARTS. Every
// element of out is written (not added to): out is the delta buffer that the side stream
// fills beside the base GEMM, shared between projections and so holding stale values, and the
// kernel that reads the GEMM's output adds it.
//
// Grid: (groups rounded, as above) * cols blocks, cols = the sum over parts of ceil(d_p /
// (blockDim.x * EXPAND_C)): block b is group b / cols and, in the rest, a run of up to
// blockDim.x * EXPAND_C columns of one part, so that the part's rank, scale and B are the
// block's. A thread computes EXPAND_C columns, blockDim.x apart (so that a warp's loads of B
// stay contiguous), for the block's group of rows; dynamic shared memory of LORA_GROUP *
// vstride floats holds the group's rows of v for the part. A thread reads its rows of B once
// for the group, 8 values of each column's row at a time where rank is a multiple of 8 and B
// 16-byte aligned, all EXPAND_C columns' loads at once, and then v 8 values at a time from
// shared memory.
//
// Latency: the block's table entries and its rows of v are loaded together first (every value
// of its rows' part of v, before the rank says how many they have), then the first 8 values
// of B of each column, which the tables address, while v goes to shared memory. Loading each
// in turn after what it depends on made six round trips to memory before the first multiply.
#define EXPAND_C 4
#define LORA_MAX_PARTS 3

// The columns of block y of a group's blocks, runs of span columns: its part, the part's first
// column and the run's bounds.
struct ExpandRun {
	int p, off, col0, col1;
};
__device__ __forceinline__ ExpandRun expand_run(int y, int span, int end0, int end1, int end2) {
	const int n0 = (end0 + span - 1) / span, n1 = (end1 - end0 + span - 1) / span;
	ExpandRun r = {0, 0, 0, end0};
	if (y >= n0 + n1) {
		r = {2, end1, 0, end2};
		y -= n0 + n1;
	} else if (y >= n0) {
		r = {1, end0, 0, end1};
		y -= n0;
	}
	r.col0 = r.off + y * span;
	r.col1 = min(r.col1, r.col0 + span);
	return r;
}

// Block y of group grp's blocks; vs is shared memory of LORA_GROUP * vstride floats.
__device__ __forceinline__ void expand_block(float *vs, float *out, const float *v, const unsigned long long *b_ptrs,
		const int *ranks, const float *scales, RowGroup grp, ExpandRun run, int parts, int vstride, int width) {
	const int g = grp.rows, t = grp.row * parts + run.p, rank = ranks[t];
	const float scale = scales[t];
	const __nv_bfloat16 *b0 = (const __nv_bfloat16 *)b_ptrs[t];
	for (int i = threadIdx.x; i < g * vstride; i += blockDim.x) { // from L2: a few blocks read each
		vs[i] = __ldcg(v + ((size_t)(grp.row + i / vstride) * parts + run.p) * vstride + i % vstride);
	}
	const int o0 = run.col0 + threadIdx.x;
	if (rank == 0) { // the whole block, before any barrier
#pragma unroll
		for (int c = 0; c < EXPAND_C; c++) {
			const int o = o0 + c * blockDim.x;
			for (int q = 0; q < g && o < run.col1; q++) {
				out[(size_t)(grp.row + q) * width + o] = 0.0f;
			}
		}
		return;
	}
	// Each column's row of B and its first 8 values (zeros past the run), loading while v is
	// stored. A row of v is read 8 values at a time where the rows start 16-byte aligned.
	const bool vec = (rank & 7) == 0 && (vstride & 3) == 0 && ((unsigned long long)b0 & 15) == 0;
	const __nv_bfloat16 *b[EXPAND_C];
	uint4 w[EXPAND_C];
#pragma unroll
	for (int c = 0; c < EXPAND_C; c++) {
		const int o = o0 + c * blockDim.x;
		b[c] = o < run.col1 ? b0 + (size_t)(o - run.off) * rank : nullptr;
		w[c] = vec && b[c] ? *(const uint4 *)b[c] : make_uint4(0, 0, 0, 0);
	}
	__syncthreads(); // v is in shared memory
	float acc[LORA_GROUP][EXPAND_C] = {};
	if (vec) {
		for (int j = 0; j < rank; j += 8) {
#pragma unroll
			for (int c = 0; c < EXPAND_C; c++) {
				float w8[8];
				unpack8(w8, w[c]);
#pragma unroll
				for (int q = 0; q < LORA_GROUP; q++) {
					if (q < g) {
						const float4 va = *(const float4 *)(vs + q * vstride + j), vb = *(const float4 *)(vs + q * vstride + j + 4);
						const float v8[8] = {va.x, va.y, va.z, va.w, vb.x, vb.y, vb.z, vb.w};
#pragma unroll
						for (int e = 0; e < 8; e++) {
							acc[q][c] += v8[e] * w8[e];
						}
					}
				}
			}
#pragma unroll
			for (int c = 0; c < EXPAND_C; c++) {
				w[c] = j + 8 < rank && b[c] ? *(const uint4 *)(b[c] + j + 8) : make_uint4(0, 0, 0, 0);
			}
		}
	} else {
		for (int j = 0; j < rank; j++) {
#pragma unroll
			for (int c = 0; c < EXPAND_C; c++) {
				if (b[c]) {
					float w = __bfloat162float(b[c][j]);
#pragma unroll
					for (int q = 0; q < LORA_GROUP; q++) {
						if (q < g) {
							acc[q][c] += vs[q * vstride + j] * w;
						}
					}
				}
			}
		}
	}
#pragma unroll
	for (int c = 0; c < EXPAND_C; c++) {
		if (b[c]) {
#pragma unroll // so that acc stays in registers
			for (int q = 0; q < LORA_GROUP; q++) {
				if (q < g) {
					out[(size_t)(grp.row + q) * width + o0 + c * blockDim.x] = scale * acc[q][c];
				}
			}
		}
	}
}

extern "C" __global__ void __launch_bounds__(LORA_THREADS, LORA_BLOCKS) lora_expand(float *out, const float *v,
		const unsigned long long *b_ptrs, const int *ranks, const float *scales, const int *groups, int direct, int parts,
		int vstride, int end0, int end1, int end2) {
	pdl_wait();
	DYNAMIC_SHARED(float, vs);
	const int span = blockDim.x * EXPAND_C, cols = (end0 + span - 1) / span + (end1 - end0 + span - 1) / span +
		(end2 - end1 + span - 1) / span;
	const RowGroup grp = row_group(groups, blockIdx.x / cols, direct);
	if (grp.rows == 0) {
		return; // the whole block: past the groups
	}
	expand_block(vs, out, v, b_ptrs, ranks, scales, grp, expand_run(blockIdx.x % cols, span, end0, end1, end2), parts,
		vstride, end2);
}
