/* klkit/expm.h: exp and the Bregman term phi(d) = exp(-d) - 1 + d, written so
 * that a compiler vectorises loops calling them (branch-free, bit operations,
 * no table look-ups), with full special-value handling.
 *
 * Why not libm: glibc's scalar expf is a call per element that stops the loop
 * vectorising; its SIMD variants (libmvec) are reached only under
 * -ffast-math, which also lets the compiler assume there are no NaN or
 * infinities.  Here every special value is handled in the arithmetic itself.
 *
 * exp(x), both precisions (Cody & Waite range reduction, Muller, "Elementary
 * Functions", ch. 6):
 *   n = round(x / ln 2) via the 1.5 * 2^p shifter trick (exact for |n| < 2^22),
 *   r = x - n ln2_hi - n ln2_lo,  |r| <= ln2 / 2  (ln2_hi has trailing zero
 *       bits so n * ln2_hi is exact with or without FMA),
 *   exp(r) by a polynomial (float: degree 6, error 3e-9; double: degree
 *       11, error 8e-18; both fitted, far below half an ulp),
 *   2^n applied as two factors 2^(n/2) 2^(n - n/2) so results that are
 *       subnormal are rounded once, correctly, instead of flushed to zero
 *       (kk_expf_neg / kk_exp_neg, for the x <= 0 of max-shifted sums:
 *       as 2^(n+k) 2^-k with one fixed k, cheaper, same rounding).
 * x is first clamped to [lo, hi] with comparisons that let NaN through
 * (NaN then propagates through the polynomial): below lo the result
 * underflows to +0, above hi it overflows to +inf, so -inf -> 0, +inf -> inf.
 * Measured against mpmath: <= 1 ulp (float), <= 2 ulp (double)
 * over the whole range (tests/test_accuracy.py).
 */
#ifndef KLKIT_EXPM_H
#define KLKIT_EXPM_H

#include "config.h"

/* exp(r) * scale (scale a power of two) for x clamped to the finite range:
 * the polynomial part of kk_expf, with n = round(x / ln 2) in *ni.  The
 * scale is folded into the coefficients (exactly: a power of two). */
static KLKIT_HD float kk_expf_reduced(float x, float scale, int32_t *ni)
{
    const float shifter = 12582912.0f;          /* 1.5 * 2^23 */
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693145751953125f;    /* 0x3f317200: 9 trailing zero bits */
    const float ln2_lo = 1.42860682030941723e-6f;
    float t = KK_FMAF(x, log2e, shifter);
    float n = t - shifter;
    *ni = (int32_t)(kk_bits_f32(t) - kk_bits_f32(shifter));
    float r = KK_FMAF(n, -ln2_hi, x);
    r = KK_FMAF(n, -ln2_lo, r);
    /* degree-6 polynomial with p(0) = 1, fitted for least maximum relative
     * error on |r| <= ln2/2 (Lawson's iteration; error 3e-9, a quarter of
     * float's half-ulp) */
    float p = 1.38146131e-3f * scale;
    p = KK_FMAF(p, r, 8.36870996e-3f * scale);
    p = KK_FMAF(p, r, 4.16683874e-2f * scale);
    p = KK_FMAF(p, r, 1.66665207e-1f * scale);
    p = KK_FMAF(p, r, 4.99999935e-1f * scale);
    p = KK_FMAF(p, r, scale);
    return KK_FMAF(p, r, scale);
}

/* The clamps let NaN through (a comparison with NaN is false). */
static KLKIT_HD float kk_expf(float x)
{
    /* exp(-104) < 2^-150 rounds to 0, exp(89) > FLT_MAX is inf */
    float lo = -104.0f > x ? -104.0f : x;
    x = 89.0f < lo ? 89.0f : lo;
    int32_t ni;
    float p = kk_expf_reduced(x, 1.0f, &ni);
    int32_t n1 = ni >> 1, n2 = ni - n1;
    float s1 = kk_f32_from_bits((uint32_t)(n1 + 127) << 23);
    float s2 = kk_f32_from_bits((uint32_t)(n2 + 127) << 23);
    return (p * s1) * s2;
}

/* exp(x) for x <= 0 (or NaN): what every max-shifted sum calls.  With
 * n >= -151, 2^n is applied as 2^-64 (folded into the polynomial) times
 * 2^(n+64), a normal float: one rounding, so subnormal results are still
 * correctly rounded, with a third of the integer work of kk_expf, one
 * multiply and no upper clamp.  Same values as kk_expf for x <= 0.  The
 * _unclamped form takes x already clamped (valid down to -131, where the
 * scale 2^(n+64) is still normal; exp is 0 below -104). */
static KLKIT_HD float kk_expf_neg_unclamped(float x)   /* -131 <= x <= 0 or NaN */
{
    int32_t ni;
    float p = kk_expf_reduced(x, 5.42101086242752217e-20f, &ni);   /* 2^-64 */
    return p * kk_f32_from_bits((uint32_t)(ni + (64 + 127)) << 23);
}

static KLKIT_HD float kk_expf_neg(float x)
{
    return kk_expf_neg_unclamped(-104.0f > x ? -104.0f : x);
}

/* exp(r) * scale (a power of two, folded into the coefficients) for x
 * clamped to the finite range (double); n is returned in *n_out, as a
 * double and as the integer *ni */
static KLKIT_HD double kk_exp_reduced(double x, double scale, double *n_out, int64_t *ni)
{
    const double shifter = 6755399441055744.0;  /* 1.5 * 2^52 */
    const double log2e = 1.4426950408889634074;
    const double ln2_hi = 0.6931471803691238;      /* 0x3fe62e42fee00000: 21 trailing zero bits */
    const double ln2_lo = 1.9082149292705877e-10;
    double t = KK_FMA(x, log2e, shifter);
    double n = t - shifter;
    *n_out = n;
    *ni = (int64_t)(kk_bits_f64(t) - kk_bits_f64(shifter));
    double r = KK_FMA(n, -ln2_hi, x);
    r = KK_FMA(n, -ln2_lo, r);
    /* exp(r) = 1 + r q(r), q of degree 10: Chebyshev fit of expm1(r)/r on
     * |r| <= ln2/2 (mpmath chebyfit), relative error 8e-18 */
    double p = 2.510520637395701e-08 * scale;
    p = KK_FMA(p, r, 2.7626357241447223e-07 * scale);
    p = KK_FMA(p, r, 2.7557255425746435e-06 * scale);
    p = KK_FMA(p, r, 2.4801504346997686e-05 * scale);
    p = KK_FMA(p, r, 0.00019841269874800493 * scale);
    p = KK_FMA(p, r, 0.0013888888932488599 * scale);
    p = KK_FMA(p, r, 0.008333333333326141 * scale);
    p = KK_FMA(p, r, 0.04166666666657314 * scale);
    p = KK_FMA(p, r, 0.1666666666666667 * scale);
    p = KK_FMA(p, r, 0.5000000000000006 * scale);
    p = KK_FMA(p, r, scale);
    return KK_FMA(p, r, scale);
}

static KLKIT_HD double kk_exp(double x)
{
    const double shifter = 6755399441055744.0;
    double lo = -746.0 > x ? -746.0 : x;        /* exp(-746) < 2^-1075: 0 */
    x = 710.0 < lo ? 710.0 : lo;                /* exp(710) > DBL_MAX: inf */
    double n;
    int64_t ni;
    double p = kk_exp_reduced(x, 1.0, &n, &ni);
    /* n/2 rounded, by the same shifter trick: AVX2 has no 64-bit arithmetic
     * right shift, this keeps the loop vectorisable. */
    double th = KK_FMA(n, 0.5, shifter);
    int64_t n1 = (int64_t)(kk_bits_f64(th) - kk_bits_f64(shifter));
    int64_t n2 = ni - n1;
    double s1 = kk_f64_from_bits((uint64_t)(n1 + 1023) << 52);
    double s2 = kk_f64_from_bits((uint64_t)(n2 + 1023) << 52);
    return (p * s1) * s2;
}

/* exp(x) for x <= 0 (or NaN), as kk_expf_neg: 2^n applied as 2^-512
 * (in the polynomial) times 2^(n+512) (n >= -1077), one rounding.
 * _unclamped: valid down to -1063, exp is 0 below -746. */
static KLKIT_HD double kk_exp_neg_unclamped(double x)   /* -1063 <= x <= 0 or NaN */
{
    double n;
    int64_t ni;
    double p = kk_exp_reduced(x, 7.4583407312002067e-155, &n, &ni);   /* 2^-512 */
    return p * kk_f64_from_bits((uint64_t)(ni + (512 + 1023)) << 52);
}

static KLKIT_HD double kk_exp_neg(double x)
{
    return kk_exp_neg_unclamped(-746.0 > x ? -746.0 : x);
}

/* log(x) for normal, positive, finite x (the callers' arguments lie in
 * (0.3, 3)), vectorisable: x = 2^k f with f in [sqrt(1/2), sqrt(2)), then
 * log f = 2 atanh(s), s = (f - 1)/(f + 1), |s| <= 0.172, by its series to
 * s^21 (truncation 3e-18).  k is read from the exponent bits without an
 * int64 shift or conversion (AVX2 has neither). */
static KLKIT_HD double kk_log_pos(double x)
{
    const uint64_t sqrt_half = 0x3fe6a09e667f3bcdull;
    uint64_t t = kk_bits_f64(x) - sqrt_half;
    double f = kk_f64_from_bits((t & 0x000fffffffffffffull) + sqrt_half);
    double k = kk_f64_from_bits((t >> 52) | 0x4330000000000000ull) - 4503599627370496.0;
    k = k >= 2048.0 ? k - 4096.0 : k;          /* the 12 top bits are signed */
    double s = (f - 1.0) / (f + 1.0), s2 = s * s;
    double p = 2.0 / 21.0;
    p = KK_FMA(p, s2, 2.0 / 19.0);
    p = KK_FMA(p, s2, 2.0 / 17.0);
    p = KK_FMA(p, s2, 2.0 / 15.0);
    p = KK_FMA(p, s2, 2.0 / 13.0);
    p = KK_FMA(p, s2, 2.0 / 11.0);
    p = KK_FMA(p, s2, 2.0 / 9.0);
    p = KK_FMA(p, s2, 2.0 / 7.0);
    p = KK_FMA(p, s2, 2.0 / 5.0);
    p = KK_FMA(p, s2, 2.0 / 3.0);
    double logf = KK_FMA(s * s2, p, 2.0 * s);
    return KK_FMA(k, 0.6931471803691238, KK_FMA(k, 1.9082149292705877e-10, logf));
}

/* log(1 + z) for z in (-0.7, 2): log of the rounded u = 1 + z plus the
 * first-order correction for that rounding, (z - (u - 1)) / u (Goldberg,
 * "What every computer scientist should know about floating-point", 1991) */
static KLKIT_HD double kk_log1p_mod(double z)
{
    double u = 1.0 + z;
    return kk_log_pos(u) + (z - (u - 1.0)) / u;
}

/* exp(r) - 1 for |r| <= 1 by its Taylor series r + r^2 sum r^k/(k+2)!,
 * k <= 17 (truncation 1e-18): no cancellation as r -> 0. */
static KLKIT_HD double kk_expm1_small(double r)
{
    double p = 8.22063524662433e-18;
    p = KK_FMA(p, r, 1.5619206968586225e-16);
    p = KK_FMA(p, r, 2.8114572543455206e-15);
    p = KK_FMA(p, r, 4.779477332387385e-14);
    p = KK_FMA(p, r, 7.647163731819816e-13);
    p = KK_FMA(p, r, 1.1470745597729725e-11);
    p = KK_FMA(p, r, 1.6059043836821613e-10);
    p = KK_FMA(p, r, 2.08767569878681e-09);
    p = KK_FMA(p, r, 2.505210838544172e-08);
    p = KK_FMA(p, r, 2.755731922398589e-07);
    p = KK_FMA(p, r, 2.7557319223985893e-06);
    p = KK_FMA(p, r, 2.48015873015873e-05);
    p = KK_FMA(p, r, 0.0001984126984126984);
    p = KK_FMA(p, r, 0.001388888888888889);
    p = KK_FMA(p, r, 0.008333333333333333);
    p = KK_FMA(p, r, 0.041666666666666664);
    p = KK_FMA(p, r, 0.16666666666666666);
    p = KK_FMA(p, r, 0.5);
    return KK_FMA(r * r, p, r);
}

/* phi(d) = exp(-d) - 1 + d >= 0, the per-term Bregman divergence of exp
 * (it is the k3 estimator of Schulman, "Approximating KL divergence", 2020).
 * Directly it cancels for small |d| (the result is ~d^2/2, the terms ~d), so
 * near 0 it is d^2 g(d), g = phi / d^2 = sum (-d)^k / (k+2)!: in float for
 * |d| <= 2 by a fit (kk_phif_wide), in double for |d| <= 1/2 by the series
 * truncated where the next term is below half an ulp (kk_phi_series).
 * Beyond, the callers form the weighted term w phi(d) directly as
 * w e^-d - w + w d (losing at most ~3 bits at |d| = 1/2, where
 * phi = 0.107 against terms of size 1; ~1.3 bits at |d| = 2), with w e^-d
 * computed as one exp so that it cannot overflow (divergence.h,
 * dense_rows.inc). */

/* phi(d) for |d| <= 2 in float: d^2 g(d) with g by its degree-10
 * least-squares Chebyshev fit on [-2, 2] (numpy, against mpmath); relative
 * error of phi <= 1.7e-7 there, exact 0 at d = 0.  Lets the KL loop skip
 * Q's exp where every |d| of a block is <= 2. */
static KLKIT_HD float kk_phif_wide(float d)   /* |d| <= 2 */
{
    float p = 2.22978436e-09f;
    p = KK_FMAF(p, d, -2.68796363e-08f);
    p = KK_FMAF(p, d, 2.74926862e-07f);
    p = KK_FMAF(p, d, -2.74833928e-06f);
    p = KK_FMAF(p, d, 2.48029355e-05f);
    p = KK_FMAF(p, d, -1.98425711e-04f);
    p = KK_FMAF(p, d, 1.38888764e-03f);
    p = KK_FMAF(p, d, -8.33332445e-03f);
    p = KK_FMAF(p, d, 4.16666679e-02f);
    p = KK_FMAF(p, d, -1.66666672e-01f);
    p = KK_FMAF(p, d, 0.5f);
    return d * d * p;
}

static KLKIT_HD double kk_phi_series(double d)   /* |d| <= 1/2 */
{
    double p = 1.0 / 6402373705728000.0;        /* 1/18!, then (-1)^k/(k+2)! */
    p = KK_FMA(p, d, -1.0 / 355687428096000.0);
    p = KK_FMA(p, d, 1.0 / 20922789888000.0);
    p = KK_FMA(p, d, -1.0 / 1307674368000.0);
    p = KK_FMA(p, d, 1.0 / 87178291200.0);
    p = KK_FMA(p, d, -1.0 / 6227020800.0);
    p = KK_FMA(p, d, 1.0 / 479001600.0);
    p = KK_FMA(p, d, -1.0 / 39916800.0);
    p = KK_FMA(p, d, 1.0 / 3628800.0);
    p = KK_FMA(p, d, -1.0 / 362880.0);
    p = KK_FMA(p, d, 1.0 / 40320.0);
    p = KK_FMA(p, d, -1.0 / 5040.0);
    p = KK_FMA(p, d, 1.0 / 720.0);
    p = KK_FMA(p, d, -1.0 / 120.0);
    p = KK_FMA(p, d, 1.0 / 24.0);
    p = KK_FMA(p, d, -1.0 / 6.0);
    p = KK_FMA(p, d, 0.5);
    return d * d * p;
}

/* 16-bit floats to float32, vectorisable.  bfloat16 is the top half of a
 * float32.  IEEE half: move exponent and mantissa into place and multiply by
 * 2^112 to rebias the exponent (15 -> 127); the multiply also turns half
 * subnormals into the right float32 normals.  Inf/NaN (exponent 31) get the
 * float32 all-ones exponent instead. */
static KLKIT_HD float kk_bf16_to_f32(uint16_t h)
{
    return kk_f32_from_bits((uint32_t)h << 16);
}

static KLKIT_HD float kk_f16_to_f32(uint16_t h)
{
    uint32_t hh = h;
    uint32_t mag = (hh & 0x7fffu) << 13;
    uint32_t v = kk_bits_f32(kk_f32_from_bits(mag) * 5.192296858534828e33f);  /* 2^112 */
    uint32_t special = 0u - (uint32_t)((hh & 0x7c00u) == 0x7c00u);         /* all ones */
    v = (v & ~special) | ((mag | 0x7f800000u) & special);
    return kk_f32_from_bits(v | ((hh & 0x8000u) << 16));
}

/* float32 to the 16-bit floats, rounded to nearest even, vectorisable (the
 * gradients of 16-bit inputs are written in their input's type).
 * bfloat16: add 0x7fff plus the lowest kept bit, keep the top half; a NaN
 * keeps its top half with the quiet bit set (rounding could make it inf).
 * IEEE half: below 2^-14 (half subnormals and zero) add 0.5, whose
 * exponent puts the half's 2^-24 unit at the float's last bit, so the float
 * addition itself rounds to even, and take the low bits; in the normal
 * range rebias the exponent (127 -> 15) and round on the 13 dropped bits
 * as for bfloat16; from 65520 up the rounding reaches 2^16: inf; NaN stays
 * a quiet NaN. */
static KLKIT_HD uint16_t kk_f32_to_bf16(float f)
{
    uint32_t u = kk_bits_f32(f);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : r);
}

static KLKIT_HD uint16_t kk_f32_to_f16(float f)
{
    uint32_t u = kk_bits_f32(f);
    uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    uint32_t sub = kk_bits_f32(kk_f32_from_bits(a) + 0.5f) - 0x3f000000u;
    uint32_t nrm = (a + 0xc8000fffu + ((a >> 13) & 1u)) >> 13;    /* -112 << 23 = 0xc8000000 */
    uint32_t h = a < 0x38800000u ? sub : nrm;                      /* 2^-14 */
    h = a >= 0x47800000u ? 0x7c00u : h;                            /* 2^16: inf */
    h = a > 0x7f800000u ? 0x7e00u : h;                             /* NaN */
    return (uint16_t)(h | sign);
}

#endif
