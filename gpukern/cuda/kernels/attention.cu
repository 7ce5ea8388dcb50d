// Causal attention with grouped KV heads over the paged bf16 cache, in two kernels: a tiled,
// flash-attention style prefill, and a decode split along the context ("flash-decoding") whose
// parts a second kernel combines, so that one long sequence still fills the GPU (a context
// that fits one split needs no combining).
//
// Shared rules: q and out are [rows, heads*hd] fp32. Row r sees positions 0..row_len[r]-1 of its
// sequence, whose block table is blocks[row_table[r] .. ]: position p lives in slot
// blocks[row_table[r] + p/block_size] * block_size + p%block_size; a slot holds kv_heads*hd bf16
// values, head kvh = h / (heads/kv_heads) at offset kvh*hd. hd is even and at most 256.
// Scores are scale * q.k; softmax and every sum run in fp32.

#define FLASH_BQ 16 // query rows per prefill tile
#define FLASH_BK 32 // key positions per K/V tile

#define FLASH_THREADS 128                        // flash_prefill's blockDim.x
#define FLASH_GROUP (FLASH_THREADS / FLASH_BQ)   // threads per query row, adjacent lanes of a warp
#define FLASH_KEYS (FLASH_BK / FLASH_GROUP)      // scores per thread in a tile

static_assert(FLASH_THREADS == FLASH_BQ * FLASH_GROUP, "a whole number of threads per query row");
static_assert(FLASH_GROUP == 8 && FLASH_BK == FLASH_KEYS * FLASH_GROUP, "row groups are 8 lanes");

// The bf16 pair at p (an even element offset), as one 4-byte load where the cache is 4-byte
// aligned and as two 2-byte loads where it is not.
__device__ unsigned int load_pair(const __nv_bfloat16 *p, bool aligned) {
	if (aligned) {
		return *(const unsigned int *)p;
	}
	const unsigned short *s = (const unsigned short *)p;
	return (unsigned int)s[0] | (unsigned int)s[1] << 16;
}

// The prefill tile's work with PAIRS bf16 pairs of hd accumulated per thread (hd <= 16*PAIRS),
// so that small heads do not pay for the registers and loop trips of hd = 256.
//
// Thread layout: query row qi = tid / 8 of the tile and c = tid % 8, so a row's 8 threads are
// adjacent lanes of one warp and its softmax statistics need only shuffles (there is no shared
// memory left over for them at hd = 256). For scores, thread (qi, c) takes the keys c + 8*i of
// the K tile; for P.V it accumulates the pairs c + 8*j of hd, fetching each probability from the
// lane that computed it.
template <int PAIRS>
__device__ void flash_tile(float *out, __nv_bfloat16 *out16, const float *qs, const unsigned int *ks, const unsigned int *vs,
		const __nv_bfloat16 *k_cache, const __nv_bfloat16 *v_cache, const int *table, int row0, int nrows,
		int n, int n_max, int block_size, int heads, int kv_heads, int kvh, int hd, float scale) {
	int tid = threadIdx.x, lane = tid & 31;
	int qi = tid / FLASH_GROUP, c = tid % FLASH_GROUP;
	int H = hd / 2; // bf16 pairs in a head row
	// Each lane starts its dot products at a different pair, so that the 32 lanes of a warp read
	// 32 different banks of the K tile (and of Q, in two half-warp phases) when hd is a multiple
	// of 64.
	int rot = (c + FLASH_GROUP * (qi & 3)) % H;
	size_t stride = (size_t)kv_heads * hd;
	const __nv_bfloat16 *kb = k_cache + (size_t)kvh * hd, *vb = v_cache + (size_t)kvh * hd;
	bool vec = (hd & 7) == 0 && (((unsigned long long)k_cache | (unsigned long long)v_cache) & 15) == 0;
	bool aligned = (((unsigned long long)k_cache | (unsigned long long)v_cache) & 3) == 0;
	const float *qrow = qs + qi * hd;

	float m = NEG_INF, l = 0.0f; // this row's running max and sum, the same in its 8 threads
	float acc[PAIRS][2];
#pragma unroll
	for (int j = 0; j < PAIRS; j++) {
		acc[j][0] = acc[j][1] = 0.0f;
	}
	for (int k0 = 0; k0 < n_max; k0 += FLASH_BK) {
		__syncthreads(); // Q is stored, and the previous K and V tiles are read
		// Positions past the longest row are zeros: they are masked for every row, and a zero
		// times a zero probability stays zero where stale shared memory might be NaN.
		if (vec) {
			int U = hd / 8; // 16-byte pieces of a head row
			for (int i = tid; i < FLASH_BK * U; i += FLASH_THREADS) {
				int p = k0 + i / U, part = i % U;
				uint4 kw = make_uint4(0, 0, 0, 0), vw = kw;
				if (p < n_max) {
					size_t at = ((size_t)table[p / block_size] * block_size + p % block_size) * stride + part * 8;
					kw = *(const uint4 *)(kb + at);
					vw = *(const uint4 *)(vb + at);
				}
				((uint4 *)ks)[i] = kw;
				((uint4 *)vs)[i] = vw;
			}
		} else {
			for (int i = tid; i < FLASH_BK * H; i += FLASH_THREADS) {
				int p = k0 + i / H, part = i % H;
				unsigned int kw = 0, vw = 0;
				if (p < n_max) {
					size_t at = ((size_t)table[p / block_size] * block_size + p % block_size) * stride + part * 2;
					kw = load_pair(kb + at, aligned);
					vw = load_pair(vb + at, aligned);
				}
				((unsigned int *)ks)[i] = kw;
				((unsigned int *)vs)[i] = vw;
			}
		}
		__syncthreads();

		float s[FLASH_KEYS];
#pragma unroll
		for (int i = 0; i < FLASH_KEYS; i++) {
			s[i] = 0.0f;
		}
		int d2 = rot;
		for (int it = 0; it < H; it++) {
			float2 qv = *(const float2 *)(qrow + 2 * d2);
#pragma unroll
			for (int i = 0; i < FLASH_KEYS; i++) {
				unsigned int w = ks[(c + FLASH_GROUP * i) * H + d2];
				s[i] += qv.x * bf16_lo(w) + qv.y * bf16_hi(w);
			}
			if (++d2 == H) {
				d2 = 0;
			}
		}
		// Online softmax over the row's unmasked positions of this tile.
		float tmax = NEG_INF;
#pragma unroll
		for (int i = 0; i < FLASH_KEYS; i++) {
			s[i] = k0 + c + FLASH_GROUP * i < n ? s[i] * scale : NEG_INF;
			tmax = fmaxf(tmax, s[i]);
		}
		for (int o = FLASH_GROUP / 2; o > 0; o >>= 1) {
			tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, o));
		}
		float mn = fmaxf(m, tmax);
		// Nothing seen yet (mn = -inf) must not become exp(-inf - -inf) = NaN.
		float corr = mn == NEG_INF ? 1.0f : expf(m - mn), psum = 0.0f;
		float pr[FLASH_KEYS];
#pragma unroll
		for (int i = 0; i < FLASH_KEYS; i++) {
			pr[i] = mn == NEG_INF ? 0.0f : expf(s[i] - mn);
			psum += pr[i];
		}
		for (int o = FLASH_GROUP / 2; o > 0; o >>= 1) {
			psum += __shfl_xor_sync(0xffffffffu, psum, o);
		}
		l = l * corr + psum;
		m = mn;
#pragma unroll
		for (int j = 0; j < PAIRS; j++) {
			acc[j][0] *= corr;
			acc[j][1] *= corr;
		}
		// Key kj = FLASH_GROUP*i + kk's probability is pr[i] of the row's lane kk. Unrolled over
		// i only (pr stays in registers), not over all FLASH_BK keys: at hd = 256 the loads of
		// V that a full unroll hoists took every register and spilled (NVRTC 13, sm_90).
#pragma unroll
		for (int i = 0; i < FLASH_KEYS; i++) {
#pragma unroll 2
			for (int kk = 0; kk < FLASH_GROUP; kk++) {
				float pk = __shfl_sync(0xffffffffu, pr[i], (lane & ~(FLASH_GROUP - 1)) | kk);
				const unsigned int *vrow = vs + (FLASH_GROUP * i + kk) * H;
#pragma unroll
				for (int j = 0; j < PAIRS; j++) {
					int e = c + FLASH_GROUP * j;
					if (e < H) {
						unsigned int w = vrow[e];
						acc[j][0] += pk * bf16_lo(w);
						acc[j][1] += pk * bf16_hi(w);
					}
				}
			}
		}
	}
	if (qi < nrows) {
		size_t at = ((size_t)(row0 + qi) * heads + blockIdx.y) * hd;
#pragma unroll
		for (int j = 0; j < PAIRS; j++) {
			int e = c + FLASH_GROUP * j;
			if (e < H) {
				// l > 0 whenever the row sees a position; a row that sees none gets zeros.
				float y0 = l > 0.0f ? acc[j][0] / l : 0.0f, y1 = l > 0.0f ? acc[j][1] / l : 0.0f;
				out[at + 2 * e] = y0;
				out[at + 2 * e + 1] = y1;
				if (out16) {
					out16[at + 2 * e] = __float2bfloat16(y0);
					out16[at + 2 * e + 1] = __float2bfloat16(y1);
				}
			}
		}
	}
}

// Prefill: tile t is batch rows tile_row0[t] .. tile_row0[t]+tile_rows[t]-1 (at most FLASH_BQ,
// all of one sequence, so they share row_table[tile_row0[t]]), head blockIdx.y. The Q tile
// stays in shared memory while K and V tiles of FLASH_BK positions stream through it up to the
// tile's longest row, each row masked by its own row_len. Grid (num_tiles, heads); blockDim.x =
// FLASH_THREADS (128); dynamic shared memory hd * (FLASH_BQ*4 + 2*FLASH_BK*2) bytes: the Q tile
// in fp32, then the K and V tiles in bf16 (48 KiB at hd = 256, and no static shared memory).
// Where out16 is non-null it also gets out in bf16 (the o projection's GEMM input).
extern "C" __global__ void __launch_bounds__(FLASH_THREADS) flash_prefill(float *out, __nv_bfloat16 *out16, const float *q,
		const __nv_bfloat16 *k_cache, const __nv_bfloat16 *v_cache, const int *tile_row0, const int *tile_rows,
		const int *row_len, const int *row_table, const int *blocks, int block_size, int heads, int kv_heads, int hd,
		float scale) {
	pdl_wait();
	DYNAMIC_SHARED(unsigned char, flash_smem);
	float *qs = (float *)flash_smem;                                           // [FLASH_BQ][hd]
	unsigned int *ks = (unsigned int *)(flash_smem + FLASH_BQ * hd * 4);       // [FLASH_BK][hd/2] pairs
	unsigned int *vs = (unsigned int *)(flash_smem + (FLASH_BQ * 4 + FLASH_BK * 2) * hd);
	int t = blockIdx.x, h = blockIdx.y;
	int row0 = tile_row0[t], nrows = min(tile_rows[t], FLASH_BQ);
	if (nrows <= 0) {
		return;
	}
	int n_max = 0;
	for (int i = 0; i < nrows; i++) {
		n_max = max(n_max, row_len[row0 + i]);
	}
	int qi = threadIdx.x / FLASH_GROUP;
	int n = qi < nrows ? row_len[row0 + qi] : 0; // rows past the tile see nothing
	for (int i = threadIdx.x; i < FLASH_BQ * hd; i += FLASH_THREADS) {
		int rr = i / hd;
		qs[i] = rr < nrows ? q[((size_t)(row0 + rr) * heads + h) * hd + i % hd] : 0.0f;
	}
	const int *table = blocks + row_table[row0];
	int kvh = h / (heads / kv_heads);
	if (hd <= 64) {
		flash_tile<4>(out, out16, qs, ks, vs, k_cache, v_cache, table, row0, nrows, n, n_max, block_size, heads, kv_heads, kvh, hd, scale);
	} else if (hd <= 128) {
		flash_tile<8>(out, out16, qs, ks, vs, k_cache, v_cache, table, row0, nrows, n, n_max, block_size, heads, kv_heads, kvh, hd, scale);
	} else {
		flash_tile<16>(out, out16, qs, ks, vs, k_cache, v_cache, table, row0, nrows, n, n_max, block_size, heads, kv_heads, kvh, hd, scale);
	}
}

// Decode, one split of the context: decode row i (batch row dec_rows[i]), head blockIdx.y,
// positions [s*L, min((s+1)*L, row_len)) for s = blockIdx.z and L = ceil(row_len / splits):
// each row's context in splits equal parts (the backend picks splits, host.DecodeSplits), with
// an online softmax. The part's accumulator acc[d] = sum_p exp(score_p - m) * v_p[d] stays
// unnormalised, with its (m, l) beside it: part_acc[((i*heads + h)*splits + s)*hd + d] and
// part_ml[((i*heads + h)*splits + s)*2 + {0, 1}], splits = gridDim.z. An empty split writes
// m = -inf, l = 0 and acc = 0; the last of a (row, head)'s splits to finish, by count[i*heads +
// h] (zero before the launch, and again after it), combines them into out (decode_combine), so
// that a split context needs no second kernel. With one split the block writes out itself
// (part_acc, part_ml and count are unused). Where qkv is non-null (a step of decode rows alone),
// the block first does rope_write_kv's work for its row and head (decode_rope: qkv, qkv_delta,
// pos, cos_sin and slots as rope_write_kv takes them) and q is unused: the rotation needs no
// kernel of its own. Grid (n_dec, heads, splits); blockDim.x DEC_THREADS;
// dynamic shared memory (DEC_THREADS/32) * (hd + 2) floats. One kernel per size of head,
// decode_split_hdN for hd <= N, so that each is compiled for its own lanes per position and
// none pays the registers of another.
//
// A lane holds 8 values of hd, read as one 16-byte load of K and one of V: LP lanes (a power of
// two, LP*8 >= hd) hold a position's head, so a warp reads G = 32/LP positions a load, N loads
// deep, U = N*G consecutive positions a run, every warps*U-th run. Memory-level parallelism is
// what streams the cache (Nsight Compute on the H100: with 4-byte loads this kernel was
// issue-bound at 1.5 TB/s). Each group of LP lanes keeps its own (m, l) and accumulator; the
// groups of a warp merge by shuffles, the warps in shared memory. The block table is read one
// run ahead, lane u holding the slot of the run's position u.
//
// Registers bound how many blocks an SM runs: at 94 registers (four loads deep, one kernel for
// every head size) it held 5 blocks, so batch 32's 1,024 blocks took 1.55 waves on an H100's
// 132 SMs (Nsight Compute). DEC_BLOCKS blocks an SM hold a batch of 32 with 32 heads in one
// wave; at that bound ptxas keeps three loads deep in registers, and four would spill
// (kernels_test.go's TestKernelResources checks for spills).
#define DEC_N 3 // loads of K (and of V) a lane keeps in flight
#define DEC_THREADS 128
#define DEC_BLOCKS 8

// The 8 bf16 values at p, as one 16-byte load where full (aligned, all 8 inside hd) and value
// by value otherwise (the first n, zeros after). Unrolled, so that w stays in registers.
__device__ __forceinline__ uint4 load8(const __nv_bfloat16 *p, bool full, int n) {
	if (full) {
		return *(const uint4 *)p;
	}
	const unsigned short *s = (const unsigned short *)p;
	unsigned int w[4];
#pragma unroll
	for (int i = 0; i < 4; i++) {
		unsigned int lo = 2 * i < n ? s[2 * i] : 0u, hi = 2 * i + 1 < n ? s[2 * i + 1] : 0u;
		w[i] = lo | hi << 16;
	}
	return make_uint4(w[0], w[1], w[2], w[3]);
}

// merge folds the softmax state (m2, l2, acc2) into (m, l, acc); -inf marks an empty state.
__device__ __forceinline__ void merge(float &m, float &l, float acc[8], float m2, float l2, const float acc2[8]) {
	float big = fmaxf(m, m2);
	if (big == NEG_INF) {
		return; // both empty
	}
	float c1 = m == NEG_INF ? 0.0f : expf(m - big), c2 = m2 == NEG_INF ? 0.0f : expf(m2 - big);
	l = l * c1 + l2 * c2;
#pragma unroll
	for (int e = 0; e < 8; e++) {
		acc[e] = acc[e] * c1 + acc2[e] * c2;
	}
	m = big;
}

template <int LP>
__device__ __forceinline__ void decode_run(float *sh, const float *qr, const __nv_bfloat16 *k_cache,
		const __nv_bfloat16 *v_cache, const int *table, int block_size, size_t stride, int kvh, int hd,
		float scale, long long start, int end) {
	constexpr int G = 32 / LP, N = G * DEC_N <= 32 ? DEC_N : 32 / G, U = N * G;
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
	int grp = lane / LP, d0 = (lane % LP) * 8;
	bool full = (hd & 7) == 0 && d0 < hd && (((unsigned long long)k_cache | (unsigned long long)v_cache) & 15) == 0;
	float qv[8], acc[8] = {};
#pragma unroll
	for (int e = 0; e < 8; e++) {
		qv[e] = d0 + e < hd ? qr[d0 + e] : 0.0f;
	}
	auto slot_of = [&](long long run) {
		long long p = run + lane;
		return lane < U && p < end ? table[p / block_size] * block_size + (int)(p % block_size) : -1;
	};
	float m = NEG_INF, l = 0.0f;
	long long run = start + (long long)warp * U;
	int slot = slot_of(run);
	for (; run < end; run += (long long)warps * U) {
		uint4 kw[N], vw[N];
#pragma unroll
		for (int n = 0; n < N; n++) {
			int su = __shfl_sync(0xffffffffu, slot, n * G + grp);
			size_t at = (size_t)max(su, 0) * stride + (size_t)kvh * hd + d0;
			bool ok = su >= 0 && d0 < hd;
			kw[n] = ok ? load8(k_cache + at, full, hd - d0) : make_uint4(0, 0, 0, 0);
			vw[n] = ok ? load8(v_cache + at, full, hd - d0) : make_uint4(0, 0, 0, 0);
		}
		slot = slot_of(run + (long long)warps * U); // the next run's, while these loads fly
		float s[N], mn = m;
#pragma unroll
		for (int n = 0; n < N; n++) {
			float k[8], d = 0.0f;
			unpack8(k, kw[n]);
#pragma unroll
			for (int e = 0; e < 8; e++) {
				d += qv[e] * k[e];
			}
#pragma unroll
			for (int o = LP / 2; o > 0; o >>= 1) {
				d += __shfl_xor_sync(0xffffffffu, d, o);
			}
			s[n] = run + n * G + grp < end ? d * scale : NEG_INF;
			mn = fmaxf(mn, s[n]);
		}
		if (mn == NEG_INF) {
			continue; // none of this group's positions is in range (it has none to come either)
		}
		float corr = expf(m - mn); // 0 while m is -inf
		l *= corr;
#pragma unroll
		for (int e = 0; e < 8; e++) {
			acc[e] *= corr;
		}
#pragma unroll
		for (int n = 0; n < N; n++) {
			float pe = expf(s[n] - mn), v[8];
			unpack8(v, vw[n]);
			l += pe;
#pragma unroll
			for (int e = 0; e < 8; e++) {
				acc[e] += pe * v[e];
			}
		}
		m = mn;
	}
	// The warp's groups merge into the first (lanes 0..LP-1).
#pragma unroll
	for (int o = LP; o < 32; o <<= 1) {
		float m2 = __shfl_xor_sync(0xffffffffu, m, o), l2 = __shfl_xor_sync(0xffffffffu, l, o), acc2[8];
#pragma unroll
		for (int e = 0; e < 8; e++) {
			acc2[e] = __shfl_xor_sync(0xffffffffu, acc[e], o);
		}
		merge(m, l, acc, m2, l2, acc2);
	}
	float *mine = sh + warp * (hd + 2); // this warp's m, l, acc[hd]
	if (lane == 0) {
		mine[0] = m;
		mine[1] = l;
	}
	if (lane < LP) {
#pragma unroll
		for (int e = 0; e < 8; e++) {
			if (d0 + e < hd) {
				mine[2 + d0 + e] = acc[e];
			}
		}
	}
}

#define DECODE_SPLIT_PARAMS                                                                                   \
	float *part_acc, float *part_ml, int *count, float *out, __nv_bfloat16 *out16, const float *q,                 \
		__nv_bfloat16 *k_cache, __nv_bfloat16 *v_cache, const int *dec_rows, const int *row_len,                      \
		const int *row_table, const int *blocks, int block_size, int heads, int kv_heads, int hd, float scale,       \
		const float *qkv, const float *qkv_delta, const int *pos, const float *cos_sin, const int *slots
#define DECODE_SPLIT_ARGS                                                                                      \
	part_acc, part_ml, count, out, out16, q, k_cache, v_cache, dec_rows, row_len, row_table, blocks, block_size, \
		heads, kv_heads, hd, scale, qkv, qkv_delta, pos, cos_sin, slots

// decode_rope is rope_write_kv's work for decode_split's block (decode row r, head h, the split
// holding positions [first, end) of len): head h of q rotated into qs (shared memory, for the
// block's loop), and, if the split holds the new position len-1, the row's k of head kvh
// rotated and its v written to the row's slot of the caches. Where heads share a KV head (GQA)
// each of their blocks writes the same values: each then reads its own write in its loop, and no
// block reads a position another one has still to write. The caller's barrier after it lets the
// block's threads see qs and the slot.
__device__ NOINLINE void decode_rope(float *qs, __nv_bfloat16 *k_cache, __nv_bfloat16 *v_cache, const float *qkv,
		const float *delta, const int *pos, const float *cos_sin, const int *slots, int r, int h, int kvh, int heads,
		int kv_heads, int hd, bool holds_new) {
	int half = hd / 2;
	size_t base = (size_t)r * (heads + 2 * kv_heads) * hd;
	const float *row = qkv + base, *drow = delta ? delta + base : nullptr;
	const float *cs = cos_sin + (size_t)pos[r] * hd;
	size_t kat = (size_t)(heads + kvh) * hd, vat = (size_t)(heads + kv_heads + kvh) * hd;
	size_t slot = (size_t)slots[r] * kv_heads * hd + (size_t)kvh * hd;
	for (int t = threadIdx.x; t < half; t += blockDim.x) {
		const float c = cs[t], s = cs[half + t];
		const float2 qr = rope_pair(row, drow, (size_t)h * hd, t, half, c, s);
		qs[t] = qr.x;
		qs[half + t] = qr.y;
		if (holds_new) {
			const float2 kr = rope_pair(row, drow, kat, t, half, c, s);
			k_cache[slot + t] = __float2bfloat16(kr.x);
			k_cache[slot + half + t] = __float2bfloat16(kr.y);
			v_cache[slot + t] = __float2bfloat16(qkv_at(row, drow, vat + t));
			v_cache[slot + half + t] = __float2bfloat16(qkv_at(row, drow, vat + half + t));
		}
	}
}

// The splits of decode row i's head h combined (decode_split's last split to finish): out[(r*heads
// + h)*hd + d] = sum_s acc_s[d] * exp(m_s - M) / sum_s l_s * exp(m_s - M), M the largest m_s, r =
// dec_rows[i], skipping empty splits (m_s = -inf), in split order (the result does not depend on
// which block came last); a row with no position at all gets zeros; where out16 is non-null it
// also gets out in bf16 (the o projection's GEMM input). The parts are other blocks' writes: read
// from L2 (__ldcg), past this SM's L1. Not inlined: inlined, it made ptxas spill decode_split's
// loop at sm_90's cap of 64 registers (NVRTC 11.8).
__device__ NOINLINE void decode_combine(float *out, __nv_bfloat16 *out16, const float *part_acc, const float *part_ml, int r,
		int i, int h, int heads, int hd, int splits) {
	size_t part = ((size_t)i * heads + h) * splits;
	const float *ml = part_ml + part * 2, *pa = part_acc + part * hd;
	float big = NEG_INF;
	for (int s = 0; s < splits; s++) {
		big = fmaxf(big, __ldcg(ml + 2 * s));
	}
	float total = 0.0f;
	for (int s = 0; s < splits; s++) {
		float m = __ldcg(ml + 2 * s);
		if (m != NEG_INF) {
			total += __ldcg(ml + 2 * s + 1) * expf(m - big);
		}
	}
	size_t at = ((size_t)r * heads + h) * hd;
	for (int d = threadIdx.x; d < hd; d += blockDim.x) {
		float sum = 0.0f;
		for (int s = 0; s < splits; s++) {
			float m = __ldcg(ml + 2 * s);
			if (m != NEG_INF) {
				sum += __ldcg(pa + (size_t)s * hd + d) * expf(m - big);
			}
		}
		float y = total > 0.0f ? sum / total : 0.0f;
		out[at + d] = y;
		if (out16) {
			out16[at + d] = __float2bfloat16(y);
		}
	}
}

template <int LP>
__device__ __forceinline__ void decode_split(DECODE_SPLIT_PARAMS) {
	int i = blockIdx.x, h = blockIdx.y, sp = blockIdx.z;
	int r = dec_rows[i];
	int kvh = h / (heads / kv_heads);
	int warps = blockDim.x >> 5;
	const float *qr = q + ((size_t)r * heads + h) * hd;
	int len = row_len[r];
	int each = (int)(((unsigned)len + gridDim.z - 1) / gridDim.z); // positions a split (unsigned: fewer registers)
	int first = sp * each;
	long long start = first;
	int end = min(len, first + each);
	const int *table = blocks + row_table[r];
	size_t stride = (size_t)kv_heads * hd;
	DYNAMIC_SHARED(float, sh); // per warp: m, l, acc[hd]
	__shared__ float qs[LP * 8]; // the block's q, for every lane's loads
	if (qkv) { // rope_write_kv's work for this block: no kernel of its own
		decode_rope(qs, k_cache, v_cache, qkv, qkv_delta, pos, cos_sin, slots, r, h, kvh, heads, kv_heads, hd,
		            len > 0 && (len - 1) / each == sp);
	} else {
		for (int t = threadIdx.x; t < hd; t += blockDim.x) {
			qs[t] = qr[t];
		}
	}
	__syncthreads();
	decode_run<LP>(sh, qs, k_cache, v_cache, table, block_size, stride, kvh, hd, scale, start, end);
	__syncthreads();
	// A warp that saw no position has m = -inf and adds nothing; if none did, big stays -inf.
	float big = NEG_INF, total = 0.0f;
	for (int w = 0; w < warps; w++) {
		big = fmaxf(big, sh[w * (hd + 2)]);
	}
	for (int w = 0; w < warps; w++) {
		float mw = sh[w * (hd + 2)];
		total += mw == NEG_INF ? 0.0f : sh[w * (hd + 2) + 1] * expf(mw - big);
	}
	bool direct = gridDim.z == 1;
	size_t part = ((size_t)i * heads + h) * gridDim.z + sp, at = ((size_t)r * heads + h) * hd;
	for (int d = threadIdx.x; d < hd; d += blockDim.x) {
		float sum = 0.0f;
		for (int w = 0; w < warps; w++) {
			float mw = sh[w * (hd + 2)];
			if (mw != NEG_INF) {
				sum += sh[w * (hd + 2) + 2 + d] * expf(mw - big);
			}
		}
		if (!direct) {
			part_acc[part * hd + d] = sum;
			continue;
		}
		float y = total > 0.0f ? sum / total : 0.0f;
		out[at + d] = y;
		if (out16) {
			out16[at + d] = __float2bfloat16(y);
		}
	}
	if (direct) {
		return;
	}
	__shared__ int last;
	if (threadIdx.x == 0) {
		part_ml[part * 2] = big;
		part_ml[part * 2 + 1] = total;
	}
	__threadfence(); // the part is visible before the count says so
	__syncthreads();
	int *done = count + (size_t)i * heads + h;
	if (threadIdx.x == 0) {
		last = atomicAdd(done, 1) == (int)gridDim.z - 1;
	}
	__syncthreads();
	if (!last) {
		return;
	}
	__threadfence(); // every split's part is visible to this block's reads
	decode_combine(out, out16, part_acc, part_ml, r, i, h, heads, hd, gridDim.z);
	if (threadIdx.x == 0) {
		*done = 0; // for the next launch: every split has counted
	}
}

extern "C" __global__ void __launch_bounds__(DEC_THREADS, DEC_BLOCKS) decode_split_hd16(DECODE_SPLIT_PARAMS) {
	pdl_wait();
	decode_split<2>(DECODE_SPLIT_ARGS);
}
extern "C" __global__ void __launch_bounds__(DEC_THREADS, DEC_BLOCKS) decode_split_hd32(DECODE_SPLIT_PARAMS) {
	pdl_wait();
	decode_split<4>(DECODE_SPLIT_ARGS);
}
extern "C" __global__ void __launch_bounds__(DEC_THREADS, DEC_BLOCKS) decode_split_hd64(DECODE_SPLIT_PARAMS) {
	pdl_wait();
	decode_split<8>(DECODE_SPLIT_ARGS);
}
extern "C" __global__ void __launch_bounds__(DEC_THREADS, DEC_BLOCKS) decode_split_hd128(DECODE_SPLIT_PARAMS) {
	pdl_wait();
	decode_split<16>(DECODE_SPLIT_ARGS);
}
extern "C" __global__ void __launch_bounds__(DEC_THREADS, DEC_BLOCKS) decode_split_hd256(DECODE_SPLIT_PARAMS) {
	pdl_wait();
	decode_split<32>(DECODE_SPLIT_ARGS);
}
