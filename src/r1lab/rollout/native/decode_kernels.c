/* The parts of a bf16 or fp32 decode step on CPU that PyTorch runs slowly at decode shapes (64 rows of 576 features):
 * the attention of one new query token per row over the key/value cache, and the elementwise work between the
 * matmuls (residual add + RMSNorm, rotary embedding + cache write, SiLU-gated product). Each elementwise kernel
 * does in one pass what took PyTorch 3-8 ops of 10-30 us each (dispatch, not arithmetic, at 64 x 576), and
 * rounds to bf16 where HF's bf16 code rounds, so results equal HF's up to the order of the RMSNorm's sum. The
 * kernels are written once, in decode_kernels_typed.h, and compiled for each element type (bf16 for CPUs with
 * fast bf16 matmuls, fp32 for the others: r1lab.models.precision).
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

static inline float bf16_round(float f) { return bf16_to_float(float_to_bf16(f)); }

static inline v8f load_f32x8(const float *p) {
    v8f f;
    memcpy(&f, p, sizeof f);
    return f;
}

/* bf16: the roundings of PyTorch's bf16 ops */
#define T uint16_t
#define NAME(f) f##_bf16
#define LOAD(x) bf16_to_float(x)
#define LOAD8(p) load_bf16x8(p)
#define STORE(f) float_to_bf16(f)
#define ROUND(f) bf16_round(f)
#include "decode_kernels_typed.h"
#undef T
#undef NAME
#undef LOAD
#undef LOAD8
#undef STORE
#undef ROUND

/* fp32: nothing to round */
#define T float
#define NAME(f) f##_f32
#define LOAD(x) (x)
#define LOAD8(p) load_f32x8(p)
#define STORE(f) (f)
#define ROUND(f) (f)
#include "decode_kernels_typed.h"
