/* The decode kernels for one element type, included once per type by decode_kernels.c, which defines:
 *   T          the element type of every tensor argument (the attention's scores are always fp32)
 *   NAME(f)    f with the type's suffix (f_bf16, f_f32): the exported names
 *   LOAD(x)    one element widened to float;  LOAD8(p)  8 elements widened to a v8f
 *   STORE(f)   a float rounded to T (round to nearest even);  ROUND(f)  STORE then LOAD: where PyTorch's ops in T
 *              round an intermediate result (the identity for fp32)
 * All arithmetic is fp32. */

/* One (row, key/value head) task for head_dim a multiple of 8. Always inlined, so that built with -DGROUP=g
 * -DHEAD_DIM=d (r1lab builds one library per model head shape) it is compiled once more with both as constants:
 * the loops over head_dim unroll and the G x head_dim accumulators stay in registers, 1.6x faster than the
 * run-time-sized copy kept for other shapes. Specialising every common shape in one library instead took 15 s to
 * compile. */
static inline __attribute__((always_inline)) void NAME(attend)(
        const int64_t G, const int64_t D, const int64_t S, const float scale,
        const T *qh, const T *kh, int64_t k_slot_stride, const T *vh, int64_t v_slot_stride,
        const uint8_t *m, T *o, float *scores /* (G, S) */) {
    const int64_t C = D / 8;  /* 8-lane chunks per head */
    v8f qv[G * C], acc[G * C];
    float total[G];
    for (int64_t i = 0; i < G * C; i++) qv[i] = LOAD8(qh + 8 * i) * scale;
    /* scores = q k^T, BLOCK slots at a time; masked slots are scored too and dropped below */
    int64_t s0 = 0;
    for (; s0 + BLOCK <= S; s0 += BLOCK) {
        v8f kf[BLOCK * C];  /* the block's keys in fp32, converted once for all G queries */
        for (int64_t j = 0; j < BLOCK; j++)
            for (int64_t c = 0; c < C; c++) kf[j * C + c] = LOAD8(kh + (s0 + j) * k_slot_stride + 8 * c);
        for (int64_t g = 0; g < G; g++) {
            v8f dot[BLOCK];
            for (int64_t j = 0; j < BLOCK; j++) {
                dot[j] = qv[g * C] * kf[j * C];
                for (int64_t c = 1; c < C; c++) dot[j] += qv[g * C + c] * kf[j * C + c];
            }
            const v8f sums = transpose_sum8(dot);
            memcpy(scores + g * S + s0, &sums, sizeof sums);
        }
    }
    for (; s0 < S; s0++) {  /* the last S % BLOCK slots */
        for (int64_t g = 0; g < G; g++) {
            v8f dot = {0};
            for (int64_t c = 0; c < C; c++) dot += qv[g * C + c] * LOAD8(kh + s0 * k_slot_stride + 8 * c);
            scores[g * S + s0] = hsum8(dot);
        }
    }
    int any = 0;
    for (int64_t s = 0; s < S; s++) any |= m[s];
    if (!any) {
        memset(o, 0, (size_t)(G * D) * sizeof *o);
        return;
    }
    /* softmax weights, 0 on masked slots */
    for (int64_t g = 0; g < G; g++) {
        float *sg = scores + g * S, sum = 0.0f, mx = -3.0e38f;
#pragma omp simd reduction(max : mx)
        for (int64_t s = 0; s < S; s++) mx = m[s] && sg[s] > mx ? sg[s] : mx;
#pragma omp simd reduction(+ : sum)
        for (int64_t s = 0; s < S; s++) {
            float e = m[s] ? exp_clamped(sg[s] - mx) : 0.0f;
            sg[s] = e;
            sum += e;
        }
        total[g] = sum;
    }
    /* out = softmax @ v */
    for (int64_t i = 0; i < G * C; i++) acc[i] = (v8f){0};
    for (int64_t s = 0; s < S; s++) {
        if (!m[s]) continue;
        const T *vs = vh + s * v_slot_stride;
        for (int64_t c = 0; c < C; c++) {
            const v8f x = LOAD8(vs + 8 * c);
            for (int64_t g = 0; g < G; g++) acc[g * C + c] += scores[g * S + s] * x;
        }
    }
    for (int64_t g = 0; g < G; g++) {
        const float inv = 1.0f / total[g];
        for (int64_t c = 0; c < C; c++)
            for (int64_t l = 0; l < 8; l++) o[g * D + 8 * c + l] = STORE(acc[g * C + c][l] * inv);
    }
}

/* Returns 0, or -1 when the shapes exceed what this kernel's stack buffers hold (the caller falls back). */
int NAME(r1lab_decode_attention)(
        const T *q, int64_t q_row_stride,
        const T *k, int64_t k_row_stride, int64_t k_head_stride, int64_t k_slot_stride,
        const T *v, int64_t v_row_stride, int64_t v_head_stride, int64_t v_slot_stride,
        const uint8_t *mask, int64_t mask_row_stride,
        T *out, int64_t rows, int64_t kv_heads, int64_t group, int64_t head_dim, int64_t n_slots,
        float scale, float *scratch /* rows * kv_heads * group * n_slots floats */) {
    if (group > MAX_GROUP || head_dim > MAX_HEAD_DIM || group * head_dim > MAX_GROUP_DIM || head_dim % 8) return -1;
    const int64_t G = group, D = head_dim, S = n_slots;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t row = 0; row < rows; row++) {
        for (int64_t kv = 0; kv < kv_heads; kv++) {
            float *scores = scratch + (row * kv_heads + kv) * G * S;
            const T *qh = q + row * q_row_stride + kv * G * D;
            const T *kh = k + row * k_row_stride + kv * k_head_stride;
            const T *vh = v + row * v_row_stride + kv * v_head_stride;
            const uint8_t *m = mask + row * mask_row_stride;
            T *o = out + (row * kv_heads + kv) * G * D;
#if defined(GROUP) && defined(HEAD_DIM)
            if (G == GROUP && D == HEAD_DIM) {
                NAME(attend)(GROUP, HEAD_DIM, S, scale, qh, kh, k_slot_stride, vh, v_slot_stride, m, o, scores);
                continue;
            }
#endif
            NAME(attend)(G, D, S, scale, qh, kh, k_slot_stride, vh, v_slot_stride, m, o, scores);
        }
    }
    return 0;
}

/* ---- elementwise kernels ------------------------------------------------------------------------------------ */

/* HF's LlamaRMSNorm of rows of T, optionally after the residual add (delta != NULL: x += delta in place, rounded
 * to T as PyTorch's add in T rounds): out = weight * T(x * rsqrt(mean(x^2) + eps)), the product rounded. */
void NAME(r1lab_add_rms_norm)(T *x, const T *delta, const T *weight, T *out,
                             int64_t rows, int64_t dim, float eps) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        T *xr = x + r * dim, *orow = out + r * dim;
        float sq = 0.0f;
        if (delta) {
            const T *dr = delta + r * dim;
#pragma omp simd reduction(+ : sq)
            for (int64_t i = 0; i < dim; i++) {
                const float v = ROUND(LOAD(xr[i]) + LOAD(dr[i]));
                xr[i] = STORE(v);
                sq += v * v;
            }
        } else {
#pragma omp simd reduction(+ : sq)
            for (int64_t i = 0; i < dim; i++) {
                const float v = LOAD(xr[i]);
                sq += v * v;
            }
        }
        const float inv = 1.0f / sqrtf(sq / (float)dim + eps);
#pragma omp simd
        for (int64_t i = 0; i < dim; i++)
            orow[i] = STORE(LOAD(weight[i]) * ROUND(LOAD(xr[i]) * inv));
    }
}

/* HF's rotary embedding (q * cos + rotate_half(q) * sin, each product and the sum rounded to T) on the query
 * and key heads of the fused q/k/v output, for one new token per row: queries to q_out (rows, heads, dim), the
 * rotated key and the value into the caches at slot `slot` (cache layout as for attention above). cos and sin are
 * (rows, dim). */
void NAME(r1lab_rotary_to_cache)(const T *qkv, int64_t qkv_row_stride, const T *cos,
                                const T *sin, T *q_out, T *k_cache, int64_t k_row_stride,
                                int64_t k_head_stride, T *v_cache, int64_t v_row_stride,
                                int64_t v_head_stride, int64_t slot, int64_t slot_stride, int64_t rows,
                                int64_t heads, int64_t kv_heads, int64_t dim) {
    const int64_t half = dim / 2;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const T *row = qkv + r * qkv_row_stride, *c = cos + r * dim, *sn = sin + r * dim;
        for (int64_t h = 0; h < heads + kv_heads; h++) {
            const T *src = row + h * dim;
            T *dst = h < heads ? q_out + (r * heads + h) * dim
                                      : k_cache + r * k_row_stride + (h - heads) * k_head_stride + slot * slot_stride;
#pragma omp simd
            for (int64_t i = 0; i < dim; i++) {
                const float rotated = i < half ? -LOAD(src[i + half]) : LOAD(src[i - half]);
                dst[i] = STORE(ROUND(LOAD(src[i]) * LOAD(c[i])) + ROUND(rotated * LOAD(sn[i])));
            }
        }
        const T *vsrc = row + (heads + kv_heads) * dim;
        for (int64_t h = 0; h < kv_heads; h++)
            memcpy(v_cache + r * v_row_stride + h * v_head_stride + slot * slot_stride, vsrc + h * dim,
                   (size_t)dim * sizeof *vsrc);
    }
}

/* silu(gate) * up for the fused gate/up output (rows, 2 * width): out (rows, width), the SiLU rounded to T
 * before the product as PyTorch's F.silu(gate) * up in T rounds. */
void NAME(r1lab_swiglu)(const T *gate_up, T *out, int64_t rows, int64_t width) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const T *g = gate_up + r * 2 * width, *u = g + width;
        T *o = out + r * width;
#pragma omp simd
        for (int64_t i = 0; i < width; i++) {
            const float x = LOAD(g[i]);
            o[i] = STORE(ROUND(x / (1.0f + exp_clamped(-x))) * LOAD(u[i]));
        }
    }
}
