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
 *              [0.28, 1.1] on the interval), by Estrin's scheme with FMA
 *              (short dependency chains: loops over it stay
 *              throughput-bound).  Terms are kept while 2^k/(k+2)!
 *              exceeds the result's half ulp:
 *              k <= 13 for float (truncation 6e-9 relative at |r| = 2,
 *              less below), k <= 22 for double (truncation 7e-18).
 *   |r| >  2:  k3 = (exp(r) - 1) - r with klkit's vectorised exp (expm.h,
 *              <= 1 ulp float / 2 ulp double); the result is >= 1.13 and at
 *              most ~3 times the largest term, so the subtraction loses
 *              under 2 bits.
 * r is the difference of the two inputs in the working precision (float
 * for 16/32-bit input, double for float64); its rounding error is exact
 * (TwoSum) and corrected to first order (kk_k3f_xy), so k3 is accurate for
 * the exact difference of the inputs.  Measured against mpmath for
 * |r| = 1e-8 .. 30, both signs: <= 2.5 ulp (float), <= 3 ulp (double), the
 * largest in the series range (the two roundings of r * (r * P)).
 *
 * Special values (no clamp): r = +inf gives +inf (exp(r) - r is NaN as
 * written; the limit is +inf); r = -inf gives +inf; a finite r whose exp
 * overflows gives +inf; NaN in logp or ref_logp gives NaN, and so does
 * logp = ref_logp = +-inf (inf - inf, as in IEEE); every NaN result is the
 * canonical quiet NaN.  k3 is never NaN from finite input and never
 * negative.
 *
 * clamp c >= 0 limits r (equivalently d) to [-c, c] before the estimator,
 * with two selects that let NaN through (verl clamps r at +-20).
 *
 * ---- reduction states (kk_seg_t) ----
 * A state (a, b): sum and mean keep the sum in a, max the maximum in a,
 * logsumexp the lse state (m, s) of lse.h in (a, b).  Sums accumulate in
 * double (also for float32 / 16-bit input).  The max state propagates NaN:
 * once a NaN is seen it stays (kk_max_nan); max(-0, +0) = +0 in either
 * order (IEEE 754-2019 maximum).  The log-sum-exp state and its combine are
 * those of lse.h.  An empty sequence has the value the caller gives.
 */
#ifndef KLKIT_SEGMENT_H
#define KLKIT_SEGMENT_H

#include <math.h>
#include "codes.h"
#include "config.h"
#include "expm.h"
#include "lse.h"

/* the larger of a and b, NaN if either is NaN; one select per comparison so
 * loops over it vectorise */
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

/* "x is finite" for an x >= 0 (an |d| or a k3 below), written as one
 * compare with the largest finite value (FLT_MAX, DBL_MAX) that
 * vectorises; false for +inf and NaN.  (A bound below it would skip the
 * k3 forms' first-order correction for the largest results, whose
 * correction is the largest in ulps: 60 ulp at r = 88.6 in float.) */
static KLKIT_HD int kk_finite_nonnegf(float x)
{
    return x <= 3.40282347e38f;
}

static KLKIT_HD int kk_finite_nonneg(double x)
{
    return x <= 1.7976931348623157e308;
}

/* k3(r) for |r| <= 2 by the series r^2 P(r), float (top of the file).
 * kk_k3f(r) == kk_k3f_series(r) bitwise there: a loop whose |r| are all
 * <= 2 may call this one alone and skip the exp. */
static KLKIT_HD float kk_k3f_series(float r)
{
    /* P(r) = sum_{k=0}^{13} r^k/(k+2)! by Estrin's scheme: pairs, then
     * pairs of pairs, so the dependency chain is 5 operations deep instead
     * of Horner's 14 (the loops over it are latency-bound otherwise) */
    float r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    float p0 = KK_FMAF(1.0f / 6.0f, r, 0.5f);
    float p1 = KK_FMAF(1.0f / 120.0f, r, 1.0f / 24.0f);
    float p2 = KK_FMAF(1.0f / 5040.0f, r, 1.0f / 720.0f);
    float p3 = KK_FMAF(1.0f / 362880.0f, r, 1.0f / 40320.0f);
    float p4 = KK_FMAF(1.0f / 39916800.0f, r, 1.0f / 3628800.0f);
    float p5 = KK_FMAF(1.0f / 6227020800.0f, r, 1.0f / 479001600.0f);
    float p6 = KK_FMAF(1.0f / 1307674368000.0f, r, 1.0f / 87178291200.0f);
    float q0 = KK_FMAF(p1, r2, p0);
    float q1 = KK_FMAF(p3, r2, p2);
    float q2 = KK_FMAF(p5, r2, p4);
    float s0 = KK_FMAF(q1, r4, q0);
    float s1 = KK_FMAF(p6, r4, q2);
    float p = KK_FMAF(s1, r8, s0);
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
    /* P(r) = sum_{k=0}^{22} r^k/(k+2)!, Estrin's scheme (as the float one) */
    double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4, r16 = r8 * r8;
    double p0 = KK_FMA(1.0 / 6.0, r, 0.5);
    double p1 = KK_FMA(1.0 / 120.0, r, 1.0 / 24.0);
    double p2 = KK_FMA(1.0 / 5040.0, r, 1.0 / 720.0);
    double p3 = KK_FMA(1.0 / 362880.0, r, 1.0 / 40320.0);
    double p4 = KK_FMA(1.0 / 39916800.0, r, 1.0 / 3628800.0);
    double p5 = KK_FMA(1.0 / 6227020800.0, r, 1.0 / 479001600.0);
    double p6 = KK_FMA(1.0 / 1307674368000.0, r, 1.0 / 87178291200.0);
    double p7 = KK_FMA(1.0 / 355687428096000.0, r, 1.0 / 20922789888000.0);
    double p8 = KK_FMA(1.0 / 121645100408832000.0, r, 1.0 / 6402373705728000.0);
    double p9 = KK_FMA(1.0 / 51090942171709440000.0, r, 1.0 / 2432902008176640000.0);
    double p10 = KK_FMA(1.0 / 25852016738884976640000.0, r, 1.0 / 1124000727777607680000.0);
    double p11 = 1.0 / 620448401733239439360000.0;   /* 1/24! (k = 22) */
    double q0 = KK_FMA(p1, r2, p0);
    double q1 = KK_FMA(p3, r2, p2);
    double q2 = KK_FMA(p5, r2, p4);
    double q3 = KK_FMA(p7, r2, p6);
    double q4 = KK_FMA(p9, r2, p8);
    double q5 = KK_FMA(p11, r2, p10);
    double s0 = KK_FMA(q1, r4, q0);
    double s1 = KK_FMA(q3, r4, q2);
    double s2 = KK_FMA(q5, r4, q4);
    double t0 = KK_FMA(s1, r8, s0);
    double p = KK_FMA(s2, r16, t0);
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
 * (kk_diff_err), and
 *     k3(r + re) = k3(r) + re * expm1(r) + O(re^2),   re = -e,
 * with expm1(r) = k3(r) + r: so the rounding of the difference costs no
 * accuracy even where k3 is ill-conditioned in r (k3 ~ e^r at large r, where
 * one rounding of r alone would cost r/2 ulp).  A clamped d, an infinite
 * or NaN difference, and an overflowed k3 get no correction.  Every NaN
 * result is the canonical quiet NaN, so that the two forms below (and any
 * mix of them) give identical bits. */
static KLKIT_HD float kk_k3f_xy(float x, float y, float c)
{
    float d = x - y;
    float e = kk_diff_errf(x, y, d);
    float dc = kk_clampf(d, c);
    float r = -dc;
    float k = kk_k3f(r);
    float re = dc == d ? -e : 0.0f;             /* clamped: d is not used */
    /* d rounded onto the clamp bound while the exact difference d + e lies
     * outside: the clamped value is the bound itself */
    float out = d * e > 0.0f ? 0.0f : re;
    re = fabsf(d) == c ? out : re;
    float ad = fabsf(d);
    re = kk_finite_nonnegf(ad) ? re : 0.0f;     /* inf / NaN difference */
    float kc = KK_FMAF(re, k + r, k);
    kc = kk_finite_nonnegf(k) ? kc : k;         /* overflowed (or NaN) k3 */
    kc = re == 0.0f ? k : kc;
    return kc == kc ? kc : NAN;
}

/* The same where the caller knows that no d is clamped and every |d| <= 2
 * or NaN: identical bits (the guards above do not fire there, and
 * fma(0, v, k) = k), half the instructions. */
static KLKIT_HD float kk_k3f_xy_small(float x, float y)
{
    float d = x - y;
    float e = kk_diff_errf(x, y, d);
    float r = -d;
    float k = kk_k3f_series(r);
    float kc = KK_FMAF(-e, k + r, k);
    return kc == kc ? kc : NAN;
}

static KLKIT_HD double kk_k3_xy(double x, double y, double c)
{
    double d = x - y;
    double e = kk_diff_err(x, y, d);
    double dc = kk_clamp(d, c);
    double r = -dc;
    double k = kk_k3(r);
    double re = dc == d ? -e : 0.0;
    double out = d * e > 0.0 ? 0.0 : re;        /* on the bound, exact value outside */
    re = fabs(d) == c ? out : re;
    double ad = fabs(d);
    re = kk_finite_nonneg(ad) ? re : 0.0;       /* inf / NaN difference */
    double kc = KK_FMA(re, k + r, k);
    kc = kk_finite_nonneg(k) ? kc : k;          /* overflowed (or NaN) k3 */
    kc = re == 0.0 ? k : kc;
    return kc == kc ? kc : NAN;
}

static KLKIT_HD double kk_k3_xy_small(double x, double y)
{
    double d = x - y;
    double e = kk_diff_err(x, y, d);
    double r = -d;
    double k = kk_k3_series(r);
    double kc = KK_FMA(-e, k + r, k);
    return kc == kc ? kc : NAN;
}

/* ---- reduction states (top of the file); op is an enum kk_segop ---- */
typedef struct { double a, b; } kk_seg_t;

static KLKIT_HD kk_seg_t kk_seg_empty(int op)
{
    kk_seg_t e;
    if (op == KK_SEG_LSE) { kk_lse_t l = kk_lse_empty(); e.a = l.m; e.b = l.s; }
    else if (op == KK_SEG_MAX) { e.a = -INFINITY; e.b = 0.0; }
    else { e.a = 0.0; e.b = 0.0; }
    return e;
}

static KLKIT_HD kk_seg_t kk_seg_combine(int op, kk_seg_t x, kk_seg_t y)
{
    if (op == KK_SEG_LSE) {
        kk_lse_t p = { x.a, x.b }, q = { y.a, y.b };
        kk_lse_t r = kk_lse_combine(p, q);
        x.a = r.m; x.b = r.s;
    } else if (op == KK_SEG_MAX) {
        if (x.a == 0 && y.a == 0)
            x.a = x.a + y.a;      /* max(-0, +0) = +0 in either order */
        else
            x.a = kk_max_nan(x.a, y.a);
    } else {
        x.a = x.a + y.a;
    }
    return x;
}

/* the result of a sequence of count terms; empty if there are none */
static KLKIT_HD double kk_seg_value(int op, kk_seg_t x, int64_t count, double empty)
{
    if (count == 0) return empty;
    if (op == KK_SEG_LSE) { kk_lse_t l = { x.a, x.b }; return kk_lse_value(l); }
    if (op == KK_SEG_MEAN) return x.a / (double)count;
    return x.a;
}

#endif
