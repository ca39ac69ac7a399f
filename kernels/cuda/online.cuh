/* online.cuh: the per-thread running states of the row kernels, one
 * element at a time in the working precision C (float or double), and
 * their conversion to the double states of the math headers, whose
 * combines (lse.h, divergence.h, tokens.h) then join threads and pieces.
 *
 * Each is the header state specialised to one element (Milakov &
 * Gimelshein 2018, "Online normalizer calculation for softmax"): an element
 * above the running maximum m rescales what was summed by exp(m - x) and
 * becomes the new maximum, whose own 1 stays out of s (lse.h: lse =
 * m + log1p(s), exact for a dominant term).  Special values follow the
 * header combines: -inf adds nothing, equal maxima (+inf included) add 1,
 * NaN makes s NaN.
 */
#ifndef KLKIT_CUDA_ONLINE_CUH
#define KLKIT_CUDA_ONLINE_CUH

#include <math.h>

#include "klkit/divergence.h"
#include "klkit/expm.h"
#include "klkit/lse.h"

namespace kkcu {

__device__ __forceinline__ float ex(float x) { return expf(x); }
__device__ __forceinline__ double ex(double x) { return exp(x); }
__device__ __forceinline__ float l1p(float x) { return log1pf(x); }
__device__ __forceinline__ double l1p(double x) { return log1p(x); }

/* w phi(d) = w (exp(-d) - 1 + d) >= 0 for a weight w and wq = w exp(-d):
 * near 0 by phi's series (expm.h: float |d| <= 2, double |d| <= 1/2),
 * without cancellation; beyond as (wq - w) + w d, where w exp(-d) is not
 * formed (it could overflow where wq is small) */
__device__ __forceinline__ float wphi(float w, float wq, float d)
{
    return fabsf(d) <= 2.0f ? w * kk_phif_wide(d) : (wq - w) + w * d;
}
__device__ __forceinline__ double wphi(double w, double wq, double d)
{
    return fabs(d) <= 0.5 ? w * kk_phi_series(d) : (wq - w) + w * d;
}

/* w (exp(-d) - 1) = wq - w, near 0 without cancellation (as wphi) */
__device__ __forceinline__ float wem1(float w, float wq, float d)
{
    return fabsf(d) <= 2.0f ? w * expm1f(-d) : wq - w;
}
__device__ __forceinline__ double wem1(double w, double wq, double d)
{
    return fabs(d) <= 0.5 ? w * expm1(-d) : wq - w;
}

/* log-sum-exp: sum = exp(m) (1 + s) */
template <class C> struct olse {
    C m = -INFINITY, s = -1;
    __device__ __forceinline__ void push(C x)
    {
        if (x > m) {
            s = (1 + s) * ex(m - x);
            m = x;
        } else if (x == m) {
            if (x != -INFINITY) s += 1;
        } else {
            s += ex(x - m);                  /* -inf: 0; NaN: NaN */
        }
    }
    __device__ __forceinline__ kk_lse_t state() const { return kk_lse_t{ (double)m, (double)s }; }
};

/* entropy: also u = sum exp(x_i - m) (m - x_i) (divergence.h's kk_ent_t) */
template <class C> struct oent {
    olse<C> l;
    C u = 0;
    __device__ __forceinline__ void push(C x)
    {
        if (x > l.m) {
            C f = ex(l.m - x);
            u = l.m == -INFINITY ? (C)0 : f * (u + (x - l.m) * (1 + l.s));
            l.s = (1 + l.s) * f;
            l.m = x;
        } else if (x == l.m) {
            if (x != -INFINITY) l.s += 1;
        } else {
            C t = ex(x - l.m);
            l.s += t;
            u += t == 0 ? (C)0 : t * (l.m - x);
        }
    }
    __device__ __forceinline__ kk_ent_t state() const { return kk_ent_t{ l.state(), (double)u }; }
};

/* cross-entropy: lse of p and q and u = sum exp(xp_i - mp) (mq - xq_i)
 * (kk_xent_t) */
template <class C> struct oxent {
    olse<C> p, q;
    C u = 0;
    __device__ __forceinline__ void push(C xp, C xq)
    {
        if (xq > q.m && 1 + p.s != 0) u += (xq - q.m) * (1 + p.s);   /* u against the new mq */
        q.push(xq);
        C t;
        if (xp > p.m) {
            C f = ex(p.m - xp);
            /* (u = +inf, P > 0 where Q = 0, stays: inf * an underflowed f is NaN) */
            u = 1 + p.s == 0 ? (C)0 : (u == (C)INFINITY ? u : u * f);
            p.s = (1 + p.s) * f;
            p.m = xp;
            t = 1;
        } else if (xp == p.m) {
            if (xp != -INFINITY) p.s += 1;
            t = xp == -INFINITY ? (C)0 : (C)1;
        } else {
            t = ex(xp - p.m);
            p.s += t;
        }
        /* P > 0 where Q = 0: H(P, Q) = +inf, also where P's exp underflows
         * (q.m - xq would be NaN at q.m = -inf) */
        if (xq == -INFINITY && xp != -INFINITY)
            u = (C)INFINITY;
        else if (t != 0)
            u += t * (q.m - xq);
    }
    __device__ __forceinline__ kk_xent_t state() const
    {
        return kk_xent_t{ p.state(), q.state(), (double)u };
    }
};

/* label smoothing: v = sum w_c (x_c - m) against lse's running maximum m,
 * W = sum w_c (tokens.h's kk_smooth_t); push before the lse's own push */
template <class C> struct osmooth {
    C v = 0, w = 0;
    __device__ __forceinline__ void push(C x, C wc, C m_before)
    {
        /* against 0 while the maximum is -inf (tokens_rows.inc's chunk
         * sums): a -inf logit of positive weight gives -inf, never
         * -inf - -inf */
        C m = x > m_before ? x : m_before;
        const C mb = m_before == -INFINITY ? (C)0 : m_before;
        const C mn = m == -INFINITY ? (C)0 : m;
        if (mn != mb && w != 0) v += (mb - mn) * w;
        if (wc != 0) v += wc * (x - mn);
        w += wc;
    }
};

}  // namespace kkcu

#endif
