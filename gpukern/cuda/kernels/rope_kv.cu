// RoPE fused with writing K and V into the paged cache.

// Reads the fused projections qkv [rows, (heads + 2*kv_heads)*hd] (a row holds q, then k, then
// v) and rotates q and k by each row's position, in rotate_half order (pairs i and i+hd/2),
// with cos_sin [max_pos, hd] holding cos in the first half of a row and sin in the second. The
// rotated q goes to q [rows, heads*hd]; the rotated k and v go to slot slots[r] of the layer's
// bf16 caches. Where delta is non-null (qkv's layout: the LoRA delta written beside the qkv
// GEMM), every value read is qkv[i] + delta[i]. qkv and delta are only read.
//
// Grid (rows, ceil(items / blockDim.x)), items = (heads + 2*kv_heads) * hd/2: a thread takes one
// item of its row, a pair of q, then of k, then two consecutive values of v. A decode step has
// few rows: one item per thread spreads them over the GPU with a single round of loads each.
extern "C" __global__ void rope_write_kv(float *q, const float *qkv, const float *delta, const int *pos, const float *cos_sin,
		__nv_bfloat16 *k_cache, __nv_bfloat16 *v_cache, const int *slots, int heads, int kv_heads, int hd) {
	pdl_wait();
	int r = blockIdx.x, half = hd / 2;
	int t = blockIdx.y * blockDim.x + threadIdx.x, qp = heads * half, kp = kv_heads * half;
	if (t >= qp + 2 * kp) {
		return;
	}
	size_t base = (size_t)r * (heads + 2 * kv_heads) * hd;
	const float *row = qkv + base, *drow = delta ? delta + base : nullptr;
	size_t slot = (size_t)slots[r] * kv_heads * hd;
	if (t >= qp + kp) {
		int u = 2 * (t - qp - kp); // of v
		size_t at = (size_t)(heads + kv_heads) * hd + u;
		v_cache[slot + u] = __float2bfloat16(qkv_at(row, drow, at));
		v_cache[slot + u + 1] = __float2bfloat16(qkv_at(row, drow, at + 1));
		return;
	}
	bool isq = t < qp;
	int p = isq ? t : t - qp, h = p / half, i = p % half;
	const float *cs = cos_sin + (size_t)pos[r] * hd;
	float c = cs[i], s = cs[half + i];
	const float2 xy = rope_pair(row, drow, (size_t)(isq ? h : heads + h) * hd, i, half, c, s);
	if (isq) {
		float *qo = q + ((size_t)r * heads + h) * hd;
		qo[i] = xy.x;
		qo[half + i] = xy.y;
		return;
	}
	__nv_bfloat16 *ko = k_cache + slot + (size_t)h * hd;
	ko[i] = __float2bfloat16(xy.x);
	ko[half + i] = __float2bfloat16(xy.y);
}
