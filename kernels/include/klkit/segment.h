/* klkit/segment.h: scalar and combine math of the segmented reductions
 * (segment_sum / mean / max / logsumexp) and of the per-token KL estimators
 * (kl_estimate, seq_kl, agg_loss).  No loops over arrays: those are in
 * kernels/cpu/segment.c.
 *
 * ---- KL estimators (Schulman, "Approximating KL divergence", 2020) ----
 * From sampled-token log-probs, d = logp - ref_logp and r = -d:
 *     k1 = d,   k2 = d^2 / 2,   k3 = exp(r) - 1 - r,   abs = |d|.
 * k3 >= 0 for every r, but every framework evaluates it as written: for
 * small |r| the three terms are ~1 and the result ~r^2/2, so float32 keeps no
 * correct digit at |r| = 1e-4 (r^2/2 = 5e-9 is below half an ulp of 1) and
 * rounds to small NEGATIVE values.  Here
 *
 *   |r| <= 2:  k3 = r^2 * P(r),  P(r) = sum_{k>=0} r^k / (k+2)!
 *              (the tail of the exp series, no cancellation: P(r) lies in
 *              [0.28, 1.1] on the interval), Horner with FMA.  Terms are
 *              kept while 2^k/(k+2)! exceeds the result's half ulp:
 *              k <= 13 for float (truncation 6e-9 relative at |r| = 2,
 *              less below), k <= 22 for double (truncation 7e-18).
 *   |r| >  2:  k3 = (exp(r) - 1) - r with klkit's vectorised exp (expm.h,
 *              <= 1 ulp float / 2 ulp double); the result is >= 1.13 and at
 *              most ~3 times the largest term, so the subtraction loses
 *              under 2 bits.
 * r is the difference of the two inputs in the working precision (float
 * for 16/32-bit input, double for float64); its rounding error is exact
 * (TwoSum) and corrected to first order (kk_k3f_xy), so k3 is accurate for
 * the exact difference of the inputs.  Measured (tests/test_segments.py)
 * against a float64 reference checked with mpmath, |r| = 1e-8 .. 30: see
 * the bounds stated in segments.py (kl_estimate).
 *
 * Special values (no clamp): r = +inf gives +inf (exp(r) - r is NaN as
 * written; the limit is +inf); r = -inf gives +inf; a finite r whose exp
 * overflows gives +inf; NaN in logp or ref_logp gives NaN, and so does
 * logp = ref_logp = +-inf (inf - inf, as in IEEE).  k3 is never NaN from
 * finite input and never negative.
 *
 * clamp c >= 0 limits r (equivalently d) to [-c, c] before the estimator,
 * with two selects that let NaN through (verl clamps r at +-20).
 *
 * ---- reduction states ----
 * Sums accumulate in double (also for float32 / 16-bit input).  The max
 * state propagates NaN: once a NaN is seen it stays (kk_max_nan).  The
 * log-sum-exp state and its combine are those of lse.h.
 */
#ifndef KLKIT_SEGMENT_H
#define KLKIT_SEGMENT_H

#include <math.h>
#include "config.h"
#include "expm.h"
#include "lse.h"

/* the larger of a and b, NaN if either is NaN; one select per comparison so
 * loops over it vectorise */
static KLKIT_HD float kk_max_nanf(float a, float b)
{
    float t = b > a ? b : a;
    return b != b ? b : t;
}

static KLKIT_HD double kk_max_nan(double a, double b)
{
    double t = b > a ? b : a;
    return b != b ? b : t;
}

/* x limited to [-c, c]; NaN passes (both comparisons are false) */
static KLKIT_HD float kk_clampf(float x, float c)
{
    float lo = x < -c ? -c : x;
    return lo > c ? c : lo;
}

static KLKIT_HD double kk_clamp(double x, double c)
{
    double lo = x < -c ? -c : x;
    return lo > c ? c : lo;
}

/* k3(r) for |r| <= 2 by the series r^2 P(r), float (top of the file).
 * kk_k3f(r) == kk_k3f_series(r) bitwise there: a loop whose |r| are all
 * <= 2 may call this one alone and skip the exp. */
static KLKIT_HD float kk_k3f_series(float r)
{
    float p = 1.0f / 1307674368000.0f;          /* 1/15!  (k = 13) */
    p = KK_FMAF(p, r, 1.0f / 87178291200.0f);   /* 1/14! */
    p = KK_FMAF(p, r, 1.0f / 6227020800.0f);    /* 1/13! */
    p = KK_FMAF(p, r, 1.0f / 479001600.0f);     /* 1/12! */
    p = KK_FMAF(p, r, 1.0f / 39916800.0f);
    p = KK_FMAF(p, r, 1.0f / 3628800.0f);
    p = KK_FMAF(p, r, 1.0f / 362880.0f);
    p = KK_FMAF(p, r, 1.0f / 40320.0f);
    p = KK_FMAF(p, r, 1.0f / 5040.0f);
    p = KK_FMAF(p, r, 1.0f / 720.0f);
    p = KK_FMAF(p, r, 1.0f / 120.0f);
    p = KK_FMAF(p, r, 1.0f / 24.0f);
    p = KK_FMAF(p, r, 1.0f / 6.0f);
    p = KK_FMAF(p, r, 0.5f);
    return r * (r * p);                         /* r*p first: no early underflow */
}

/* k3(r) = exp(r) - 1 - r, float.  See the top of the file. */
static KLKIT_HD float kk_k3f(float r)
{
    float series = kk_k3f_series(r);
    float direct = (kk_expf(r) - 1.0f) - r;
    float ar = fabsf(r);
    float k = ar <= 2.0f ? series : direct;
    return r == INFINITY ? INFINITY : k;
}

/* k3(r) for |r| <= 2 by the series, double (as kk_k3f_series) */
static KLKIT_HD double kk_k3_series(double r)
{
    double p = 1.0 / 620448401733239439360000.0;   /* 1/24!  (k = 22) */
    p = KK_FMA(p, r, 1.0 / 25852016738884976640000.0);
    p = KK_FMA(p, r, 1.0 / 1124000727777607680000.0);
    p = KK_FMA(p, r, 1.0 / 51090942171709440000.0);
    p = KK_FMA(p, r, 1.0 / 2432902008176640000.0);   /* 1/20! */
    p = KK_FMA(p, r, 1.0 / 121645100408832000.0);
    p = KK_FMA(p, r, 1.0 / 6402373705728000.0);
    p = KK_FMA(p, r, 1.0 / 355687428096000.0);
    p = KK_FMA(p, r, 1.0 / 20922789888000.0);
    p = KK_FMA(p, r, 1.0 / 1307674368000.0);         /* 1/15! */
    p = KK_FMA(p, r, 1.0 / 87178291200.0);
    p = KK_FMA(p, r, 1.0 / 6227020800.0);
    p = KK_FMA(p, r, 1.0 / 479001600.0);
    p = KK_FMA(p, r, 1.0 / 39916800.0);
    p = KK_FMA(p, r, 1.0 / 3628800.0);               /* 1/10! */
    p = KK_FMA(p, r, 1.0 / 362880.0);
    p = KK_FMA(p, r, 1.0 / 40320.0);
    p = KK_FMA(p, r, 1.0 / 5040.0);
    p = KK_FMA(p, r, 1.0 / 720.0);
    p = KK_FMA(p, r, 1.0 / 120.0);
    p = KK_FMA(p, r, 1.0 / 24.0);
    p = KK_FMA(p, r, 1.0 / 6.0);
    p = KK_FMA(p, r, 0.5);
    return r * (r * p);
}

/* k3(r) = exp(r) - 1 - r, double */
static KLKIT_HD double kk_k3(double r)
{
    double series = kk_k3_series(r);
    double direct = (kk_exp(r) - 1.0) - r;
    double ar = fabs(r);
    double k = ar <= 2.0 ? series : direct;
    return r == INFINITY ? INFINITY : k;
}

/* k3 of the EXACT difference r = y - x of two inputs (x = logp, y =
 * ref_logp), d = x - y clamped to [-c, c] first.  The difference is rounded
 * to s = fl(x - y) with error e = (x - y) - s found exactly by TwoSum
 * (Knuth; needs no FMA and survives -O3 without -ffast-math), and
 *     k3(r + re) = k3(r) + re * expm1(r) + O(re^2),   re = -e,
 * with expm1(r) = k3(r) + r: so the rounding of the difference costs no
 * accuracy even where k3 is ill-conditioned in r (k3 ~ e^r at large r, where
 * one rounding of r alone would cost r/2 ulp).  A clamped d, an infinite
 * or NaN difference, and an overflowed k3 get no correction.  series_only
 * (a compile-time constant after inlining) skips the exp where the caller
 * knows |d| <= 2: the same bits as the full form there. */
static KLKIT_HD float kk_k3f_xy(float x, float y, float c, int series_only)
{
    float d = x - y;
    float bb = d - x;
    float e = (x - (d - bb)) + (-y - bb);
    float dc = kk_clampf(d, c);
    float r = -dc;
    float k = series_only ? kk_k3f_series(r) : kk_k3f(r);
    float re = dc == d ? -e : 0.0f;             /* clamped: d is not used */
    float ad = fabsf(d);
    re = ad <= 3.0e38f ? re : 0.0f;             /* inf / NaN difference */
    float kc = KK_FMAF(re, k + r, k);
    kc = k <= 3.0e38f ? kc : k;                 /* overflowed (or NaN) k3 */
    return re == 0.0f ? k : kc;
}

static KLKIT_HD double kk_k3_xy(double x, double y, double c, int series_only)
{
    double d = x - y;
    double bb = d - x;
    double e = (x - (d - bb)) + (-y - bb);
    double dc = kk_clamp(d, c);
    double r = -dc;
    double k = series_only ? kk_k3_series(r) : kk_k3(r);
    double re = dc == d ? -e : 0.0;
    double ad = fabs(d);
    re = ad <= 1.7e308 ? re : 0.0;
    double kc = KK_FMA(re, k + r, k);
    kc = k <= 1.7e308 ? kc : k;
    return re == 0.0 ? k : kc;
}

#endif
