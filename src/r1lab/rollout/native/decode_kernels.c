/* The parts of a bf16 decode step on CPU that PyTorch runs slowly at decode shapes (64 rows of 576 features):
 * the attention of one new query token per row over the key/value cache, and the elementwise work between the
 * matmuls (residual add + RMSNorm, rotary embedding + cache write, SiLU-gated product). Each elementwise kernel
 * does in one pass what took PyTorch 3-8 ops of 10-30 us each (dispatch, not arithmetic, at 64 x 576), and
 * rounds to bf16 where HF's bf16 code rounds, so results equal HF's up to the order of the RMSNorm's sum.
 *
 * Attention, why not SDPA: at decode shapes (64 rows, 3 key/value heads of 3 queries each, head dim 64, tens to
 * hundreds of cached tokens) PyTorch's CPU flash-attention kernel runs small GEMMs per (row, head), and its time
 * is dominated by per-(row, head) work that grows with the cache length, not by the arithmetic (~25 MFLOP per
 * layer). Here each (row, key/value head) task reads its keys and values once, widens them to fp32 in registers
 * and keeps all arithmetic in fp32; benchmarks/decode_kernels.py times both.
 *
 * Layouts (strides in elements; the innermost dimension is contiguous everywhere):
 *   q     (rows, kv_heads * group, head_dim)        query head kv * group + g reads key/value head kv (GQA)
 *   k, v  (rows, kv_heads, slots, head_dim)         the first n_slots slots are read
 *   mask  (rows, n_slots) uint8                     nonzero: the row may attend to that slot
 *   out   (rows, kv_heads * group, head_dim)        contiguous
 * A row whose mask is all zero gets zeros (r1lab never produces one: every row attends to its own new token).
 *
 * Built by r1lab.rollout.native_kernels with the system C compiler (-O3 -march=native -fopenmp); OpenMP shares
 * PyTorch's runtime (the same libgomp.so.1), so torch.set_num_threads governs it too.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t float_to_bf16(float f) {  /* round to nearest even, as PyTorch rounds */
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  /* NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* exp(x), branch-free so the compiler vectorises the loops that call it: 2^n * p(r) with x = n ln2 + r,
 * |r| <= ln2 / 2, p a degree-6 Taylor polynomial (relative error ~2e-7 over that range). x is clamped to
 * [-87, 88], where the result stays a normal float. */
static inline float exp_clamped(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float shifter = 12582912.0f;  /* 1.5 * 2^23: adding and subtracting it rounds to the nearest integer */
    float n = (x * 1.44269504088896341f + shifter) - shifter;
    float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.6666667e-1f + r * (4.1666668e-2f
              + r * (8.3333338e-3f + r * 1.3888889e-3f)))));
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#define MAX_GROUP 64        /* query heads per key/value head */
#define MAX_HEAD_DIM 512
#define MAX_GROUP_DIM 2048  /* group * head_dim: e.g. 8 queries per key/value head of dim 256 */

typedef float v8f __attribute__((vector_size(32)));  /* GCC/Clang vector extension: 8 fp32 lanes */
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef uint16_t v8h __attribute__((vector_size(16)));

static inline v8f load_bf16x8(const uint16_t *p) {  /* 8 bf16 values widened to fp32 */
    v8h h;
    memcpy(&h, p, sizeof h);
    v8u u = __builtin_convertvector(h, v8u) << 16;
    v8f f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float hsum8(v8f x) {
    return ((x[0] + x[4]) + (x[1] + x[5])) + ((x[2] + x[6]) + (x[3] + x[7]));
}

#define BLOCK 8  /* key slots scored together: their 8 dot products are summed in one transpose (no per-slot hsum) */

/* hadd(x, y) = pairwise sums, laid out like x86's vhaddps: x0+x1, x2+x3, y0+y1, y2+y3, then the upper halves */
static inline v8f hadd8(v8f x, v8f y) {
    return __builtin_shufflevector(x, y, 0, 2, 8, 10, 4, 6, 12, 14)
         + __builtin_shufflevector(x, y, 1, 3, 9, 11, 5, 7, 13, 15);
}

/* r[j] = sum of the 8 lanes of a[j], for j = 0..7 */
static inline v8f transpose_sum8(const v8f *a) {
    v8f h0123 = hadd8(hadd8(a[0], a[1]), hadd8(a[2], a[3]));  /* a0..a3 partial sums: low half, then high half */
    v8f h4567 = hadd8(hadd8(a[4], a[5]), hadd8(a[6], a[7]));
    return __builtin_shufflevector(h0123, h4567, 0, 1, 2, 3, 8, 9, 10, 11)
         + __builtin_shufflevector(h0123, h4567, 4, 5, 6, 7, 12, 13, 14, 15);
}

/* One (row, key/value head) task for head_dim a multiple of 8. Always inlined, so that built with -DGROUP=g
 * -DHEAD_DIM=d (r1lab builds one library per model head shape) it is compiled once more with both as constants:
 * the loops over head_dim unroll and the G x head_dim accumulators stay in registers, 1.6x faster than the
 * run-time-sized copy kept for other shapes. Specialising every common shape in one library instead took 15 s to
 * compile. */
static inline __attribute__((always_inline)) void attend(
        const int64_t G, const int64_t D, const int64_t S, const float scale,
        const uint16_t *qh, const uint16_t *kh, int64_t k_slot_stride, const uint16_t *vh, int64_t v_slot_stride,
        const uint8_t *m, uint16_t *o, float *scores /* (G, S) */) {
    const int64_t C = D / 8;  /* 8-lane chunks per head */
    v8f qv[G * C], acc[G * C];
    float total[G];
    for (int64_t i = 0; i < G * C; i++) qv[i] = load_bf16x8(qh + 8 * i) * scale;
    /* scores = q k^T, BLOCK slots at a time; masked slots are scored too and dropped below */
    int64_t s0 = 0;
    for (; s0 + BLOCK <= S; s0 += BLOCK) {
        v8f kf[BLOCK * C];  /* the block's keys in fp32, converted once for all G queries */
        for (int64_t j = 0; j < BLOCK; j++)
            for (int64_t c = 0; c < C; c++) kf[j * C + c] = load_bf16x8(kh + (s0 + j) * k_slot_stride + 8 * c);
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
            for (int64_t c = 0; c < C; c++) dot += qv[g * C + c] * load_bf16x8(kh + s0 * k_slot_stride + 8 * c);
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
        const uint16_t *vs = vh + s * v_slot_stride;
        for (int64_t c = 0; c < C; c++) {
            const v8f x = load_bf16x8(vs + 8 * c);
            for (int64_t g = 0; g < G; g++) acc[g * C + c] += scores[g * S + s] * x;
        }
    }
    for (int64_t g = 0; g < G; g++) {
        const float inv = 1.0f / total[g];
        for (int64_t c = 0; c < C; c++)
            for (int64_t l = 0; l < 8; l++) o[g * D + 8 * c + l] = float_to_bf16(acc[g * C + c][l] * inv);
    }
}

/* Returns 0, or -1 when the shapes exceed what this kernel's stack buffers hold (the caller falls back). */
int r1lab_decode_attention_bf16(
        const uint16_t *q, int64_t q_row_stride,
        const uint16_t *k, int64_t k_row_stride, int64_t k_head_stride, int64_t k_slot_stride,
        const uint16_t *v, int64_t v_row_stride, int64_t v_head_stride, int64_t v_slot_stride,
        const uint8_t *mask, int64_t mask_row_stride,
        uint16_t *out, int64_t rows, int64_t kv_heads, int64_t group, int64_t head_dim, int64_t n_slots,
        float scale, float *scratch /* rows * kv_heads * group * n_slots floats */) {
    if (group > MAX_GROUP || head_dim > MAX_HEAD_DIM || group * head_dim > MAX_GROUP_DIM || head_dim % 8) return -1;
    const int64_t G = group, D = head_dim, S = n_slots;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t row = 0; row < rows; row++) {
        for (int64_t kv = 0; kv < kv_heads; kv++) {
            float *scores = scratch + (row * kv_heads + kv) * G * S;
            const uint16_t *qh = q + row * q_row_stride + kv * G * D;
            const uint16_t *kh = k + row * k_row_stride + kv * k_head_stride;
            const uint16_t *vh = v + row * v_row_stride + kv * v_head_stride;
            const uint8_t *m = mask + row * mask_row_stride;
            uint16_t *o = out + (row * kv_heads + kv) * G * D;
#if defined(GROUP) && defined(HEAD_DIM)
            if (G == GROUP && D == HEAD_DIM) {
                attend(GROUP, HEAD_DIM, S, scale, qh, kh, k_slot_stride, vh, v_slot_stride, m, o, scores);
                continue;
            }
#endif
            attend(G, D, S, scale, qh, kh, k_slot_stride, vh, v_slot_stride, m, o, scores);
        }
    }
    return 0;
}

/* ---- elementwise kernels ------------------------------------------------------------------------------------ */

static inline float bf16_round(float f) { return bf16_to_float(float_to_bf16(f)); }

/* HF's LlamaRMSNorm of bf16 rows, optionally after the residual add (delta != NULL: x += delta in place, rounded
 * to bf16 as PyTorch's bf16 add rounds): out = weight * bf16(x * rsqrt(mean(x^2) + eps)), the product rounded. */
void r1lab_add_rms_norm_bf16(uint16_t *x, const uint16_t *delta, const uint16_t *weight, uint16_t *out,
                             int64_t rows, int64_t dim, float eps) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        uint16_t *xr = x + r * dim, *orow = out + r * dim;
        float sq = 0.0f;
        if (delta) {
            const uint16_t *dr = delta + r * dim;
#pragma omp simd reduction(+ : sq)
            for (int64_t i = 0; i < dim; i++) {
                const float v = bf16_round(bf16_to_float(xr[i]) + bf16_to_float(dr[i]));
                xr[i] = float_to_bf16(v);
                sq += v * v;
            }
        } else {
#pragma omp simd reduction(+ : sq)
            for (int64_t i = 0; i < dim; i++) {
                const float v = bf16_to_float(xr[i]);
                sq += v * v;
            }
        }
        const float inv = 1.0f / sqrtf(sq / (float)dim + eps);
#pragma omp simd
        for (int64_t i = 0; i < dim; i++)
            orow[i] = float_to_bf16(bf16_to_float(weight[i]) * bf16_round(bf16_to_float(xr[i]) * inv));
    }
}

/* HF's rotary embedding (q * cos + rotate_half(q) * sin, each product and the sum rounded to bf16) on the query
 * and key heads of the fused q/k/v output, for one new token per row: queries to q_out (rows, heads, dim), the
 * rotated key and the value into the caches at slot `slot` (cache layout as for attention above). cos and sin are
 * (rows, dim). */
void r1lab_rotary_to_cache_bf16(const uint16_t *qkv, int64_t qkv_row_stride, const uint16_t *cos,
                                const uint16_t *sin, uint16_t *q_out, uint16_t *k_cache, int64_t k_row_stride,
                                int64_t k_head_stride, uint16_t *v_cache, int64_t v_row_stride,
                                int64_t v_head_stride, int64_t slot, int64_t slot_stride, int64_t rows,
                                int64_t heads, int64_t kv_heads, int64_t dim) {
    const int64_t half = dim / 2;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const uint16_t *row = qkv + r * qkv_row_stride, *c = cos + r * dim, *sn = sin + r * dim;
        for (int64_t h = 0; h < heads + kv_heads; h++) {
            const uint16_t *src = row + h * dim;
            uint16_t *dst = h < heads ? q_out + (r * heads + h) * dim
                                      : k_cache + r * k_row_stride + (h - heads) * k_head_stride + slot * slot_stride;
#pragma omp simd
            for (int64_t i = 0; i < dim; i++) {
                const float rotated = i < half ? -bf16_to_float(src[i + half]) : bf16_to_float(src[i - half]);
                dst[i] = float_to_bf16(bf16_round(bf16_to_float(src[i]) * bf16_to_float(c[i]))
                                       + bf16_round(rotated * bf16_to_float(sn[i])));
            }
        }
        const uint16_t *vsrc = row + (heads + kv_heads) * dim;
        for (int64_t h = 0; h < kv_heads; h++)
            memcpy(v_cache + r * v_row_stride + h * v_head_stride + slot * slot_stride, vsrc + h * dim,
                   (size_t)dim * sizeof *vsrc);
    }
}

/* silu(gate) * up for the fused gate/up output (rows, 2 * width): out (rows, width), the SiLU rounded to bf16
 * before the product as PyTorch's bf16 F.silu(gate) * up rounds. */
void r1lab_swiglu_bf16(const uint16_t *gate_up, uint16_t *out, int64_t rows, int64_t width) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const uint16_t *g = gate_up + r * 2 * width, *u = g + width;
        uint16_t *o = out + r * width;
#pragma omp simd
        for (int64_t i = 0; i < width; i++) {
            const float x = bf16_to_float(g[i]);
            o[i] = float_to_bf16(bf16_round(x / (1.0f + exp_clamped(-x))) * bf16_to_float(u[i]));
        }
    }
}
