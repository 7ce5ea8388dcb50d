// The decode GEMM kernels' code (gemm.cu and gemm_lean.cu declare the kernels): kernels.Sources
// puts it in place of their #include, and the emulator includes it as it is, once in each's
// namespace (so no include guard).

// Decode's GEMMs: out[r, :] = x[r, :] · wᵀ for batches of at most 32 rows (m), on the tensor
// cores. Such a GEMM does little arithmetic per byte of w, so the kernel is built to stream w
// at the memory's bandwidth: each lane loads 16 bytes of a row of w at a time straight into
// the registers that mma_bf16 takes (no shared memory and no barrier in the loop), two or three
// steps ahead of the multiplies, and a block's warps split k between them, adding their sums once
// at the end in a fixed order (the result does not depend on timing).
//
// What lets a 16-byte load feed an mma as it is: a dot product may sum k in any order, so the
// 16 columns of an mma's a (and rows of its b) may stand for any 16 values of k, as long as a
// and b agree. Lane t of a quad loads values 8u .. 8u+7 of k (u = 4·step + t) of its rows of
// w and of x; a step's first mma takes the words holding 8u .. 8u+3 (as the layout's columns
// 2t, 2t+1, 2t+8, 2t+9), the second those holding 8u+4 .. 8u+7.
//
// m must be at most the kernel's batch bound (8 × its tiles of x), n at least GEMM_ROWS, k a
// multiple of 32 (GEMM_K) and the rows 16-byte aligned; x must have rows up to the batch
// bound (the backend uses cuBLAS otherwise).

#define GEMM_THREADS 256 // 8 warps, which split k (W, where a kernel has another number)
#define GEMM_WARPS (GEMM_THREADS / 32)
#define GEMM_ROWS 32  // rows of w (output columns) a block computes: two tiles of 16
#define GEMM_K 32     // values of k a warp covers a step: 8 from each lane of a quad

// Where a lane's rows start, at its own first 16 bytes: row g (= lane/4) of the block's rows
// of w, and row g of x; the lane's other rows of x are 8, 16 and 24 rows further (stride8
// 16-byte units), and so are those of w.
struct GemmRows {
	const uint4 *w, *x;
	int stride8, last; // last: the last step's first 16-byte unit
};

// The rows of a block's 32 rows of w from row0 on, of a matrix of rows of k values, over the
// steps steps of k from step s0 on; x is the GEMM's input, rows of k values too.
__device__ __forceinline__ GemmRows gemm_rows(const __nv_bfloat16 *w, int row0, const __nv_bfloat16 *x, int k, int s0,
                                              int steps) {
	const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3, units = k / 8, u0 = GEMM_K / 8 * s0 + t;
	return {(const uint4 *)(w + (long long)(row0 + g) * k) + u0, (const uint4 *)(x + (long long)g * k) + u0, 8 * units,
	        GEMM_K / 8 * (steps - 1)};
}

// A lane's 16 bytes of a step of each of its rows of w: tile i, half h is row 16i + 8h + g of
// the block's. Loaded steps ahead of their use: they come from memory. A step past the
// last (loaded ahead, never multiplied) reads the last one again, so that no load needs a
// condition, which would cost registers.
struct GemmW {
	uint4 r[2][2];
};

__device__ __forceinline__ void gemm_load_w(GemmW &f, const GemmRows &p, int step) {
	const int u = min(GEMM_K / 8 * step, p.last);
#pragma unroll
	for (int q = 0; q < 4; q++) {
		f.r[q / 2][q % 2] = __ldcs(p.w + q * p.stride8 + u); // read once: past the caches
	}
}

// The same of x's rows (tile c: row 8c + g), one step ahead: every block reads them, from L2.
template <int NT> __device__ __forceinline__ void gemm_load_x(uint4 x[NT], const GemmRows &p, int step) {
	const int u = min(GEMM_K / 8 * step, p.last);
#pragma unroll
	for (int c = 0; c < NT; c++) {
		x[c] = __ldg(p.x + c * p.stride8 + u);
	}
}

template <int NT> __device__ __forceinline__ void gemm_mma(float acc[2][NT][4], const GemmW &f, const uint4 x[NT]) {
#pragma unroll
	for (int j = 0; j < 2; j++) {
#pragma unroll
		for (int i = 0; i < 2; i++) {
			const unsigned a[4] = {j ? f.r[i][0].z : f.r[i][0].x, j ? f.r[i][1].z : f.r[i][1].x,
			                       j ? f.r[i][0].w : f.r[i][0].y, j ? f.r[i][1].w : f.r[i][1].y};
#pragma unroll
			for (int c = 0; c < NT; c++) {
				const unsigned b[2] = {j ? x[c].z : x[c].x, j ? x[c].w : x[c].y};
				mma_bf16(acc[i][c], a, b);
			}
		}
	}
}

// The partial sums of a block's outputs of its W warps, in shared memory.
template <int NT, int W> using GemmSums = float[W][2 * NT * 4][32];

// gemm_block computes the block's 32 rows of w (p) times every row of x over steps steps of k,
// its W warps taking every W-th step, with the loads of w D steps ahead of the multiplies, into
// sums; then the block reads each output with
// gemm_out. Launched early (pdl_wait), its first loads of w go out before the kernel before it
// has ended. x has rows up to the kernel's batch bound: those past the batch are multiplied,
// never stored.
template <int NT, int D, int W> __device__ void gemm_block(GemmSums<NT, W> &sums, const GemmRows &p, int steps) {
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	float acc[2][NT][4] = {};
	GemmW ws[D]; // ws[d] holds step s + d·W at the top of the loop
	uint4 xs[NT];
#pragma unroll
	for (int d = 0; d < D; d++) {
		gemm_load_w(ws[d], p, warp + d * W);
	}
	pdl_wait(); // x is the kernel before's output; w, weights, streams already
	gemm_load_x<NT>(xs, p, warp);
#pragma unroll 1
	for (int s = warp; s < steps; s += D * W) {
#pragma unroll
		for (int d = 0; d < D; d++) {
			if (s + d * W < steps) {
				gemm_mma<NT>(acc, ws[d], xs);
			}
			gemm_load_x<NT>(xs, p, s + (d + 1) * W);
			gemm_load_w(ws[d], p, s + (d + D) * W);
		}
	}
#pragma unroll
	for (int i = 0; i < 2; i++) {
#pragma unroll
		for (int c = 0; c < NT; c++) {
#pragma unroll
			for (int e = 0; e < 4; e++) {
				sums[warp][(i * NT + c) * 4 + e][lane] = acc[i][c][e];
			}
		}
	}
	__syncthreads();
}

// Output o (< 2·NT·4·32) of a block after gemm_block: the warps' sums added in a fixed order
// (the result does not depend on timing), its row of x and its row of the block's 32 of w (16i
// + j for tile i). acc[i][c][e] of lane l is x's row 8c + 2(l%4) + e%2 and w's row 16i + l/4 +
// 8(e/2). Each of the block's 32·W threads takes 8·NT/W outputs: o = threadIdx.x + q·32·W.
struct GemmOut {
	float sum;
	int row, col;
};
// Output o's place, its sum left at 0.
template <int NT> __device__ __forceinline__ GemmOut gemm_out_at(int o) {
	const int idx = o >> 5, l = o & 31, i = idx / (NT * 4), c = idx / 4 % NT, e = idx % 4;
	return {0.0f, 8 * c + 2 * (l & 3) + (e & 1), 16 * i + (l >> 2) + 8 * (e >> 1)};
}
template <int NT, int W> __device__ __forceinline__ GemmOut gemm_out(const GemmSums<NT, W> &sums, int o) {
	GemmOut r = gemm_out_at<NT>(o);
	for (int wp = 0; wp < W; wp++) {
		r.sum += sums[wp][o >> 5][o & 31];
	}
	return r;
}

// The first of GEMM tile t's GEMM_ROWS columns of n: the last tile of an n that is not a
// multiple of GEMM_ROWS takes the last GEMM_ROWS columns (see gemm_small).
__device__ __forceinline__ int tile_col0(int t, int n) {
	return min(t * GEMM_ROWS, n - GEMM_ROWS);
}

// The outputs of a block of NT tiles of x: GemmSums' row of each warp.
#define GEMM_OUTS(NT) (2 * (NT) * 4 * 32)

// A split block's end (gemm_small): its chunk's sums to part, then, in the tile's last block
// to finish, every chunk's sums added in chunk order into out.
template <int NT>
__device__ void gemm_split_store(const GemmSums<NT, GEMM_WARPS> &sums, float *__restrict__ out, int m, int n, int col0,
                                 int splits, int tile, float *part, int *count) {
	__shared__ int last;
#pragma unroll 1
	for (int q = 0; q < NT; q++) {
		const int o = threadIdx.x + q * GEMM_THREADS;
		part[(long long)blockIdx.x * GEMM_OUTS(NT) + o] = gemm_out<NT, GEMM_WARPS>(sums, o).sum;
	}
	__threadfence(); // the sums are visible before the count says so
	__syncthreads();
	if (threadIdx.x == 0) {
		last = atomicAdd(&count[tile], 1) == splits - 1;
	}
	__syncthreads();
	if (!last) {
		return;
	}
	__threadfence(); // every chunk's sums are visible to this block's reads (from L2: __ldcg)
	const float *chunks = part + (long long)tile * splits * GEMM_OUTS(NT);
#pragma unroll 1
	for (int q = 0; q < NT; q++) {
		const int o = threadIdx.x + q * GEMM_THREADS;
		GemmOut r = gemm_out_at<NT>(o);
		for (int c = 0; c < splits; c++) {
			r.sum += __ldcg(chunks + c * GEMM_OUTS(NT) + o);
		}
		if (r.row < m) {
			out[(long long)r.row * n + col0 + r.col] = r.sum;
		}
	}
	if (threadIdx.x == 0) {
		count[tile] = 0; // for the next launch: every block of the tile has counted
	}
}

// gemm_small computes the block's GEMM_ROWS columns of out for every row of x. The last block
// of an n that is not a multiple of GEMM_ROWS takes the last GEMM_ROWS columns, some of which
// the block before it computes too (the same values: the order of the sums is fixed).
//
// With splits > 1 a tile's k is cut into that many chunks of whole steps, a block each (block b:
// tile b / splits, chunk b % splits), so that a GEMM whose tiles would leave the last wave of
// blocks part empty fills its waves (the backend picks splits, host.GEMMSplits). Each block
// writes its chunk's sums to part (GEMM_OUTS(NT) floats a block, in block order) and counts
// itself done in count[tile] (zero between launches); the last of a tile's blocks adds the
// chunks' sums in chunk order, so the result does not depend on which block ends last, stores
// them and zeroes the count: threadFenceReduction's pattern of the CUDA samples.
template <int NT, int D>
__device__ void gemm_small(float *__restrict__ out, const __nv_bfloat16 *__restrict__ x,
                           const __nv_bfloat16 *__restrict__ w, int m, int n, int k, int splits, float *part,
                           int *count) {
	__shared__ GemmSums<NT, GEMM_WARPS> sums;
	const int tile = blockIdx.x / splits, chunk = blockIdx.x % splits, steps = k / GEMM_K;
	const int s0 = steps * chunk / splits, s1 = steps * (chunk + 1) / splits, col0 = tile_col0(tile, n);
	gemm_block<NT, D, GEMM_WARPS>(sums, gemm_rows(w, col0, x, k, s0, s1 - s0), s1 - s0);
	if (splits > 1) {
		gemm_split_store<NT>(sums, out, m, n, col0, splits, tile, part, count);
		return;
	}
#pragma unroll 1
	for (int q = 0; q < NT; q++) {
		const GemmOut r = gemm_out<NT, GEMM_WARPS>(sums, threadIdx.x + q * GEMM_THREADS);
		if (r.row < m) {
			out[(long long)r.row * n + col0 + r.col] = r.sum;
		}
	}
}

#define GEMM_PARAMS                                                                                                 \
	float *out, const __nv_bfloat16 *x, const __nv_bfloat16 *w, int m, int n, int k, int splits, float *part, int *count
#define GEMM_ARGS out, x, w, m, n, k, splits, part, count
