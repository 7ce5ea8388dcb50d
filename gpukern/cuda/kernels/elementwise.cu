// Row-wise and elementwise kernels. Types follow gpukern/cuda's layout: activations are fp32
// (the backend converts a GEMM input to bf16 with to_bf16), weights bf16; reductions
// accumulate in fp32.

// Sums v over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ float block_sum(float v) {
	__shared__ float warp_sums[32];
	for (int o = 16; o > 0; o >>= 1) {
		v += __shfl_xor_sync(0xffffffffu, v, o);
	}
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
	__syncthreads(); // warp_sums may still be read by a previous call
	if (lane == 0) {
		warp_sums[warp] = v;
	}
	__syncthreads();
	v = lane < warps ? warp_sums[lane] : 0.0f;
	for (int o = 16; o > 0; o >>= 1) {
		v += __shfl_xor_sync(0xffffffffu, v, o);
	}
	return v;
}

// out[r,:] = table[ids[r],:] as fp32. Grid (ceil(dim/blockDim), rows).
extern "C" __global__ void embedding(float *out, const __nv_bfloat16 *table, const int *ids, int dim) {
	pdl_wait();
	int r = blockIdx.y;
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < dim) {
		out[(size_t)r * dim + i] = __bfloat162float(table[(size_t)ids[r] * dim + i]);
	}
}

// out[r,:] = x[ids[r],:] (fp32 rows; out does not alias x). Grid (ceil(dim/blockDim), rows).
extern "C" __global__ void gather(float *__restrict__ out, const float *__restrict__ x, const int *ids, int dim) {
	pdl_wait();
	int r = blockIdx.y;
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < dim) {
		out[(size_t)r * dim + i] = x[(size_t)ids[r] * dim + i];
	}
}

// out[r,:] = x[r,:] / sqrt(mean(x[r,:]^2) + eps) * w. With a non-null residual, x[r,:] +=
// residual[r,:] (and + delta[r,:] where delta is non-null: a LoRA delta of the projection that
// made the residual, written beside its GEMM) first and is written back (the residual add fused
// in); delta is only given with a residual. out may alias x or residual: a thread reads and
// writes the same elements, every read of residual and delta comes before its writes and
// before block_sum's barriers, so nothing is __restrict__. Where out16 is non-null it also gets
// out in bf16: the input of the GEMM that follows, which then needs no conversion of its own.
// One block per row; blockDim.x a multiple of 32, at most 1024. A row of at most NORM_HELD *
// blockDim.x elements stays in registers, all its loads in flight at once (a decode step has
// few rows, so a row's latency is the kernel's); a longer one is walked twice.
#define NORM_HELD 8

extern "C" __global__ void __launch_bounds__(1024) rmsnorm(float *out, __nv_bfloat16 *out16, float *x, const float *residual,
		const float *delta, const __nv_bfloat16 *w, int dim, float eps) {
	pdl_wait();
	size_t base = (size_t)blockIdx.x * dim;
	float *row = x + base, *o = out + base;
	const float *d = residual ? residual + base : nullptr;
	const float *dd = residual && delta ? delta + base : nullptr;
	float ss = 0.0f;
	if (dim <= NORM_HELD * (int)blockDim.x) {
		float v[NORM_HELD], wv[NORM_HELD];
#pragma unroll
		for (int k = 0; k < NORM_HELD; k++) {
			int i = threadIdx.x + k * blockDim.x;
			v[k] = wv[k] = 0.0f;
			if (i < dim) {
				// residual + delta first: the value the projection's output had when the delta
				// was added to it in place.
				v[k] = row[i];
				if (d) {
					v[k] += dd ? d[i] + dd[i] : d[i];
				}
				wv[k] = __bfloat162float(w[i]);
			}
		}
#pragma unroll
		for (int k = 0; k < NORM_HELD; k++) {
			int i = threadIdx.x + k * blockDim.x;
			if (d && i < dim) {
				row[i] = v[k];
			}
			ss += v[k] * v[k];
		}
		float inv = rsqrtf(block_sum(ss) / dim + eps);
#pragma unroll
		for (int k = 0; k < NORM_HELD; k++) {
			int i = threadIdx.x + k * blockDim.x;
			if (i < dim) {
				float y = v[k] * inv * wv[k];
				o[i] = y;
				if (out16) {
					out16[base + i] = __float2bfloat16(y);
				}
			}
		}
		return;
	}
	for (int i = threadIdx.x; i < dim; i += blockDim.x) {
		float v = row[i];
		if (d) {
			v += dd ? d[i] + dd[i] : d[i];
			row[i] = v;
		}
		ss += v * v;
	}
	float inv = rsqrtf(block_sum(ss) / dim + eps);
	for (int i = threadIdx.x; i < dim; i += blockDim.x) {
		float y = row[i] * inv * __bfloat162float(w[i]);
		o[i] = y;
		if (out16) {
			out16[base + i] = __float2bfloat16(y);
		}
	}
}

// out[r, c] = silu(g) * u with g = gate_up[r, c] and u = gate_up[r, dim + c] over n = rows * dim
// elements of out, with gate_up [rows, 2 * dim] the fused gate and up projections; where delta
// (gate_up's layout: the LoRA delta written beside the GEMM) is non-null, g and u each add its
// element at the same place. out does not alias gate_up or delta. Where out16 is non-null it
// also gets out in bf16 (the down projection's GEMM input).
extern "C" __global__ void silu_mul(float *__restrict__ out, __nv_bfloat16 *__restrict__ out16, const float *__restrict__ gate_up,
		const float *__restrict__ delta, int dim, long long n) {
	pdl_wait();
	for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
		size_t at = (size_t)(i / dim) * 2 * dim + i % dim;
		float g = gate_up[at], u = gate_up[at + dim];
		if (delta) {
			g += delta[at];
			u += delta[at + dim];
		}
		float y = g / (1.0f + expf(-g)) * u;
		out[i] = y;
		if (out16) {
			out16[i] = __float2bfloat16(y);
		}
	}
}

// x[r,:] += bias over rows of dim elements.
extern "C" __global__ void add_bias(float *x, const __nv_bfloat16 *bias, int dim, long long n) {
	pdl_wait();
	for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
		x[i] += __bfloat162float(bias[i % dim]);
	}
}

// out = a + b over n elements (out may alias a or b).
extern "C" __global__ void add(float *out, const float *a, const float *b, long long n) {
	pdl_wait();
	for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
		out[i] = a[i] + b[i];
	}
}

// out = bf16(x) over n elements (the GEMM inputs, computed in fp32).
extern "C" __global__ void to_bf16(__nv_bfloat16 *out, const float *x, long long n) {
	pdl_wait();
	for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
		out[i] = __float2bfloat16(x[i]);
	}
}

// out[i] = bf16(mean + std * sqrt(3) * (2u - 1)), u uniform in [0, 1) from a splitmix64 hash of
// (seed, i): random weights made in place, for benchmarks that need a model's shape only.
extern "C" __global__ void fill_random(__nv_bfloat16 *out, long long n, float mean, float std, unsigned long long seed) {
	pdl_wait();
	for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
		unsigned long long z = seed * 0x9e3779b97f4a7c15ull + (unsigned long long)i;
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		z ^= z >> 31;
		float u = (float)(z >> 40) * (1.0f / 16777216.0f);
		out[i] = __float2bfloat16(mean + std * 1.7320508f * (2.0f * u - 1.0f));
	}
}
