// RoPE fused with writing K and V into the paged cache.

// Reads the fused projections qkv [rows, (heads + 2*kv_heads)*hd] (a row holds q, then k, then
// v) and rotates q and k by each row's position, in rotate_half order (pairs i and i+hd/2),
// with cos_sin [max_pos, hd] holding cos in the first half of a row and sin in the second. The
// rotated q goes to q [rows, heads*hd]; the rotated k and v go to slot slots[r] of the layer's
// bf16 caches. Where delta is non-null (qkv's layout: the LoRA delta written beside the qkv
// GEMM), every value read is qkv[i] + delta[i]. qkv and delta are only read. Grid (rows);
// blockDim.x threads walk the pairs.
__device__ __forceinline__ float qkv_at(const float *x, const float *d, int i) {
	return d ? x[i] + d[i] : x[i];
}

extern "C" __global__ void rope_write_kv(float *q, const float *qkv, const float *delta, const int *pos, const float *cos_sin,
		__nv_bfloat16 *k_cache, __nv_bfloat16 *v_cache, const int *slots, int heads, int kv_heads, int hd) {
	int r = blockIdx.x, half = hd / 2;
	const float *cs = cos_sin + (size_t)pos[r] * hd;
	size_t base = (size_t)r * (heads + 2 * kv_heads) * hd;
	const float *qr = qkv + base, *dq = delta ? delta + base : nullptr;
	const float *kr = qr + heads * hd, *vr = kr + kv_heads * hd;
	const float *dk = dq ? dq + heads * hd : nullptr, *dv = dk ? dk + kv_heads * hd : nullptr;
	float *qo = q + (size_t)r * heads * hd;
	for (int p = threadIdx.x; p < heads * half; p += blockDim.x) {
		int h = p / half, i = p % half;
		float c = cs[i], s = cs[half + i];
		float a = qkv_at(qr, dq, h * hd + i), b = qkv_at(qr, dq, h * hd + half + i);
		qo[h * hd + i] = a * c - b * s;
		qo[h * hd + half + i] = b * c + a * s;
	}
	size_t slot = (size_t)slots[r] * kv_heads * hd;
	for (int p = threadIdx.x; p < kv_heads * half; p += blockDim.x) {
		int h = p / half, i = p % half;
		float c = cs[i], s = cs[half + i];
		float a = qkv_at(kr, dk, h * hd + i), b = qkv_at(kr, dk, h * hd + half + i);
		k_cache[slot + h * hd + i] = __float2bfloat16(a * c - b * s);
		k_cache[slot + h * hd + half + i] = __float2bfloat16(b * c + a * s);
	}
	for (int i = threadIdx.x; i < kv_heads * hd; i += blockDim.x) {
		v_cache[slot + i] = __float2bfloat16(qkv_at(vr, dv, i));
	}
}
