/* Bit-packed binary convolution for bnn-nas exported models: XNOR + popcount.
 *
 * Layouts (little-endian, row-major):
 *   activations  uint64 [N, Hp, Wp, K]  K = ceil(C / 64); bit c % 64 of word c / 64 is 1
 *                                       where the value is +1; bits c >= C are 0. The
 *                                       border of width (ph, pw) holds +1 in every channel.
 *   weights      uint64 [T, K, Opad]    T = kh * kw taps, output channels innermost (one
 *                                       activation word meets 8 of them per 512-bit
 *                                       instruction); Opad = O rounded up to 8.
 *   correction   int32 [Ho, Wo, O]      what the +1 border added to each output (or NULL)
 *   output       float32 [N, Ho, Wo, O] (or int32 with the raw dot products)
 *
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
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define BNN_ABI_VERSION 2
#define BNN_MAX_TAPS 1024
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

/* One pixel's channels (float32 [C]) -> K words: bit = (mul[c] * x >= thr[c]).
 * mul is +1 or -1, so the product is exact. */
static inline void bnn_pack_pixel(const float *xp, int32_t C, int32_t K, const float *mul,
                                  const float *thr, uint64_t *op) {
    for (int32_t k = 0; k < K; k++) {
        const int32_t c0 = k * 64;
        const int32_t n = C - c0 < 64 ? C - c0 : 64;
        uint64_t word = 0;
#if defined(__AVX512F__)
        if (n == 64) {
            for (int32_t j = 0; j < 64; j += 16) {
                __m512 v = _mm512_mul_ps(_mm512_loadu_ps(xp + c0 + j), _mm512_loadu_ps(mul + c0 + j));
                __mmask16 b = _mm512_cmp_ps_mask(v, _mm512_loadu_ps(thr + c0 + j), _CMP_GE_OQ);
                word |= (uint64_t)b << j;
            }
        } else {
            for (int32_t j = 0; j < n; j += 16) {
                const int32_t m = n - j < 16 ? n - j : 16;
                const __mmask16 lanes = (__mmask16)(m == 16 ? 0xFFFFu : ((1u << m) - 1u));
                __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, xp + c0 + j),
                                         _mm512_maskz_loadu_ps(lanes, mul + c0 + j));
                __m512 t = _mm512_maskz_loadu_ps(lanes, thr + c0 + j);
                __mmask16 b = _mm512_mask_cmp_ps_mask(lanes, v, t, _CMP_GE_OQ);
                word |= (uint64_t)b << j;
            }
        }
#else
        for (int32_t j = 0; j < n; j++)
            word |= (uint64_t)(xp[c0 + j] * mul[c0 + j] >= thr[c0 + j]) << j;
#endif
        op[k] = word;
    }
}

/* Binarize x (float32 [N, H, W, C]) into out (uint64 [N, H + 2 ph, W + 2 pw, K]); the
 * border gets +1 in every channel. */
void bnn_pack(const float *x, int32_t N, int32_t H, int32_t W, int32_t C, const float *mul,
              const float *thr, int32_t ph, int32_t pw, uint64_t *out, int32_t threads) {
    const int32_t K = (C + 63) / 64;
    const int32_t Hp = H + 2 * ph, Wp = W + 2 * pw;
    uint64_t ones[K > 0 ? K : 1];
    for (int32_t k = 0; k < K; k++) {
        const int32_t n = C - k * 64 < 64 ? C - k * 64 : 64;
        ones[k] = n == 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1);
    }
#pragma omp parallel for collapse(2) if (threads > 1) num_threads(threads) schedule(static)
    for (int32_t n = 0; n < N; n++) {
        for (int32_t y = 0; y < Hp; y++) {
            uint64_t *row = out + (((int64_t)n * Hp + y) * Wp) * K;
            const int32_t iy = y - ph;
            for (int32_t xw = 0; xw < Wp; xw++) {
                const int32_t ix = xw - pw;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) {
                    memcpy(row + (int64_t)xw * K, ones, sizeof(uint64_t) * (size_t)K);
                } else {
                    const float *xp = x + (((int64_t)n * H + iy) * W + ix) * C;
                    bnn_pack_pixel(xp, C, K, mul, thr, row + (int64_t)xw * K);
                }
            }
        }
    }
}

#if defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__)
/* The same tile written with AVX-512 intrinsics: PX x (B / 8) accumulators stay in zmm
 * registers; per weight vector one XOR, one VPOPCNTQ and one add for each pixel. */
#define BNN_TILE(PX, B)                                                                     \
    static inline void bnn_tile_##PX##_##B(const uint64_t *a0, const int64_t *toff,         \
                                           int64_t pstep, int32_t T, int32_t K,            \
                                           const uint64_t *wk, int64_t Opad, int64_t ob,   \
                                           int64_t *acc_out) {                             \
        __m512i acc[PX][B / 8];                                                             \
        _Pragma("GCC unroll 16") for (int p = 0; p < PX; p++)                              \
            _Pragma("GCC unroll 16") for (int j = 0; j < B / 8; j++)                       \
                acc[p][j] = _mm512_setzero_si512();                                         \
        for (int32_t t = 0; t < T; t++) {                                                   \
            const uint64_t *a = a0 + toff[t];                                               \
            const uint64_t *w = wk + (int64_t)t * K * Opad + ob;                            \
            for (int32_t k = 0; k < K; k++) {                                               \
                __m512i wv[B / 8];                                                          \
                _Pragma("GCC unroll 16") for (int j = 0; j < B / 8; j++)                   \
                    wv[j] = _mm512_loadu_si512((const void *)(w + (int64_t)k * Opad + 8 * j)); \
                _Pragma("GCC unroll 16") for (int p = 0; p < PX; p++) {                    \
                    const __m512i av = _mm512_set1_epi64((long long)a[k + p * pstep]);      \
                    _Pragma("GCC unroll 16") for (int j = 0; j < B / 8; j++)               \
                        acc[p][j] = _mm512_add_epi64(                                      \
                            acc[p][j], _mm512_popcnt_epi64(_mm512_xor_si512(av, wv[j])));   \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
        _Pragma("GCC unroll 16") for (int p = 0; p < PX; p++)                              \
            _Pragma("GCC unroll 16") for (int j = 0; j < B / 8; j++)                       \
                _mm512_storeu_si512((void *)(acc_out + p * Opad + 8 * j), acc[p][j]);      \
    }
#else
/* One tile: PX output pixels (PSTEP words apart in the input) times B output channels.
 * acc[p][j] counts the mismatching bits of pixel p, channel ob + j over all taps; each
 * weight vector loaded serves all PX pixels. Portable C; the compiler may vectorise it. */
#define BNN_TILE(PX, B)                                                                     \
    static inline void bnn_tile_##PX##_##B(const uint64_t *a0, const int64_t *toff,         \
                                           int64_t pstep, int32_t T, int32_t K,            \
                                           const uint64_t *wk, int64_t Opad, int64_t ob,   \
                                           int64_t *acc_out) {                             \
        for (int p = 0; p < PX; p++) {                                                      \
            uint64_t acc[B];                                                                \
            for (int j = 0; j < B; j++) acc[j] = 0;                                         \
            for (int32_t t = 0; t < T; t++) {                                               \
                const uint64_t *a = a0 + toff[t] + p * pstep;                               \
                const uint64_t *w = wk + (int64_t)t * K * Opad + ob;                        \
                for (int32_t k = 0; k < K; k++) {                                           \
                    const uint64_t av = a[k];                                               \
                    const uint64_t *wr = w + (int64_t)k * Opad;                             \
                    for (int j = 0; j < B; j++)                                             \
                        acc[j] += (uint64_t)__builtin_popcountll(av ^ wr[j]);               \
                }                                                                           \
            }                                                                               \
            for (int j = 0; j < B; j++) acc_out[p * Opad + j] = (int64_t)acc[j];            \
        }                                                                                   \
    }

#endif

BNN_TILE(4, 32)
BNN_TILE(4, 8)
BNN_TILE(1, 32)
BNN_TILE(1, 8)

/* Binary convolution of padded packed activations (uint64 [N, Hp, Wp, K]) with packed
 * weights. out (float32 [N, Ho, Wo, O]) = scale[o] * dot + bias[o], or, when out_int is
 * given, out_int (int32 [N, Ho, Wo, O]) = dot, where dot excludes the border through
 * corr. Returns 0, -1 for a kernel with too many taps, -2 when memory runs out. */
int bnn_conv(const uint64_t *bits, int32_t N, int32_t Hp, int32_t Wp, int32_t C,
             const uint64_t *wk, int32_t O, int32_t kh, int32_t kw, int32_t sh, int32_t sw,
             int32_t dh, int32_t dw, int32_t Ho, int32_t Wo, const int32_t *corr,
             const float *scale, const float *bias, float *out, int32_t *out_int,
             int32_t threads) {
    const int32_t K = (C + 63) / 64;
    const int64_t Opad = ((int64_t)O + 7) / 8 * 8;
    const int32_t T = kh * kw;
    if (T > BNN_MAX_TAPS) return -1;
    int64_t toff[BNN_MAX_TAPS];
    for (int32_t ky = 0; ky < kh; ky++)
        for (int32_t kx = 0; kx < kw; kx++)
            toff[ky * kw + kx] = ((int64_t)ky * dh * Wp + (int64_t)kx * dw) * K;
    const int64_t valid = (int64_t)T * C;
    const int64_t pstep = (int64_t)sw * K;
    int failed = 0;
#pragma omp parallel for collapse(2) if (threads > 1) num_threads(threads) schedule(static)
    for (int32_t n = 0; n < N; n++) {
        for (int32_t oy = 0; oy < Ho; oy++) {
            int64_t *acc = (int64_t *)malloc(sizeof(int64_t) * (size_t)(Opad * BNN_TILE_PX));
            if (!acc) {
                failed = 1;
                continue;
            }
            const uint64_t *arow = bits + ((int64_t)n * Hp + (int64_t)oy * sh) * Wp * K;
            int32_t ox = 0;
            while (ox < Wo) {
                const int32_t px = ox + BNN_TILE_PX <= Wo ? BNN_TILE_PX : 1;
                const uint64_t *a0 = arow + (int64_t)ox * sw * K;
                int64_t ob = 0;
                if (px == BNN_TILE_PX) {
                    for (; ob + 32 <= Opad; ob += 32)
                        bnn_tile_4_32(a0, toff, pstep, T, K, wk, Opad, ob, acc + ob);
                    for (; ob < Opad; ob += 8)
                        bnn_tile_4_8(a0, toff, pstep, T, K, wk, Opad, ob, acc + ob);
                } else {
                    for (; ob + 32 <= Opad; ob += 32)
                        bnn_tile_1_32(a0, toff, pstep, T, K, wk, Opad, ob, acc + ob);
                    for (; ob < Opad; ob += 8)
                        bnn_tile_1_8(a0, toff, pstep, T, K, wk, Opad, ob, acc + ob);
                }
                for (int32_t p = 0; p < px; p++) {
                    const int64_t pix = ((int64_t)oy * Wo + ox + p) * O;
                    const int64_t base = (int64_t)n * Ho * Wo * O + pix;
                    const int64_t *ap = acc + p * Opad;
                    const int32_t *cp = corr ? corr + pix : NULL;
                    if (out_int) {
                        for (int32_t o = 0; o < O; o++)
                            out_int[base + o] =
                                (int32_t)(valid - 2 * ap[o]) - (cp ? cp[o] : 0);
                    } else if (cp) {
                        for (int32_t o = 0; o < O; o++)
                            out[base + o] =
                                scale[o] * (float)((int32_t)(valid - 2 * ap[o]) - cp[o]) + bias[o];
                    } else {
                        for (int32_t o = 0; o < O; o++)
                            out[base + o] = scale[o] * (float)(valid - 2 * ap[o]) + bias[o];
                    }
                }
                ox += px;
            }
            free(acc);
        }
    }
    return failed ? -2 : 0;
}
