// Causal attention with grouped KV heads over the paged bf16 cache, for any mix of prefill and
// decode rows. Each query row is described by how many context positions it sees and where its
// sequence's block table starts; one block computes one (row, head) with online softmax, each
// warp walking every warps-th position and the warps merged at the end.
//
// This is the generic kernel that every shape can use. The flash-style tiled prefill kernel and
// the split-context decode kernel are separate work (the GPU performance issue).
#include <cuda_bf16.h>

#define NEG_INF __int_as_float(0xff800000) // NVRTC has no math.h and so no INFINITY

#define MAX_PER_LANE 8 // head_dim up to 256

__device__ float warp_sum(float v) {
	for (int o = 16; o > 0; o >>= 1) {
		v += __shfl_xor_sync(0xffffffffu, v, o);
	}
	return v;
}

// out [rows, heads*hd] (bf16, the o_proj input) from q [rows, heads*hd] (fp32). Row r sees
// positions 0..row_len[r]-1 of its sequence, whose block table is
// blocks[row_table[r] .. ]: position p lives in slot blocks[row_table[r] + p/block_size] *
// block_size + p%block_size. Grid (rows, heads); blockDim.x a multiple of 32; dynamic shared
// memory (blockDim.x/32) * (hd + 2) floats.
extern "C" __global__ void paged_attention(__nv_bfloat16 *out, const float *q, const __nv_bfloat16 *k_cache,
		const __nv_bfloat16 *v_cache, const int *row_len, const int *row_table, const int *blocks, int block_size,
		int heads, int kv_heads, int hd, float scale) {
	int r = blockIdx.x, h = blockIdx.y;
	int kvh = h / (heads / kv_heads);
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
	int per = (hd + 31) / 32;
	const float *qr = q + ((size_t)r * heads + h) * hd;
	float qv[MAX_PER_LANE], acc[MAX_PER_LANE];
	for (int j = 0; j < MAX_PER_LANE; j++) {
		int d = lane + 32 * j;
		qv[j] = (j < per && d < hd) ? qr[d] * scale : 0.0f;
		acc[j] = 0.0f;
	}
	float m = NEG_INF, l = 0.0f;
	int n = row_len[r];
	const int *table = blocks + row_table[r];
	size_t stride = (size_t)kv_heads * hd;
	for (int p = warp; p < n; p += warps) {
		size_t slot = (size_t)table[p / block_size] * block_size + p % block_size;
		const __nv_bfloat16 *kp = k_cache + slot * stride + (size_t)kvh * hd;
		const __nv_bfloat16 *vp = v_cache + slot * stride + (size_t)kvh * hd;
		float s = 0.0f;
		for (int j = 0; j < per; j++) {
			int d = lane + 32 * j;
			if (d < hd) {
				s += qv[j] * __bfloat162float(kp[d]);
			}
		}
		s = warp_sum(s);
		float mn = fmaxf(m, s);
		float corr = expf(m - mn), e = expf(s - mn);
		l = l * corr + e;
		for (int j = 0; j < per; j++) {
			int d = lane + 32 * j;
			acc[j] = acc[j] * corr + (d < hd ? e * __bfloat162float(vp[d]) : 0.0f);
		}
		m = mn;
	}
	extern __shared__ float sh[]; // per warp: m, l, acc[hd]
	float *mine = sh + warp * (hd + 2);
	if (lane == 0) {
		mine[0] = m;
		mine[1] = l;
	}
	for (int j = 0; j < per; j++) {
		int d = lane + 32 * j;
		if (d < hd) {
			mine[2 + d] = acc[j];
		}
	}
	__syncthreads();
	float big = NEG_INF;
	for (int w = 0; w < warps; w++) {
		big = fmaxf(big, sh[w * (hd + 2)]);
	}
	float total = 0.0f;
	for (int w = 0; w < warps; w++) {
		float mw = sh[w * (hd + 2)];
		total += mw == NEG_INF ? 0.0f : sh[w * (hd + 2) + 1] * expf(mw - big);
	}
	__nv_bfloat16 *o = out + ((size_t)r * heads + h) * hd;
	for (int d = threadIdx.x; d < hd; d += blockDim.x) {
		float sum = 0.0f;
		for (int w = 0; w < warps; w++) {
			float mw = sh[w * (hd + 2)];
			if (mw != NEG_INF) {
				sum += sh[w * (hd + 2) + 2 + d] * expf(mw - big);
			}
		}
		o[d] = __float2bfloat16(sum / total);
	}
}
