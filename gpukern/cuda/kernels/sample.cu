// Sampling on the device, so that only token ids cross to the host.

// *best and *arg get the largest of row[0..vocab) above -inf and the first index holding it
// (-inf and 0 when there is none, as worker/sample's greedy path does), in every thread of the
// block. blockDim.x a multiple of 32, at most 1024.
__device__ void block_argmax(const float *row, int vocab, float *best_out, int *arg_out) {
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
	best = wb[0];
	arg = wa[0];
	for (int w = 1; w < warps; w++) {
		if (wb[w] > best || (wb[w] == best && wa[w] < arg)) {
			best = wb[w];
			arg = wa[w];
		}
	}
	*best_out = best;
	*arg_out = arg;
}

// ids[r] = the argmax of logits[r, :vocab] (block_argmax). One block per row.
extern "C" __global__ void argmax(int *ids, const float *logits, int vocab) {
	pdl_wait();
	float best;
	int arg;
	block_argmax(logits + (size_t)blockIdx.x * vocab, vocab, &best, &arg);
	if (threadIdx.x == 0) {
		ids[blockIdx.x] = arg;
	}
}

// Block-wide reductions for sample_rows. Every thread gets the result, and every thread
// combines the warps' partials in the same order, so a float result is bitwise the same in all
// threads and in every run: the loops that branch on it stay uniform (and __syncthreads legal).
struct SumOp {
	template <typename T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct MinOp {
	template <typename T> __device__ T operator()(T a, T b) const { return b < a ? b : a; }
};
struct MaxOp {
	template <typename T> __device__ T operator()(T a, T b) const { return b > a ? b : a; }
};

template <typename T, typename Op>
__device__ T block_reduce(T v, Op op) {
	__shared__ T part[32];
	// The xor butterfly leaves every lane of the warp the same value (each step adds the same
	// two operands, in either order).
	for (int o = 16; o > 0; o >>= 1) {
		v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
	}
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
	__syncthreads(); // part may still be read by a previous call
	if (lane == 0) {
		part[warp] = v;
	}
	__syncthreads();
	v = part[0];
	for (int w = 1; w < warps; w++) {
		v = op(v, part[w]);
	}
	return v;
}

// Inclusive prefix sum of v over the block in thread order; *total gets the block's sum.
__device__ float block_scan(float v, float *total) {
	__shared__ float wsum[32];
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
	for (int o = 1; o < 32; o <<= 1) {
		float y = __shfl_up_sync(0xffffffffu, v, o);
		if (lane >= o) {
			v += y;
		}
	}
	__syncthreads(); // wsum may still be read by a previous call
	if (lane == 31) {
		wsum[warp] = v;
	}
	__syncthreads();
	float before = 0.0f, all = 0.0f;
	for (int w = 0; w < warps; w++) {
		if (w == warp) {
			before = all;
		}
		all += wsum[w];
	}
	*total = all;
	return before + v;
}

// A monotone map of the non-NaN floats to uint32, -0 and +0 to the same key, so that a
// bisection over keys ends on an exact value.
__device__ unsigned int order_key(float f) {
	unsigned int b = __float_as_uint(f == 0.0f ? 0.0f : f);
	return b & 0x80000000u ? ~b : b | 0x80000000u;
}

// Sampling weight of logit x: w = exp((x - lmax) / temp) in fp32, taken as exactly 1 when x ==
// lmax (so also when lmax = +inf).
__device__ float sample_weight(float x, float temp, float lmax) {
	return x == lmax ? 1.0f : expf((x - lmax) / temp);
}

// The weight of token i if it survives top-k (logit key >= kkey), min-p (w >= wmin) and top-p
// (w's bits >= tbits); 0 for the others and for i past the vocabulary.
__device__ float survivor_weight(const float *row, int i, int vocab, unsigned int kkey, float temp, float best,
		unsigned int tbits, float wmin) {
	if (i >= vocab) {
		return 0.0f;
	}
	float x = row[i];
	if (!(x > NEG_INF) || order_key(x) < kkey) {
		return 0.0f;
	}
	float w = sample_weight(x, temp, best);
	return w > 0.0f && __float_as_uint(w) >= tbits && w >= wmin ? w : 0.0f;
}

// ids[r] = a token drawn from logits[r, :vocab]. params[r, 0..3] = temperature, top_p, min_p, u
// (u uniform in [0, 1), drawn by the host from the request's seeded generator); top_k[r] = 0 is
// off. One block per row; blockDim.x a multiple of 32, at most 1024 (the host uses 1024).
//
// The draw, exactly (gpukern.SampleParams and cpuref's Sample describe the same rule, in the
// order of worker/sample and vLLM: top-k, min-p, then top-p over what is left):
//   A token is valid if its logit is > -inf (so neither -inf nor NaN). lmax = the largest valid
//   logit; argmax = the first index holding lmax, 0 if there is no valid token.
//   1. If !(temperature > 0) (<= 0 or NaN), or there is no valid token: ids[r] = argmax.
//   2. Weights: w_i = exp((logit_i - lmax) / temperature) (fp32 subtraction and division), and
//      exactly 1 where logit_i == lmax. So w is in [0, 1], p_i = w_i / (sum of the kept w) is
//      the softmax of logits/temperature over the kept tokens, and w = 1 at argmax.
//   3. Top-k, if 0 < top_k < vocab and more than top_k tokens are valid: tau = the largest
//      value v such that at least top_k valid logits are >= v (the top_k-th largest logit);
//      keep the valid tokens with logit >= tau (ties with the top_k-th all kept). Otherwise
//      keep every valid token.
//   4. Min-p, if min_p > 0: drop the kept tokens with w_i < min_p (that is p_i < min_p * p_max,
//      as p_max = 1 / sum w). K denotes what is kept, W = sum_{i in K} w_i.
//   5. Top-p, if top_p < 1: t = the largest of the weights w_i (i in K) such that
//      sum_{j in K, w_j >= t} w_j >= top_p * W (an fp32 product); drop from K the tokens with
//      w_i < t. In p terms: keep the most probable tokens until their mass reaches top_p of
//      what min-p left, keeping every token tied with the last one (top_p <= 0 keeps the ties
//      of the maximum). top_p >= 1 or NaN is off.
//   6. The survivors S are the tokens of K with w_i > 0. T = sum_{i in S} w_i; ids[r] = the first
//      index i in S (vocabulary order) whose running sum sum_{j in S, j <= i} w_j > u * T; if
//      rounding leaves none (u close to 1), the last index in S; if S is empty (only when
//      min_p > 1, which worker/sample rejects), argmax.
// Sums here are fp32 in the kernel's own order (a block-wide scan for the running sums), so a
// reference in other precision or order agrees except where u * T or top_p * W falls within
// rounding of a running sum or mass. Thresholds are found by bisection on order_key of the
// logits and on the bits of the weights (non-negative floats order like their bits): one pass
// over the row per step, at most 32 steps each, and the result is always a value in the row.
extern "C" __global__ void __launch_bounds__(1024) sample_rows(int *ids, const float *logits, const float *params, const int *top_k, int vocab) {
	pdl_wait();
	const float *row = logits + (size_t)blockIdx.x * vocab;
	const float *pr = params + (size_t)blockIdx.x * 4;
	float temp = pr[0], top_p = pr[1], min_p = pr[2], u = pr[3];
	int k = top_k[blockIdx.x];
	int tid = threadIdx.x, nt = blockDim.x;

	// The largest valid logit, its first index, and the count of valid tokens.
	float best;
	int arg, nvalid = 0;
	block_argmax(row, vocab, &best, &arg);
	for (int i = tid; i < vocab; i += nt) {
		nvalid += row[i] > NEG_INF;
	}
	nvalid = block_reduce(nvalid, SumOp());
	if (!(temp > 0.0f) || best == NEG_INF) {
		if (tid == 0) {
			ids[blockIdx.x] = arg;
		}
		return;
	}
	// 3. Top-k: kkey = the largest key with at least k valid logits at or above it. The count
	// only changes at keys of logits, so the largest such key is a logit's.
	unsigned int kkey = 0; // every valid logit's key is above 0
	if (k > 0 && k < vocab && nvalid > k) {
		unsigned int lo = order_key(NEG_INF) + 1, hi = order_key(best); // count(lo) = nvalid >= k
		while (lo < hi) {
			unsigned int mid = lo + (hi - lo + 1) / 2;
			int cnt = 0;
			for (int i = tid; i < vocab; i += nt) {
				float x = row[i];
				cnt += x > NEG_INF && order_key(x) >= mid;
			}
			if (block_reduce(cnt, SumOp()) >= k) {
				lo = mid;
			} else {
				hi = mid - 1;
			}
		}
		kkey = lo;
	}

	// 4. Min-p: the kept tokens need w >= wmin.
	float wmin = min_p > 0.0f ? min_p : 0.0f;

	// 5. Top-p: tbits = the largest weight's bits whose mass reaches top_p * W. A mass sums the
	// same terms in the same order with some replaced by zero, and fp32 addition is monotone, so
	// the mass at bits 0 is exactly W and falls as the bits rise.
	unsigned int tbits = 0;
	if (top_p < 1.0f) {
		float mass0 = 0.0f;
		for (int i = tid; i < vocab; i += nt) {
			float x = row[i];
			float w = x > NEG_INF && order_key(x) >= kkey ? sample_weight(x, temp, best) : 0.0f;
			mass0 += w >= wmin ? w : 0.0f;
		}
		float target = top_p * block_reduce(mass0, SumOp());
		unsigned int lo = 0, hi = __float_as_uint(1.0f);
		while (lo < hi) {
			unsigned int mid = lo + (hi - lo + 1) / 2;
			float mass = 0.0f;
			for (int i = tid; i < vocab; i += nt) {
				float x = row[i];
				float w = x > NEG_INF && order_key(x) >= kkey ? sample_weight(x, temp, best) : 0.0f;
				mass += w >= wmin && __float_as_uint(w) >= mid ? w : 0.0f;
			}
			if (block_reduce(mass, SumOp()) >= target) {
				lo = mid;
			} else {
				hi = mid - 1;
			}
		}
		tbits = lo;
	}

	// 6. Survivors have w > 0, w >= wmin and w's bits >= tbits.
	// Running sums go chunk by chunk of nt tokens in vocabulary order: a block scan within the
	// chunk plus the sum of the chunks before. The first pass finds T (and the last survivor),
	// the second the first running sum above u * T, with the very same arithmetic.
	float total = 0.0f;
	int last = -1;
	for (int base = 0; base < vocab; base += nt) {
		int i = base + tid;
		float w = survivor_weight(row, i, vocab, kkey, temp, best, tbits, wmin);
		if (w > 0.0f) {
			last = i;
		}
		float chunk;
		block_scan(w, &chunk);
		total += chunk;
	}
	last = block_reduce(last, MaxOp());
	float target = u * total;
	float run = 0.0f;
	for (int base = 0; base < vocab; base += nt) {
		int i = base + tid;
		float w = survivor_weight(row, i, vocab, kkey, temp, best, tbits, wmin);
		float chunk;
		float incl = run + block_scan(w, &chunk);
		int hit = block_reduce(w > 0.0f && incl > target ? i : vocab, MinOp());
		if (hit < vocab) {
			if (tid == 0) {
				ids[blockIdx.x] = hit;
			}
			return;
		}
		run += chunk;
	}
	if (tid == 0) {
		ids[blockIdx.x] = last >= 0 ? last : arg;
	}
}
