/* klkit/divergence.h: scalar math for entropy, cross-entropy, KL and JS of
 * distributions given by logits (or log-probs) along a row.
 *
 * Entropy from logits, one pass.  With e_i = exp(x_i - m), Z = sum e_i:
 *     H = sum_i (e_i / Z) (m - x_i) + log Z
 * every term is >= 0, so nothing cancels when H is small (near one-hot rows).
 * The state (m, s, u) holds the lse state (m, s) of lse.h and
 * u = sum_i e_i (m - x_i); raising m to m' multiplies every e_i by
 * f = exp(m - m') and adds (m' - m) to every (m - x_i):
 *     u' = f (u + (m' - m) (1 + s)).
 * Cross-entropy H(P, Q) = sum_i p_i (mq - xq_i) + log Zq the same way, with
 * u = sum_i ep_i (mq - xq_i) rescaled for both maxima.
 *
 * KL from logits.  With D_i = Dx_i - c, Dx_i = (xp_i - xq_i) / T the logit
 * difference, any shift c and the P-averages A = E_p[phi(D)], B = E_p[D]
 * (phi(d) = exp(-d) - 1 + d >= 0, expm.h), the identity
 *     KL(P||Q) = E_p[Dx] + log E_p[exp(-Dx)] = B + log1p(A - B)
 * holds exactly.  With c near the P-mean of Dx (B ~ 0) A is a sum of
 * non-negative terms and KL ~ A: no cancellation even when KL ~ 1e-15, and
 * the weights p_i enter only at second order (the KL is the Jensen gap of
 * exp over p, which is stationary in p), so float32 weights are enough.
 * Dx_i is formed exactly (TwoSum, Knuth TAOCP 4.2.2) before the shift, or
 * in float from the rounded difference where that provably moves KL by less
 * than u/2 relative (kl_rounded_diff_ok, dense_rows.inc).  The sums are
 * formed per chunk at the chunk's own shift and moved to a common one
 * (kk_kl_shift_sums below).
 *
 * JS with mixture M = beta P + (1 - beta) Q is summed in Bregman form:
 *     beta KL(P||M) + (1-beta) KL(Q||M)
 *       = sum_i beta p_i phi(dp_i) + (1 - beta) q_i phi(dq_i),
 *     dp_i = log(p_i/m_i) = -log1p((1-beta) expm1(r_i)),
 *     dq_i = log(q_i/m_i) = -log1p(beta expm1(-r_i)),  r_i = log(q_i/p_i),
 * all terms >= 0; w phi(d) is taken as (m_i - w) + w d when |d| > 1/2 so that
 * exp(-d) is never formed where it could overflow.  (Float input takes the
 * same terms as beta (1-beta) exp(log p + r/2) (r^2/2) G(r) with G a
 * polynomial fitted per beta where |r| <= 3: dense_rows.inc, js_poly_fit.)
 */
#ifndef KLKIT_DIVERGENCE_H
#define KLKIT_DIVERGENCE_H

#include <math.h>
#include "config.h"
#include "expm.h"
#include "lse.h"

/* ---- entropy (one distribution) ---- */
typedef struct { kk_lse_t l; double u; } kk_ent_t;

/* the state of no elements (the identity of kk_ent_combine; value NaN) */
static KLKIT_HD kk_ent_t kk_ent_empty(void)
{
    kk_ent_t e;
    e.l = kk_lse_empty();
    e.u = 0.0;
    return e;
}

static KLKIT_HD kk_ent_t kk_ent_combine(kk_ent_t a, kk_ent_t b)
{
    if (a.l.m < b.l.m) { kk_ent_t t = a; a = b; b = t; }
    kk_ent_t r;
    r.l = kk_lse_combine(a.l, b.l);
    double f = a.l.m == b.l.m ? 1.0 : kk_exp(b.l.m - a.l.m);
    double shift = a.l.m == b.l.m ? 0.0 : a.l.m - b.l.m;
    r.u = a.u + (f == 0.0 ? 0.0 : f * (b.u + shift * (1.0 + b.l.s)));
    return r;
}

static KLKIT_HD double kk_ent_value(kk_ent_t a)
{
    if (!isfinite(a.l.m)) return NAN;      /* softmax undefined: all -inf, +inf or NaN */
    return a.u / (1.0 + a.l.s) + log1p(a.l.s);
}

/* ---- cross-entropy H(P, Q) ---- */
typedef struct { kk_lse_t p, q; double u; } kk_xent_t;

/* u of x re-expressed against the maxima (mp, mq) of the combined state */
static KLKIT_HD double kk_xent_rescale(kk_xent_t x, double mp, double mq)
{
    double f = x.p.m == mp ? 1.0 : kk_exp(x.p.m - mp);
    if (f == 0.0) return 0.0;
    double shift = x.q.m == mq ? 0.0 : mq - x.q.m;
    return f * (x.u + shift * (1.0 + x.p.s));
}

static KLKIT_HD kk_xent_t kk_xent_combine(kk_xent_t a, kk_xent_t b)
{
    kk_xent_t r;
    r.p = kk_lse_combine(a.p, b.p);
    r.q = kk_lse_combine(a.q, b.q);
    r.u = kk_xent_rescale(a, r.p.m, r.q.m) + kk_xent_rescale(b, r.p.m, r.q.m);
    return r;
}

static KLKIT_HD double kk_xent_value(kk_xent_t a)
{
    if (!isfinite(a.p.m) || !isfinite(a.q.m)) return NAN;
    return a.u / (1.0 + a.p.s) + log1p(a.q.s);
}

/* ---- KL from the P-weighted sums of the shifted log-ratio ---- */
/* u - log1p(u) for u in [-1/2, 1], without cancellation near 0: with
 * s = u / (2 + u), log1p(u) = 2 atanh(s) and u - 2 s = s u, so
 *     u - log1p(u) = s u - 2 (s^3/3 + s^5/5 + ...),
 * |s| <= 1/3 (the series to s^35, truncation < 1e-18). */
static KLKIT_HD double kk_u_minus_log1p(double u)
{
    double s = u / (2.0 + u), s2 = s * s, t = 0.0;
    for (int k = 35; k >= 3; k -= 2) t = KK_FMA(t, s2, 1.0 / k);
    return s * u - 2.0 * s * s2 * t;
}

/* W = sum w_i, A = sum w_i phi(D_i), B = sum w_i D_i (see the header
 * comment), all finite; a = A/W, b = B/W, u = a - b = E_p[e^-D] - 1.
 * KL = b + log1p(u) cancels b against log1p(u) when the distributions are
 * close, an error of eps |b| in double; then it is summed as
 * a - (u - log1p(u)) instead, where a ~ (b^2 + var)/2 and
 * u - log1p(u) ~ b^2/2 cancel only by the ratio b^2 / var, which the
 * shift keeps below ~1 (dense_rows.inc). */
static KLKIT_HD double kk_kl_value(double W, double A, double B)
{
    double a = A / W, b = B / W, u = a - b;
    double kl = u >= -0.5 && u <= 1.0 ? a - kk_u_minus_log1p(u) : b + log1p(u);
    return kl < 0.0 ? 0.0 : kl;   /* rounding can leave -tiny; KL >= 0; NaN stays */
}

/* The sums at shift c moved to shift c + delta (every D_i -> D_i - delta):
 * from sum w_i e^-D_i = W + A - B,
 *     A' = e^delta A + W phi(-delta) - expm1(delta) B,   B' = B - delta W.
 * The first two terms are >= 0; with |B| <= sqrt(W A) (sums near their own
 * P-mean: b^2 <= a, as the callers keep them) the third cancels at most a
 * factor (1 + x + x^2/2) / (1 - x + x^2/2) <= 6 of them, x = |delta|/sqrt(a):
 * less than 3 bits of a double. */
static KLKIT_HD void kk_kl_shift_sums(double *W, double *A, double *B, double delta)
{
    /* nothing to move (this also keeps 0 * inf out of an infinite A, and
     * out of empty sums with a huge delta) */
    if (delta == 0.0 || (*W == 0.0 && *A == 0.0 && *B == 0.0)) return;
    double ad = delta < 0.0 ? -delta : delta;
    double em1 = expm1(delta);
    double ph = ad <= 0.5 ? kk_phi_series(-delta) : em1 - delta;
    /* e^delta A as A + expm1(delta) A near 0; below, as a product: where
     * expm1(delta) rounds to -1 (delta < -37) the sum would be 0, not
     * e^delta A (A can be e^160 from a heavy tail of Q) */
    double ea = delta >= -0.5 ? *A + em1 * *A : *A * kk_exp(delta);
    *A = ea + (*W * ph - em1 * *B);
    *B = *B - delta * *W;
}

/* ---- the KL sums state of a row, or of any run of its chunks ----
 * W, A, B (above) with the P weights taken against exp(m), m the largest
 * xp/T, at the shift c = (ch + cl) / T: (ch, cl) is an unevaluated pair of
 * working-precision values in raw logit units (dense_rows.inc explains the
 * pair), held as doubles, which represent both exactly.  mq is the largest
 * xq/T; zq counts the entries with P > 0 = Q (KL = +inf), nan the NaN
 * inputs.  off is the lse state (lse.h) of xq/T over the chunks where P = 0
 * throughout: Q's mass there is part of E_p[e^-D], added to A by
 * kk_kl_finish once m and the shift are final.  has_sums: some chunk with a
 * finite maximum of xp/T (working precision) gave sums; a state without
 * carries only m, mq, the counts and off. */
typedef struct {
    double m, mq;
    double ch, cl;
    double W, A, B;
    double zq, nan;
    kk_lse_t off;
    int has_sums;
} kk_kl_t;

static KLKIT_HD kk_kl_t kk_kl_empty(void)
{
    kk_kl_t e;
    e.m = -INFINITY;
    e.mq = -INFINITY;
    e.ch = 0.0;
    e.cl = 0.0;
    e.W = 0.0;
    e.A = 0.0;
    e.B = 0.0;
    e.zq = 0.0;
    e.nan = 0.0;
    e.off = kk_lse_empty();
    e.has_sums = 0;
    return e;
}

/* The shift c = (ch + cl) / T of the sums, in units of x/T */
static KLKIT_HD double kk_kl_shift(kk_kl_t k, double inv_t)
{
    return (k.ch + k.cl) * inv_t;
}

/* a then b (b the later chunks of the row).  Both states' sums are taken
 * against the larger maximum, then moved to the shift of the heavier one
 * (the larger W): both have b^2 <= a (sums near their own P-mean), so the
 * move cancels at most a factor 6 in double (kk_kl_shift_sums).  A b
 * without sums (P = 0 throughout, or a maximum that is +inf or overflows
 * the working precision) only raises m: once m holds such a maximum the
 * row's KL never reads the sums (NaN, or the direct form of
 * dense_rows.inc), so a's are not rescaled. */
static KLKIT_HD kk_kl_t kk_kl_combine(kk_kl_t a, kk_kl_t b, double inv_t)
{
    a.mq = b.mq > a.mq ? b.mq : a.mq;
    a.nan += b.nan;
    a.zq += b.zq;
    a.off = kk_lse_combine(a.off, b.off);
    if (!b.has_sums) {
        a.m = b.m > a.m ? b.m : a.m;
        return a;
    }
    /* both states against the larger maximum ... */
    if (b.m > a.m) {
        double f = a.m == -INFINITY ? 0.0 : kk_exp(a.m - b.m);
        a.W *= f;
        a.A *= f;
        a.B *= f;
        a.m = b.m;
    } else {
        double f = kk_exp(b.m - a.m);
        b.W *= f;
        b.A *= f;
        b.B *= f;
    }
    /* ... and at the shift of the heavier one */
    double delta = ((b.ch - a.ch) + (b.cl - a.cl)) * inv_t;
    if (!a.has_sums || b.W > a.W) {
        if (a.has_sums) kk_kl_shift_sums(&a.W, &a.A, &a.B, delta);
        a.ch = b.ch;
        a.cl = b.cl;
        a.has_sums = 1;
    } else {
        kk_kl_shift_sums(&b.W, &b.A, &b.B, -delta);
    }
    a.W += b.W;
    a.A += b.A;
    a.B += b.B;
    return a;
}

/* The state of a whole row: Q's mass over its P = 0 chunks,
 * sum of w_q = exp(xq/T - m + c), moved from off into A (rows whose maxima
 * are not finite are left alone: their KL is NaN).  The result is still a
 * state (A holds that mass against its m and shift like any other). */
static KLKIT_HD kk_kl_t kk_kl_finish(kk_kl_t k, double inv_t)
{
    if (!isfinite(k.m) || !isfinite(k.mq)) return k;
    if (k.off.m > -INFINITY)
        k.A += kk_exp(kk_lse_value(k.off) - k.m + kk_kl_shift(k, inv_t));
    k.off = kk_lse_empty();
    return k;
}

/* KL from the sums are only taken where they can be trusted:
 * - logits so large that their rounding in the working precision, (|m| +
 *   |c|) eps, exceeds KK_HUGE_LOGIT_NATS nats are "huge" (the NumPy
 *   reference's _HUGE_LOGIT_NATS, same value);
 * - the sums' shift c must lie within KK_KL_SHIFT_MAX_NATS of the P-mean of
 *   the log-ratio: |B| / W <= KK_KL_SHIFT_MAX_NATS (the row loop keeps it
 *   near 0). */
#define KK_HUGE_LOGIT_NATS 1e-3
#define KK_KL_SHIFT_MAX_NATS 64.0

/* The special values of KL(P||Q) for a finished row state (kk_kl_finish):
 * 1 with *value NaN for NaN input or a maximum that is not finite, 1 with
 * +inf where P > 0 = Q; 0 where the state has none. */
static KLKIT_HD int kk_kl_special(kk_kl_t k, double *value)
{
    if (k.nan > 0.0 || !isfinite(k.m) || !isfinite(k.mq)) {
        *value = NAN;
        return 1;
    }
    if (k.zq > 0.0) {
        *value = INFINITY;
        return 1;
    }
    return 0;
}

/* whether KL may be taken from the sums of a finished state without a
 * special value, its inputs read in a precision of unit roundoff eps */
static KLKIT_HD int kk_kl_sums_usable(kk_kl_t k, double inv_t, double eps)
{
    double c = kk_kl_shift(k, inv_t);
    int huge = (fabs(k.m) + fabs(c)) * eps > KK_HUGE_LOGIT_NATS;
    return !huge && isfinite(k.A) && isfinite(k.B) && k.A >= 0.0 &&
           fabs(k.B) <= KK_KL_SHIFT_MAX_NATS * k.W;
}

/* KL(P||Q) of a finished row state: its special value, else the value of
 * its sums where they are usable, else NaN (the direct form over the row,
 * which dense_rows.inc's kl_from_sums sums then, needs the row itself). */
static KLKIT_HD double kk_kl_state_value(kk_kl_t k, double inv_t, double eps)
{
    double v;
    if (kk_kl_special(k, &v)) return v;
    return kk_kl_sums_usable(k, inv_t, eps) ? kk_kl_value(k.W, k.A, k.B) : NAN;
}

/* ---- JS, one element, branch-free (the row loops vectorise it) ----
 * beta p phi(dp) + (1-beta) q phi(dq) given p, q, r = log(q/p) (+-inf where
 * p or q is 0), beta in [0, 1] and the logs of beta and 1 - beta:
 *   |r| <= 1: dp = -log1p((1-beta) expm1(r)), dq = -log1p(beta expm1(-r)),
 *             no cancellation as r -> 0;
 *   |r| > 1:  dp = -log(beta + (1-beta) e^r) by log-add-exp (no overflow),
 *             dq = dp + r;
 * w phi(d) is taken as (m - w) + w d where |d| > 1/2, so exp(-d) is never
 * formed.  p = 0 leaves (1-beta) q (-log(1-beta)), q = 0 beta p (-log beta);
 * beta = 0 or 1 gives 0, NaN stays NaN.  Lanes whose r is infinite compute
 * garbage that the final selects discard. */
static KLKIT_HD double kk_js_term(double p, double q, double r, double beta,
                                  double log_beta, double log_nb)
{
    double nb = 1.0 - beta;
    double ar = r < 0.0 ? -r : r;
    double e = kk_expm1_small(ar <= 1.0 ? r : 0.0);
    double dps = -kk_log1p_mod(nb * e);
    double dqs = -kk_log1p_mod(beta * (-e / (1.0 + e)));    /* expm1(-r) */
    double x2 = log_nb + r;
    double hi = log_beta > x2 ? log_beta : x2, lo = log_beta > x2 ? x2 : log_beta;
    double dpl = -(hi + kk_log1p_mod(kk_exp(lo - hi)));
    double dp = ar <= 1.0 ? dps : dpl;
    double dq = ar <= 1.0 ? dqs : dpl + r;
    double m = beta * p + nb * q;
    double adp = dp < 0.0 ? -dp : dp, adq = dq < 0.0 ? -dq : dq;
    double tp = adp <= 0.5 ? p * kk_phi_series(dp) : (m - p) + p * dp;
    double tq = adq <= 0.5 ? q * kk_phi_series(dq) : (m - q) + q * dq;
    double t = beta * tp + nb * tq;
    t = p == 0.0 ? nb * q * -log_nb : t;
    t = q == 0.0 ? (p == 0.0 ? 0.0 : beta * p * -log_beta) : t;
    t = beta == 0.0 ? 0.0 : (beta == 1.0 ? 0.0 : t);
    return r != r ? r : t;
}

#endif
