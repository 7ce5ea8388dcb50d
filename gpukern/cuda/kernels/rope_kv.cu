// RoPE fused with writing K and V into the paged cache.

// Rotates q [rows, heads*hd] and k [rows, kv_heads*hd] in place by each row's position, in
// rotate_half order (pairs i and i+hd/2), with cos_sin [max_pos, hd] holding cos in the first
// half of a row and sin in the second; then stores the rotated k and v [rows, kv_heads*hd] at
// slot slots[r] of the layer's bf16 caches. Grid (rows); blockDim.x threads walk the pairs.
extern "C" __global__ void rope_write_kv(float *q, float *k, const float *v, const int *pos, const float *cos_sin,
		__nv_bfloat16 *k_cache, __nv_bfloat16 *v_cache, const int *slots, int heads, int kv_heads, int hd) {
	int r = blockIdx.x, half = hd / 2;
	const float *cs = cos_sin + (size_t)pos[r] * hd;
	float *qr = q + (size_t)r * heads * hd;
	for (int p = threadIdx.x; p < heads * half; p += blockDim.x) {
		int h = p / half, i = p % half;
		float c = cs[i], s = cs[half + i];
		float a = qr[h * hd + i], b = qr[h * hd + half + i];
		qr[h * hd + i] = a * c - b * s;
		qr[h * hd + half + i] = b * c + a * s;
	}
	float *kr = k + (size_t)r * kv_heads * hd;
	const float *vr = v + (size_t)r * kv_heads * hd;
	size_t slot = (size_t)slots[r] * kv_heads * hd;
	for (int p = threadIdx.x; p < kv_heads * half; p += blockDim.x) {
		int h = p / half, i = p % half;
		float c = cs[i], s = cs[half + i];
		float a = kr[h * hd + i], b = kr[h * hd + half + i];
		float x1 = a * c - b * s, x2 = b * c + a * s;
		kr[h * hd + i] = x1;
		kr[h * hd + half + i] = x2;
		k_cache[slot + h * hd + i] = __float2bfloat16(x1);
		k_cache[slot + h * hd + half + i] = __float2bfloat16(x2);
	}
	for (int i = threadIdx.x; i < kv_heads * hd; i += blockDim.x) {
		v_cache[slot + i] = __float2bfloat16(vr[i]);
	}
}
