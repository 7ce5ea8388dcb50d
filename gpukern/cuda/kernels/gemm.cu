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
// bound (the backend uses cuBLAS otherwise). gemm_lora, at the end of the file, is the same
// GEMM with a projection's multi-LoRA folded in.

#define GEMM_THREADS 256 // 8 warps, which split k (W, where a kernel has another number)
#define GEMM_WARPS (GEMM_THREADS / 32)
#define GEMM_ROWS 32  // rows of w (output columns) a block computes: two tiles of 16
#define GEMM_K 32     // values of k a warp covers a step: 8 from each lane of a quad

// Where a lane's rows start, at its own first 16 bytes: row g (= lane/4) of the block's rows
// of w, and row g of x; the lane's other rows of x are 8, 16 and 24 rows further (stride8
// 16-byte units), and so are those of w in a GEMM. A shrink block's two tiles of w are two
// LoRA A matrices (shrink_rows): its rows of w are row g and that row half units on (row g +
// 8; a matrix of fewer than 16 rows repeats its last) of the first, and the same rows tile
// units on of the second.
struct GemmRows {
	const uint4 *w, *x;
	int stride8, last; // last: the last step's first 16-byte unit
	int half, tile;    // a shrink block's
};

// The rows of a block's 32 rows of w from row0 on, of a matrix of rows of k values; x is the
// GEMM's input, rows of k values too.
__device__ __forceinline__ GemmRows gemm_rows(const __nv_bfloat16 *w, int row0, const __nv_bfloat16 *x, int k) {
	const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3, units = k / 8;
	return {(const uint4 *)(w + (long long)(row0 + g) * k) + t, (const uint4 *)(x + (long long)g * k) + t, 8 * units,
	        GEMM_K / 8 * (k / GEMM_K - 1), 8 * units, 16 * units};
}

// A lane's 16 bytes of a step of each of its rows of w: tile i, half h is row 16i + 8h + g of
// the block's. Loaded steps ahead of their use: they come from memory. A step past the
// last (loaded ahead, never multiplied) reads the last one again, so that no load needs a
// condition, which would cost registers.
struct GemmW {
	uint4 r[2][2];
};

template <bool SHRINK> __device__ __forceinline__ void gemm_load_w(GemmW &f, const GemmRows &p, int step) {
	const int u = min(GEMM_K / 8 * step, p.last);
#pragma unroll
	for (int q = 0; q < 4; q++) {
		const uint4 *row = SHRINK ? p.w + (q / 2) * p.tile + (q % 2) * p.half : p.w + q * p.stride8;
		f.r[q / 2][q % 2] = __ldcs(row + u); // read once: past the caches
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

// Nothing to do beside a block's first loads (gemm_block's hook).
struct NoHook {
	__device__ void operator()() const {}
};

// gemm_block computes the block's 32 rows of w (p) times every row of x over steps steps of k,
// its W warps taking every W-th step, with the loads of w D steps ahead of the multiplies, into
// sums (calling hook once the first loads are issued); then the block reads each output with
// gemm_out. Launched early (pdl_wait), its first loads of w go out before the kernel before it
// has ended. x has rows up to the kernel's batch bound: those past the batch are multiplied,
// never stored.
template <int NT, int D, int W, bool SHRINK = false, class Hook = NoHook>
__device__ void gemm_block(GemmSums<NT, W> &sums, const GemmRows &p, int steps, const Hook &hook = Hook()) {
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	float acc[2][NT][4] = {};
	GemmW ws[D]; // ws[d] holds step s + d·W at the top of the loop
	uint4 xs[NT];
#pragma unroll
	for (int d = 0; d < D; d++) {
		gemm_load_w<SHRINK>(ws[d], p, warp + d * W);
	}
	pdl_wait(); // x is the kernel before's output; w, weights, streams already
	gemm_load_x<NT>(xs, p, warp);
	hook(); // while those loads are in flight
#pragma unroll 1
	for (int s = warp; s < steps; s += D * W) {
#pragma unroll
		for (int d = 0; d < D; d++) {
			if (s + d * W < steps) {
				gemm_mma<NT>(acc, ws[d], xs);
			}
			gemm_load_x<NT>(xs, p, s + (d + 1) * W);
			gemm_load_w<SHRINK>(ws[d], p, s + (d + D) * W);
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
// Output o's place, its sum left at 0 (gemm_out adds it up).
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

// gemm_small computes the block's GEMM_ROWS columns of out for every row of x. The last block
// of an n that is not a multiple of GEMM_ROWS takes the last GEMM_ROWS columns, some of which
// the block before it computes too (the same values: the order of the sums is fixed).
template <int NT, int D>
__device__ void gemm_small(float *__restrict__ out, const __nv_bfloat16 *__restrict__ x,
                           const __nv_bfloat16 *__restrict__ w, int m, int n, int k) {
	__shared__ GemmSums<NT, GEMM_WARPS> sums;
	const int col0 = tile_col0(blockIdx.x, n);
	gemm_block<NT, D, GEMM_WARPS>(sums, gemm_rows(w, col0, x, k), k / GEMM_K);
#pragma unroll 1
	for (int q = 0; q < NT; q++) {
		const GemmOut r = gemm_out<NT, GEMM_WARPS>(sums, threadIdx.x + q * GEMM_THREADS);
		if (r.row < m) {
			out[(long long)r.row * n + col0 + r.col] = r.sum;
		}
	}
}

#define GEMM_PARAMS float *out, const __nv_bfloat16 *x, const __nv_bfloat16 *w, int m, int n, int k
#define GEMM_ARGS out, x, w, m, n, k

// One kernel per batch bound, each with the accumulators of its own tiles: with w loaded two
// steps ahead and two blocks an SM, for GEMMs of more blocks than SMs; with w three steps
// ahead and one block an SM (gemm_deep), for those of fewer, which would otherwise have fewer
// loads in flight than an SM needs to stream at the memory's bandwidth. gemm_deep's launch
// bounds name GEMM_DEEP_BOUND threads, more than it is launched with, to cap its registers at
// 168: given all 255, ptxas takes them and still spills. Each is declared on its own line,
// not by a macro: kernels.Sources finds the kernels by their declarations.
#define GEMM_DEEP_BOUND 384
extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2) gemm_small_m8(GEMM_PARAMS) {
	gemm_small<1, 2>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2) gemm_small_m16(GEMM_PARAMS) {
	gemm_small<2, 2>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2) gemm_small_m32(GEMM_PARAMS) {
	gemm_small<4, 2>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(GEMM_DEEP_BOUND, 1) gemm_deep_m8(GEMM_PARAMS) {
	gemm_small<1, 3>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(GEMM_DEEP_BOUND, 1) gemm_deep_m16(GEMM_PARAMS) {
	gemm_small<2, 3>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(GEMM_DEEP_BOUND, 1) gemm_deep_m32(GEMM_PARAMS) {
	gemm_small<4, 3>(GEMM_ARGS);
}

// A projection's GEMM with its multi-LoRA in one launch (gemm_lora): out[r, :] = x[r, :] · wᵀ
// plus, for each part p of the row's adapter, scale · (x[r, :] · Aᵀ) · Bᵀ over the part's
// columns (part 1 from column off1 on, part 2 from off2; n where there is no such part). The
// LoRA tables are lora.cu's, per (row, part) entry t = r * parts + p: B as a device pointer,
// its rank (0: no adapter) and scale.
//
// The first blocks to start (take_ticket, lora_role) compute v = x · Aᵀ. A unit is 16 rows of
// one part's A of one adapter (fewer where the rank ends) for the rows of x that use it
// (unit_a[u]: the address of its first row; unit[4u ..]: its rows, the first and one past the
// last row of x using it, and its column in a row of v). Units 2i and 2i + 1 are a tile of w
// to gemm_block, so the shrink streams A as the GEMM streams w, and each such pair's k is cut
// into `splits` chunks, a shrink block each (block b: pair b / splits, chunk b % splits): short
// blocks beside the GEMM's, which add no wave of their own where the GEMM has about as many
// blocks as the GPU has SMs. A block writes its chunk's sums to part; the last of a unit's
// blocks to finish (count[u], zero between launches) adds the unit's chunks, in order, into v.
// The grid has `shrinks` shrink blocks, for as many pairs as the batch's shape may need, so
// that it depends on that alone, as CUDA graphs need; those of the pairs a step leaves empty
// start last and do nothing. The GEMM's blocks compute it as gemm_small does; past their main
// loop they wait for the shrink blocks (started before them: the wait ends) and add the expand,
// v · Bᵀ, to each output. In v (fp32, rows of parts * vstride values) part p's values start
// at p * vstride. sync: take_ticket's counters.
#define SHRINK_ROWS 16                 // rows of A a shrink unit covers: a tile of the mma
#define SHRINK_PART (32 * SHRINK_ROWS) // a unit's sums of one chunk: rows of x (up to 32) × rows of A
#define GEMM_LORA_PARAMS                                                                                                 \
	float *out, const __nv_bfloat16 *x, const __nv_bfloat16 *w, int m, int n, int k, float *v,                       \
		const unsigned long long *unit_a, const int *unit, int shrinks, int splits, float *part, int *count,     \
		const unsigned long long *b_ptrs, const int *ranks, const float *scales, int off1, int off2, int parts,   \
		int vstride, int *sync
#define GEMM_LORA_ARGS                                                                                                   \
	out, x, w, m, n, k, v, unit_a, unit, shrinks, splits, part, count, b_ptrs, ranks, scales, off1, off2, parts, vstride, sync

// The rows of a lane for units u0 and u0 + 1, over chunk of steps steps of k. The two have as
// many rows (the host pairs them so) and tiles no more than 2³¹ 16-byte units apart, or the
// second is empty (u0's again, stored nowhere).
__device__ __forceinline__ GemmRows shrink_rows(const unsigned long long *unit_a, const int *unit, int u0,
                                                const __nv_bfloat16 *x, int k, int chunk, int steps) {
	const int g = (threadIdx.x & 31) >> 2, rows = unit[4 * u0], units = k / 8, k0 = chunk * steps * GEMM_K / 8;
	const int r0 = min(g, rows - 1), r1 = min(g + 8, rows - 1); // past the rank: its last row again
	const unsigned long long a0 = unit_a[u0], a1 = unit[4 * (u0 + 1)] > 0 ? unit_a[u0 + 1] : a0;
	GemmRows p = gemm_rows((const __nv_bfloat16 *)a0, r0 - g, x, k); // row r0 of tile 0
	p.w += k0;
	p.x += k0;
	p.last = GEMM_K / 8 * (steps - 1);
	p.half = (r1 - r0) * units;
	p.tile = (int)((long long)(a1 - a0) / 16);
	return p;
}

// A shrink block's sums after gemm_block, into part: chunk of units u0 and u0 + 1.
template <int NT, int W>
__device__ void store_part(const GemmSums<NT, W> &sums, float *part, const int *unit, int u0, int chunk, int splits) {
#pragma unroll 1
	for (int q = 0; q < 8 * NT / W; q++) {
		const GemmOut r = gemm_out<NT, W>(sums, threadIdx.x + q * 32 * W);
		const int i = r.col / SHRINK_ROWS, j = r.col % SHRINK_ROWS, *u = unit + 4 * (u0 + i);
		if (j < u[0] && u[1] <= r.row && r.row < u[2]) { // an empty unit has no rows of x
			part[((long long)(u0 + i) * splits + chunk) * SHRINK_PART + r.row * SHRINK_ROWS + j] = r.sum;
		}
	}
}

// Counts a shrink block's units done; the last block of a unit adds its chunks' sums in
// order into v (other blocks wrote them: read from L2) and zeroes its count. threads: the
// block's.
__device__ void shrink_done(int threads, float *v, const float *part, const int *unit, int *count, int u0, int splits,
                            int vrow) {
	__shared__ int last[2];
	__threadfence(); // this block's sums are visible before its count says so
	__syncthreads();
	if (threadIdx.x < 2) {
		const int u = u0 + threadIdx.x;
		last[threadIdx.x] = unit[4 * u] > 0 && atomicAdd(&count[u], 1) == splits - 1;
	}
	__syncthreads();
#pragma unroll 1
	for (int i = 0; i < 2; i++) {
		if (!last[i]) {
			continue;
		}
		const int id = u0 + i, *u = unit + 4 * id, n = (u[2] - u[1]) * u[0];
		for (int e = threadIdx.x; e < n; e += threads) {
			const int row = u[1] + e / u[0], j = e % u[0];
			float sum = 0.0f;
			for (int c = 0; c < splits; c++) {
				sum += __ldcg(part + ((long long)id * splits + c) * SHRINK_PART + row * SHRINK_ROWS + j);
			}
			v[(long long)row * vrow + u[3] + j] = sum;
		}
		if (threadIdx.x == 0) {
			count[id] = 0; // every block of the unit has counted
		}
	}
}

// A row's adapter on one part, as a GEMM block's expand reads it: its B (null: none), rank and
// scale. gemm_lora's blocks hold the entries of every row and part in shared memory: rows up
// to 32, parts up to 3 (lora.cu's LORA_MAX_PARTS).
struct LoRAEntry {
	const __nv_bfloat16 *b;
	int rank;
	float scale;
};
#define GEMM_LORA_ENTRIES (32 * 3)

// Where the expand of row's adapter at column col reads: its entry (null: none) and its row of
// B.
struct LoRAB {
	const LoRAEntry *e;
	const __nv_bfloat16 *b;
};
__device__ __forceinline__ LoRAB lora_b(const LoRAEntry *table, int off1, int off2, int parts, int row, int col) {
	const int p = (col >= off1) + (col >= off2);
	const LoRAEntry *e = table + row * parts + p;
	if (e->rank == 0) {
		return {nullptr, nullptr};
	}
	return {e, e->b + (long long)(col - (p == 0 ? 0 : p == 1 ? off1 : off2)) * e->rank};
}

// Whether the expand reads row's B 16 bytes at a time: there is one, 16-byte aligned with rows
// of a multiple of 8 values. Else it reads a value at a time, if there is one.
__device__ __forceinline__ bool lora_b_vector(const LoRAB &lb) {
	return lb.e != nullptr && (lb.e->rank & 7) == 0 && ((unsigned long long)lb.b & 15) == 0;
}

// gemm_lora's GEMM blocks past the wait: each output's sum plus its expand, scale · v[row,
// part] · B[col - the part's first], stored. The outputs of a thread are expanded together,
// so that their reads of L2 overlap: v's rows of the batch (m · parts · vstride values, which
// the host keeps within sums' size: gemm_lora.go) are copied into sums' memory, once each
// thread holds its sums, GEMM_LORA_STAGE values a thread at a time; then every output's B is
// read 8 values a step, the next step's loads in flight while this one's are multiplied. For
// rank 16 that is about three round trips to L2 a block, where one output after another took
// one or two each. v comes from L2: other blocks wrote it during this launch.
#define GEMM_LORA_STAGE 16
template <int NT, int W>
__device__ void store_lora(float *out, GemmSums<NT, W> &sums, const LoRAEntry *table, const float *v, int m, int n,
                           int col0, int off1, int off2, int parts, int vstride) {
	enum { OUTS = 8 * NT / W, THREADS = 32 * W };
	float sum[OUTS], delta[OUTS];
	LoRAB lb[OUTS];
	uint4 b8[OUTS]; // the current step's 8 values of B
#pragma unroll
	for (int q = 0; q < OUTS; q++) {
		const GemmOut r = gemm_out<NT, W>(sums, threadIdx.x + q * THREADS);
		sum[q] = r.sum;
		delta[q] = 0.0f;
		lb[q] = r.row < m ? lora_b(table, off1, off2, parts, r.row, col0 + r.col) : LoRAB{nullptr, nullptr};
		b8[q] = lora_b_vector(lb[q]) ? *(const uint4 *)lb[q].b : make_uint4(0, 0, 0, 0);
	}
	const int total = m * parts * vstride;
	if (total * (int)sizeof(float) > (int)sizeof(sums)) {
		__trap(); // the host folds no LoRA whose v would not fit
	}
	__syncthreads(); // every thread holds its sums: their memory takes v
	float *vs = &sums[0][0][0];
	for (int e0 = threadIdx.x; e0 < total; e0 += GEMM_LORA_STAGE * THREADS) {
		float t[GEMM_LORA_STAGE];
#pragma unroll
		for (int i = 0; i < GEMM_LORA_STAGE; i++) {
			const int e = e0 + i * THREADS;
			t[i] = e < total ? __ldcg(v + e) : 0.0f;
		}
#pragma unroll
		for (int i = 0; i < GEMM_LORA_STAGE; i++) {
			const int e = e0 + i * THREADS;
			if (e < total) {
				vs[e] = t[i];
			}
		}
	}
	__syncthreads();
#pragma unroll 1
	for (int j = 0; j < vstride; j += 8) {
		uint4 next[OUTS];
#pragma unroll
		for (int q = 0; q < OUTS; q++) {
			const bool more = lora_b_vector(lb[q]) && j + 8 < lb[q].e->rank;
			next[q] = more ? *(const uint4 *)(lb[q].b + j + 8) : make_uint4(0, 0, 0, 0);
		}
#pragma unroll
		for (int q = 0; q < OUTS; q++) {
			if (lora_b_vector(lb[q]) && j < lb[q].e->rank) {
				float w8[8];
				unpack8(w8, b8[q]);
				const float *vr = vs + (lb[q].e - table) * vstride + j;
#pragma unroll
				for (int e = 0; e < 8; e++) {
					delta[q] += vr[e] * w8[e];
				}
			}
			b8[q] = next[q];
		}
	}
#pragma unroll
	for (int q = 0; q < OUTS; q++) {
		const GemmOut r = gemm_out_at<NT>(threadIdx.x + q * THREADS);
		if (r.row >= m) {
			continue;
		}
		if (lb[q].e != nullptr && !lora_b_vector(lb[q])) {
			const float *vr = vs + (lb[q].e - table) * vstride;
			for (int j = 0; j < lb[q].e->rank; j++) {
				delta[q] += vr[j] * __bfloat162float(lb[q].b[j]);
			}
		}
		out[(long long)r.row * n + col0 + r.col] = sum[q] + (lb[q].e != nullptr ? lb[q].e->scale * delta[q] : 0.0f);
	}
}

// gemm_lora's blocks, beside their first loads of w: the entries of the m rows (none in a
// shrink block) into table, in one round trip to L2 for all of them; then the B rows of the
// block's outputs into L2, so that the expand after the main loop does not wait for DRAM.
// Read from the tables there, each output's entry would be two round trips, one after the
// other (its rank, then its B), before its B could even be fetched.
template <int NT, int W> struct LoadExpand {
	LoRAEntry *table;
	const unsigned long long *b_ptrs;
	const int *ranks;
	const float *scales;
	int off1, off2, parts, m, col0;
	__device__ void operator()() const {
		for (int t = threadIdx.x; t < m * parts; t += 32 * W) {
			table[t] = {(const __nv_bfloat16 *)b_ptrs[t], ranks[t], scales[t]};
		}
		__syncthreads();
#pragma unroll 1
		for (int q = 0; q < 8 * NT / W; q++) { // the outputs gemm_out gives this thread
			const GemmOut r = gemm_out_at<NT>(threadIdx.x + q * 32 * W);
			if (r.row < m) {
				const LoRAB lb = lora_b(table, off1, off2, parts, r.row, col0 + r.col);
				if (lb.e != nullptr) {
					prefetch_l2(lb.b);
				}
			}
		}
	}
};

// The pairs of shrink units in use (the first ones: unit[8 * pairs] counts them) times splits:
// their blocks.
__device__ __forceinline__ int active_shrinks(const int *unit, int shrinks, int splits) {
	return unit[8 * (shrinks / splits)] * splits;
}

// A gemm_lora block's work, by its ticket: the blocks of the pairs in use take the first
// tickets, the GEMM's blocks the next, and those of the pairs not in use the last, which have
// nothing to do (at the end, beside the GEMM's last blocks, rather than before its first). In
// the numbering of the grid: b < shrinks a shrink block (pair b / splits, chunk b % splits),
// shrinks + j the GEMM's block j, -1 none. In shared memory, as the ticket.
__device__ __forceinline__ const volatile int &lora_role(int *sync, const int *unit, int shrinks, int splits) {
	__shared__ int role;
	const volatile int &ticket = take_ticket(sync);
	if (threadIdx.x == 0) {
		const int t = ticket, active = active_shrinks(unit, shrinks, splits), tiles = gridDim.x - shrinks;
		role = t < active ? t : t < active + tiles ? shrinks + t - active : -1;
	}
	__syncthreads();
	return role;
}

// What a gemm_lora block does before it waits for the kernel before it (pdl_wait), where it
// may start early: it cannot take its ticket yet (a gemm_lora just before it may still be
// using the counters), so it fetches into L2 the weights that the GEMM block of the same
// index would load first (the first D steps of each of its W warps), since blocks mostly take
// their tickets in the order of their indices; a wrong guess fetches lines that another block
// reads soon. The unit table is the flush's metadata, copied before the flush's first kernel.
template <int D, int W> __device__ void prefetch_tile(const __nv_bfloat16 *w, const int *unit, int shrinks, int splits, int n, int k) {
	const int t = (int)blockIdx.x - active_shrinks(unit, shrinks, splits);
	if (t < 0 || t >= (int)gridDim.x - shrinks) {
		return; // a shrink block's, or one of the unused pairs'
	}
	const int col0 = tile_col0(t, n), lines = min(D * W * GEMM_K * 2, 2 * k) / 128;
	for (int i = threadIdx.x; i < GEMM_ROWS * lines; i += 32 * W) {
		prefetch_l2((const char *)(w + (long long)(col0 + i / lines) * k) + 128 * (i % lines));
	}
}

template <int NT, int D, int W> __device__ void gemm_lora(GEMM_LORA_PARAMS) {
	__shared__ GemmSums<NT, W> sums;
	__shared__ LoRAEntry table[GEMM_LORA_ENTRIES];
	prefetch_tile<D, W>(w, unit, shrinks, splits, n, k);
	pdl_wait();
	// The role is read again past the loop, not kept in registers through it.
	const volatile int &role = lora_role(sync, unit, shrinks, splits);
	// One loop for both roles, the GEMM's rows in the shrink's form: as two loops, their
	// registers would add up past the launch bounds.
	if (role >= 0) {
		const int b = role, col0 = tile_col0(b - shrinks, n);
		const int steps = b < shrinks ? k / GEMM_K / splits : k / GEMM_K;
		const LoadExpand<NT, W> expand{table, b_ptrs, ranks, scales, off1, off2, parts, b < shrinks ? 0 : m, col0};
		gemm_block<NT, D, W, true>(sums, b < shrinks ? shrink_rows(unit_a, unit, 2 * (b / splits), x, k, b % splits, steps)
		                                             : gemm_rows(w, col0, x, k),
		                           steps, expand);
		if (role < shrinks) {
			store_part<NT, W>(sums, part, unit, 2 * (role / splits), role % splits, splits);
		}
	}
	const int b = role; // -1: nothing to do
	if (0 <= b && b < shrinks) {
		shrink_done(32 * W, v, part, unit, count, 2 * (b / splits), splits, parts * vstride);
		first_role_done(sync);
	} else if (b >= shrinks) {
		wait_at_least(&sync[1], active_shrinks(unit, shrinks, splits));
		store_lora<NT, W>(out, sums, table, v, m, n, tile_col0(b - shrinks, n), off1, off2, parts, vstride);
	}
	block_done(sync);
}

// gemm_lora's kernels, by batch bound and kind as gemm_small's and gemm_deep's. For a batch
// of 32, the small kind (two blocks an SM) has blocks of GEMM_LORA_SMALL32_THREADS, 4 warps: at 8
// warps and two blocks an SM its 128 registers spill (the shrink's rows take two more than
// gemm_small's), while two blocks of 4 warps may take every register, and w loaded three steps
// ahead keeps as many loads in flight an SM as gemm_deep's one block of 8. One block of 8 an SM
// (the deep kind) would leave each block's first loads and last sums without another block's
// loads beside them, on every SM and in every wave. The deep ones may take every register: with
// gemm_deep's cap of 168, gemm_lora_deep_m32 spills.
#define GEMM_LORA_SMALL32_THREADS 128
extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2) gemm_lora_small_m8(GEMM_LORA_PARAMS) {
	gemm_lora<1, 2, GEMM_WARPS>(GEMM_LORA_ARGS);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 2) gemm_lora_small_m16(GEMM_LORA_PARAMS) {
	gemm_lora<2, 2, GEMM_WARPS>(GEMM_LORA_ARGS);
}
extern "C" __global__ void __launch_bounds__(GEMM_LORA_SMALL32_THREADS, 2) gemm_lora_small_m32(GEMM_LORA_PARAMS) {
	gemm_lora<4, 3, GEMM_LORA_SMALL32_THREADS / 32>(GEMM_LORA_ARGS);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 1) gemm_lora_deep_m8(GEMM_LORA_PARAMS) {
	gemm_lora<1, 3, GEMM_WARPS>(GEMM_LORA_ARGS);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 1) gemm_lora_deep_m16(GEMM_LORA_PARAMS) {
	gemm_lora<2, 3, GEMM_WARPS>(GEMM_LORA_ARGS);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS, 1) gemm_lora_deep_m32(GEMM_LORA_PARAMS) {
	gemm_lora<4, 3, GEMM_WARPS>(GEMM_LORA_ARGS);
}
