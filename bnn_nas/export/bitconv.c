/* Bit-packed binary convolution for bnn-nas exported models: XNOR + popcount.
 *
 * Layouts (little-endian, row-major), for G groups of Cg = C / G input and Og = O / G
 * output channels (G = 1: an ordinary conv; G = C: depthwise):
 *   activations  uint64 [N, Hp, Wp, G, K]  K = ceil(Cg / 64) words per group; bit c % 64
 *                                       of word c / 64 of group g is 1 where channel
 *                                       g * Cg + c is +1; bits c >= Cg are 0. The border
 *                                       of width (ph, pw) holds +1 in every channel.
 *   weights      uint64 [G, T, K, Opad] T = kh * kw taps, output channels innermost (one
 *                                       activation word meets 8 of them per 512-bit
 *                                       instruction); Opad = Og rounded up to 8.
 *   correction   int32 [Ho, Wo, O]      what the +1 border added to each output (or NULL)
 *   output       float32 [N, Ho, Wo, O] (or int32 with the raw dot products)
 *
 * Group g's outputs g * Og ... g * Og + Og - 1 read only group g's words, so a grouped conv
 * is the groups=1 kernel run per group on its slice of words, weights and outputs.
 * Over one receptive field the dot product of +-1 vectors is n - 2 * popcount(a ^ w), n the
 * number of valid bits. Training pads with zeros, so a padded tap must contribute 0: the
 * border is filled with +1 (every tap has the same shape, so the inner loops never branch)
 * and the correction map, the sum of the weights that meet the border at each output,
 * is subtracted afterwards.
 *
 * Written for the compiler to vectorise (-O3 -march=native): the inner loops run over a
 * fixed block of output channels, which becomes VPOPCNTQ on CPUs with AVX-512 VPOPCNTDQ;
 * a tile of 4 adjacent output pixels shares every weight load. OpenMP splits output rows
 * across threads when more than one is asked for.
 */
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define BNN_ABI_VERSION 10
#define BNN_TILE_PX 4

int bnn_abi_version(void) { return BNN_ABI_VERSION; }

int bnn_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* Bit 0: AVX-512F packing, bit 1: AVX-512 VPOPCNTDQ popcounts, bit 2: AVX2. */
int bnn_features(void) {
    int f = 0;
#if defined(__AVX512F__)
    f |= 1;
#endif
#if defined(__AVX512VPOPCNTDQ__)
    f |= 2;
#endif
#if defined(__AVX2__)
    f |= 4;
#endif
    return f;
}

/* One pixel's channels (float32 [C]) -> K words: bit = (x >= thr[c]) XOR flip bit c.
 * (The caller turns "x <= tau" of a BN with negative scale into NOT "x >= next float".) */
static inline void bnn_pack_pixel(const float *xp, int32_t C, int32_t K, const float *thr,
                                  const uint64_t *flip, uint64_t *op) {
    for (int32_t k = 0; k < K; k++) {
        const int32_t c0 = k * 64;
        const int32_t n = C - c0 < 64 ? C - c0 : 64;
        uint64_t word = 0;
#if defined(__AVX512F__)
        if (n == 64) {
            const uint64_t b0 = _mm512_cmp_ps_mask(_mm512_loadu_ps(xp + c0),
                                                   _mm512_loadu_ps(thr + c0), _CMP_GE_OQ);
            const uint64_t b1 = _mm512_cmp_ps_mask(_mm512_loadu_ps(xp + c0 + 16),
                                                   _mm512_loadu_ps(thr + c0 + 16), _CMP_GE_OQ);
            const uint64_t b2 = _mm512_cmp_ps_mask(_mm512_loadu_ps(xp + c0 + 32),
                                                   _mm512_loadu_ps(thr + c0 + 32), _CMP_GE_OQ);
            const uint64_t b3 = _mm512_cmp_ps_mask(_mm512_loadu_ps(xp + c0 + 48),
                                                   _mm512_loadu_ps(thr + c0 + 48), _CMP_GE_OQ);
            word = b0 | (b1 << 16) | (b2 << 32) | (b3 << 48);
        } else {
            for (int32_t j = 0; j < n; j += 16) {
                const int32_t m = n - j < 16 ? n - j : 16;
                const __mmask16 lanes = (__mmask16)(m == 16 ? 0xFFFFu : ((1u << m) - 1u));
                __m512 v = _mm512_maskz_loadu_ps(lanes, xp + c0 + j);
                __m512 t = _mm512_maskz_loadu_ps(lanes, thr + c0 + j);
                word |= (uint64_t)_mm512_mask_cmp_ps_mask(lanes, v, t, _CMP_GE_OQ) << j;
            }
        }
#else
        for (int32_t j = 0; j < n; j++) word |= (uint64_t)(xp[c0 + j] >= thr[c0 + j]) << j;
#endif
        op[k] = word ^ flip[k];
    }
}

/* Binarize x (float32 [N, H, W, C]) into out (uint64 [N, H + 2 ph, W + 2 pw, G, K], K =
 * ceil(C / G / 64)); the border gets +1 in every channel. With shift = 1 the input is
 * first moved up-left by one pixel and +1 fills the last row and column (the offset grid
 * of a factorized reduce). flip (uint64 [G, K]) must have no bits at c >= C / G. */
void bnn_pack(const float *x, int32_t N, int32_t H, int32_t W, int32_t C, int32_t G,
              const float *thr, const uint64_t *flip, int32_t ph, int32_t pw, int32_t shift,
              uint64_t *out, int32_t threads) {
    const int32_t Cg = C / G, Kg = (Cg + 63) / 64, K = G * Kg;
    const int32_t Hp = H + 2 * ph, Wp = W + 2 * pw;
    const int32_t last_full = Cg / 64, rest = Cg % 64;
    (void)threads; /* used by OpenMP only */
#pragma omp parallel for collapse(2) if (threads > 1) num_threads(threads) schedule(static)
    for (int32_t n = 0; n < N; n++) {
        for (int32_t y = 0; y < Hp; y++) {
            uint64_t *row = out + (((int64_t)n * Hp + y) * Wp) * K;
            const int32_t iy = y - ph + shift;
            for (int32_t xw = 0; xw < Wp; xw++) {
                const int32_t ix = xw - pw + shift;
                uint64_t *op = row + (int64_t)xw * K;
                const int inside = y >= ph && y < ph + H && xw >= pw && xw < pw + W;
                if (!inside || iy >= H || ix >= W) {
                    for (int32_t g = 0; g < G; g++) {
                        uint64_t *gp = op + (int64_t)g * Kg;
                        for (int32_t k = 0; k < last_full; k++) gp[k] = ~(uint64_t)0;
                        if (rest) gp[last_full] = ((uint64_t)1 << rest) - 1;
                    }
                } else {
                    const float *xp = x + (((int64_t)n * H + iy) * W + ix) * C;
                    for (int32_t g = 0; g < G; g++)
                        bnn_pack_pixel(xp + (int64_t)g * Cg, Cg, Kg, thr + (int64_t)g * Cg,
                                       flip + (int64_t)g * Kg, op + (int64_t)g * Kg);
                }
            }
        }
    }
}

/* Where a tile's results go: out[pixel * stride + o] = scale[o] * dot + bias[o] (or
 * out_int = dot) with dot = valid - 2 * mismatches - corr[pixel * stride + o], for the O
 * output channels of one group (the pointers start at the group's first channel; stride
 * is the layer's channel count); corr is only read for the outputs whose receptive field
 * touches the padding. */
typedef struct {
    int64_t valid;
    int32_t O, stride;
    const int32_t *corr; /* NULL: no padding */
    float *out;
    int32_t *out_int; /* non-NULL: write the integer dot products instead */
    const float *scale, *bias;
    const float *residual; /* non-NULL: added to out (same layout), the unit's shortcut */
} bnn_epilogue_t;

#if defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__) && defined(__AVX512VL__) && \
    defined(__AVX512DQ__)
#define BNN_VECTOR_TILES 1
/* One tile: PX output pixels (PSTEP words apart in the input) times B output channels, in
 * AVX-512 registers: per weight vector one XOR, one VPOPCNTQ and one add for each pixel,
 * each weight vector loaded once for all PX pixels; the affine is applied on the way out.
 * opix / cpix: index of the tile's first pixel in out and in corr. */
#define BNN_TILE(PX, B, M)                                                                  \
    static inline void bnn_tile_##PX##_##B##_##M(                                           \
        const uint64_t *a0, const int64_t *aoff, const int64_t *woff, int32_t TK,           \
        int64_t pstep, const uint64_t *wk, int64_t ob, const bnn_epilogue_t *e,             \
        const int32_t *corr, int64_t opix, int64_t cpix, const uint64_t *mk,                \
        const int64_t *moff) {                                                              \
        __m512i acc[PX][B / 8];                                                             \
        _Pragma("GCC unroll 16") for (int p = 0; p < PX; p++)                              \
            _Pragma("GCC unroll 16") for (int j = 0; j < B / 8; j++)                       \
                acc[p][j] = _mm512_setzero_si512();                                         \
        for (int32_t i = 0; i < TK; i++) {                                                  \
            const uint64_t *a = a0 + aoff[i];                                               \
            const uint64_t *w = wk + woff[i] + ob;                                          \
            const uint64_t *mw = M ? mk + moff[i] + ob : w;                                 \
            __m512i wv[B / 8], mv[B / 8];                                                   \
            _Pragma("GCC unroll 16") for (int j = 0; j < B / 8; j++) {                     \
                wv[j] = _mm512_loadu_si512((const void *)(w + 8 * j));                      \
                mv[j] = M ? _mm512_loadu_si512((const void *)(mw + 8 * j)) : wv[j];         \
            }                                                                               \
            _Pragma("GCC unroll 16") for (int p = 0; p < PX; p++) {                        \
                const __m512i av = _mm512_set1_epi64((long long)a[p * pstep]);              \
                /* M: (a ^ w) & mask in one instruction (truth table 0x28) */               \
                _Pragma("GCC unroll 16") for (int j = 0; j < B / 8; j++)                   \
                    acc[p][j] = _mm512_add_epi64(                                          \
                        acc[p][j],                                                          \
                        _mm512_popcnt_epi64(M ? _mm512_ternarylogic_epi64(av, wv[j], mv[j], \
                                                                          0x28)             \
                                              : _mm512_xor_si512(av, wv[j])));              \
            }                                                                               \
        }                                                                                   \
        /* dot = valid - 2 * mismatches (exact in float32: valid < 2^24), minus the border */ \
        const __m256 valid = _mm256_set1_ps((float)e->valid);                               \
        const __m256 minus_two = _mm256_set1_ps(-2.0f);                                     \
        _Pragma("GCC unroll 16") for (int j = 0; j < B / 8; j++) {                         \
            const int64_t o0 = ob + 8 * j;                                                  \
            if (o0 >= e->O) break;                                                          \
            const __mmask8 m = e->O - o0 >= 8 ? 0xFF : (__mmask8)((1u << (e->O - o0)) - 1u); \
            const __m256 scale = _mm256_maskz_loadu_ps(m, e->scale + o0);                   \
            const __m256 bias = _mm256_maskz_loadu_ps(m, e->bias + o0);                     \
            _Pragma("GCC unroll 16") for (int p = 0; p < PX; p++) {                        \
                __m256 d = _mm256_fmadd_ps(minus_two, _mm512_cvtepi64_ps(acc[p][j]), valid); \
                if (corr)                                                                   \
                    d = _mm256_sub_ps(d, _mm256_cvtepi32_ps(_mm256_maskz_loadu_epi32(      \
                                             m, corr + (cpix + p) * e->stride + o0)));      \
                if (e->out_int)                                                             \
                    _mm256_mask_storeu_epi32(e->out_int + (opix + p) * e->stride + o0, m,   \
                                             _mm256_cvtps_epi32(d));                        \
                else {                                                                      \
                    __m256 y = _mm256_fmadd_ps(scale, d, bias);                             \
                    if (e->residual)                                                        \
                        y = _mm256_add_ps(y, _mm256_maskz_loadu_ps(                         \
                                                 m, e->residual + (opix + p) * e->stride + o0)); \
                    _mm256_mask_storeu_ps(e->out + (opix + p) * e->stride + o0, m, y);      \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    }
#else
#define BNN_VECTOR_TILES 0
/* One tile: PX output pixels (PSTEP words apart in the input) times B output channels,
 * portable C (the compiler may vectorise the channel loop); the affine on the way out. */
#define BNN_TILE(PX, B, M)                                                                  \
    static inline void bnn_tile_##PX##_##B##_##M(                                           \
        const uint64_t *a0, const int64_t *aoff, const int64_t *woff, int32_t TK,           \
        int64_t pstep, const uint64_t *wk, int64_t ob, const bnn_epilogue_t *e,             \
        const int32_t *corr, int64_t opix, int64_t cpix, const uint64_t *mk,                \
        const int64_t *moff) {                                                              \
        for (int p = 0; p < PX; p++) {                                                      \
            uint64_t acc[B];                                                                \
            for (int j = 0; j < B; j++) acc[j] = 0;                                         \
            for (int32_t i = 0; i < TK; i++) {                                              \
                const uint64_t av = a0[aoff[i] + p * pstep];                                \
                const uint64_t *wr = wk + woff[i] + ob;                                     \
                const uint64_t *mr = M ? mk + moff[i] + ob : wr;                            \
                for (int j = 0; j < B; j++)                                                 \
                    acc[j] += (uint64_t)__builtin_popcountll(M ? (av ^ wr[j]) & mr[j]       \
                                                               : av ^ wr[j]);               \
            }                                                                               \
            for (int j = 0; j < B && ob + j < e->O; j++) {                                  \
                const int64_t o = ob + j;                                                   \
                int64_t d = e->valid - 2 * (int64_t)acc[j];                                 \
                if (corr) d -= corr[(cpix + p) * e->stride + o];                            \
                if (e->out_int)                                                             \
                    e->out_int[(opix + p) * e->stride + o] = (int32_t)d;                    \
                else                                                                        \
                    e->out[(opix + p) * e->stride + o] =                                    \
                        fmaf(e->scale[o], (float)d, e->bias[o]) +                           \
                        (e->residual ? e->residual[(opix + p) * e->stride + o] : 0.0f);     \
            }                                                                               \
        }                                                                                   \
    }
#endif

BNN_TILE(4, 32, 0)
BNN_TILE(4, 8, 0)
BNN_TILE(1, 32, 0)
BNN_TILE(1, 8, 0)
BNN_TILE(4, 32, 1)
BNN_TILE(4, 8, 1)
BNN_TILE(1, 32, 1)
BNN_TILE(1, 8, 1)

/* One tile of PX pixels (4 or 1) across the O outputs of one group: 32-wide blocks, then
 * 8-wide; masked (mk non-NULL) or not. */
static inline void bnn_tiles(int wide, const uint64_t *a0, const int64_t *aoff,
                             const int64_t *woff, int32_t TK, int64_t pstep, const uint64_t *wk,
                             int64_t Opad, const bnn_epilogue_t *e, const int32_t *c,
                             int64_t opix, int64_t cpix, const uint64_t *mk,
                             const int64_t *moff) {
    int64_t ob = 0;
#define BNN_BLOCKS(PX, M)                                                                   \
    for (; ob + 32 <= Opad; ob += 32)                                                       \
        bnn_tile_##PX##_32_##M(a0, aoff, woff, TK, pstep, wk, ob, e, c, opix, cpix, mk, moff); \
    for (; ob < Opad; ob += 8)                                                              \
        bnn_tile_##PX##_8_##M(a0, aoff, woff, TK, pstep, wk, ob, e, c, opix, cpix, mk, moff);
    if (wide && mk) {
        BNN_BLOCKS(4, 1)
    } else if (wide) {
        BNN_BLOCKS(4, 0)
    } else if (mk) {
        BNN_BLOCKS(1, 1)
    } else {
        BNN_BLOCKS(1, 0)
    }
#undef BNN_BLOCKS
}

int bnn_vector_tiles(void) { return BNN_VECTOR_TILES; }

/* Binary convolution of padded packed activations (uint64 [N, Hp, Wp, G, K]) with packed
 * weights (uint64 [G, T, K, Opad]), G groups. out (float32 [N, Ho, Wo, O]) = scale[o] * dot
 * + bias[o] (+ residual), or, when out_int is given, out_int (int32 [N, Ho, Wo, O]) = dot,
 * where dot excludes the border via corr. With mask (uint64 [K, Opad]) the groups run as
 * one dense conv (activations and weights laid out as for G = 1, weights zero outside
 * their group) whose mismatches are popcount((a ^ w) & mask): cheaper than G narrow
 * convs when groups are small (BATS: 2-4 channels each). Returns 0, -2 when memory runs
 * out, -3 when (C / G) * kh * kw >= 2^24. */
int bnn_conv(const uint64_t *bits, int32_t N, int32_t Hp, int32_t Wp, int32_t C, int32_t G,
             const uint64_t *wk, const uint64_t *mask, int32_t O, int32_t kh, int32_t kw,
             int32_t sh, int32_t sw, int32_t ph, int32_t pw, int32_t dh, int32_t dw, int32_t Ho,
             int32_t Wo, const int32_t *corr,
             const float *scale, const float *bias, const float *residual, float *out,
             int32_t *out_int, int32_t threads) {
    const int64_t valid = (int64_t)kh * kw * (C / G); /* valid bits of one receptive field */
    if (mask) G = 1;                                  /* one dense, masked conv */
    const int32_t Cg = C / G, Og = O / G;
    const int32_t K = (Cg + 63) / 64, KP = G * K; /* words per group, per pixel */
    const int64_t Opad = ((int64_t)Og + 7) / 8 * 8;
    const int32_t T = kh * kw, TK = kh * kw * K;
    const int64_t wgroup = (int64_t)T * K * Opad; /* weight words of one group */
    if (valid >= ((int64_t)1 << 24))
        return -3; /* dot products would not be exact in float32 */
    /* one flat list of (tap, word) pairs: input word, weight row and mask row offsets */
    int64_t *aoff = (int64_t *)malloc(sizeof(int64_t) * 3 * (size_t)(TK > 0 ? TK : 1));
    bnn_epilogue_t *eg = (bnn_epilogue_t *)malloc(sizeof(bnn_epilogue_t) * (size_t)G);
    if (!aoff || !eg) {
        free(aoff);
        free(eg);
        return -2;
    }
    int64_t *woff = aoff + TK, *moff = aoff + 2 * TK;
    for (int32_t ky = 0; ky < kh; ky++)
        for (int32_t kx = 0; kx < kw; kx++)
            for (int32_t k = 0; k < K; k++) {
                const int32_t t = ky * kw + kx;
                aoff[t * K + k] = ((int64_t)ky * dh * Wp + (int64_t)kx * dw) * KP + k;
                woff[t * K + k] = ((int64_t)t * K + k) * Opad;
                moff[t * K + k] = (int64_t)k * Opad;
            }
    for (int32_t g = 0; g < G; g++) { /* group g: its slice of every per-channel array */
        const int64_t o = (int64_t)g * Og;
        const bnn_epilogue_t e = {valid, Og, O, corr ? corr + o : NULL,
                                  out ? out + o : NULL, out_int ? out_int + o : NULL,
                                  scale + o, bias + o, residual ? residual + o : NULL};
        eg[g] = e;
    }
    const int32_t H = Hp - 2 * ph, W = Wp - 2 * pw;
    /* output columns [x_lo, x_hi) and rows [y_lo, y_hi) see no padding */
    int32_t x_lo = 0, x_hi = Wo, y_lo = 0, y_hi = Ho;
    while (x_lo < Wo && x_lo * sw - pw < 0) x_lo++;
    while (x_hi > x_lo && (x_hi - 1) * sw - pw + (kw - 1) * dw >= W) x_hi--;
    while (y_lo < Ho && y_lo * sh - ph < 0) y_lo++;
    while (y_hi > y_lo && (y_hi - 1) * sh - ph + (kh - 1) * dh >= H) y_hi--;
    const int64_t pstep = (int64_t)sw * KP;
    (void)threads; /* used by OpenMP only */
#pragma omp parallel for collapse(2) if (threads > 1) num_threads(threads) schedule(static)
    for (int32_t n = 0; n < N; n++) {
        for (int32_t oy = 0; oy < Ho; oy++) {
            const uint64_t *arow = bits + ((int64_t)n * Hp + (int64_t)oy * sh) * Wp * KP;
            const int row_inside = oy >= y_lo && oy < y_hi;
            int32_t ox = 0;
            while (ox < Wo) {
                const int64_t cpix = (int64_t)oy * Wo + ox;
                const int64_t opix = (int64_t)n * Ho * Wo + cpix;
                const int tile = ox + BNN_TILE_PX <= Wo;
                const int32_t last = ox + (tile ? BNN_TILE_PX : 1) - 1;
                const int inside = row_inside && ox >= x_lo && last < x_hi;
                for (int32_t g = 0; g < G; g++) {
                    const uint64_t *a0 = arow + (int64_t)ox * sw * KP + (int64_t)g * K;
                    const uint64_t *wg = wk + g * wgroup;
                    const bnn_epilogue_t *e = eg + g;
                    const int32_t *c = inside ? NULL : e->corr;
                    bnn_tiles(tile, a0, aoff, woff, TK, pstep, wg, Opad, e, c, opix, cpix, mask,
                              moff);
                }
                ox += tile ? BNN_TILE_PX : 1;
            }
        }
    }
    free(aoff);
    free(eg);
    return 0;
}

/* Everything one packed layer needs for one input size, set up once by the caller and
 * only read here, so several threads may run the same layer at once. */
typedef struct {
    int32_t N, H, W, C, O;
    int32_t kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo;
    int32_t shift, threads, groups;
    const float *thr;     /* [C] */
    const uint64_t *flip; /* [G, K] */
    const float *scale, *bias;
    const uint64_t *weights; /* [G, T, K, Opad], or with mask [1, T, K, Opad] */
    const int32_t *corr; /* [Ho, Wo, O] or NULL */
    const uint64_t *mask; /* NULL, or [K, Opad]: the groups as one masked dense conv */
} bnn_layer_t;

/* A whole layer in one call: binarize and pack x (float32 [N, H, W, C]) into scratch
 * (uint64 [N, H + 2 ph, W + 2 pw, G, K]), then convolve into out (float32 [N, Ho, Wo, O],
 * plus residual when given) or out_int (int32 dot products). Returns bnn_conv's status. */
int bnn_layer(const bnn_layer_t *L, const float *x, uint64_t *scratch, const float *residual,
              float *out, int32_t *out_int) {
    if (L->groups < 1 || L->C % L->groups || L->O % L->groups) return -4;
    bnn_pack(x, L->N, L->H, L->W, L->C, L->mask ? 1 : L->groups, L->thr, L->flip, L->ph, L->pw,
             L->shift, scratch, L->threads);
    return bnn_conv(scratch, L->N, L->H + 2 * L->ph, L->W + 2 * L->pw, L->C, L->groups,
                    L->weights, L->mask, L->O, L->kh, L->kw, L->sh, L->sw, L->ph, L->pw, L->dh,
                    L->dw, L->Ho, L->Wo, L->corr, L->scale, L->bias, residual, out, out_int,
                    L->threads);
}
