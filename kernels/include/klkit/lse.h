/* klkit/lse.h: the log-sum-exp state and its associative combine.
 *
 * A state (m, s) stands for  sum_i exp(x_i) = exp(m) * (1 + s)  where m is the
 * largest x_i and s sums exp(x_i - m) over every element except ONE
 * occurrence of the maximum.  Keeping the maximum's own 1 out of s is what
 * makes  lse = m + log1p(s)  exact for a dominant term and accurate when the
 * others are tiny (scipy's logsumexp does the same; for log_softmax it gives
 * log p_max = -log1p(s) instead of a rounded 0).
 *
 * The empty state is (-inf, -1): exp(-inf) * 0 = 0.  Combining two states
 * rescales the smaller by exp(m_small - m_big) (Milakov & Gimelshein, "Online
 * normalizer calculation for softmax", 2018); equal maxima (also both +inf or
 * both -inf) add exactly.  NaN in m or s propagates.  The combine is
 * associative up to rounding, and every caller combines in a fixed order,
 * so results do not depend on the thread count.
 */
#ifndef KLKIT_LSE_H
#define KLKIT_LSE_H

#include <math.h>
#include "config.h"
#include "expm.h"

typedef struct { double m, s; } kk_lse_t;

static KLKIT_HD kk_lse_t kk_lse_empty(void)
{
    kk_lse_t e = { -INFINITY, -1.0 };
    return e;
}

static KLKIT_HD kk_lse_t kk_lse_combine(kk_lse_t a, kk_lse_t b)
{
    if (a.m < b.m) { kk_lse_t t = a; a = b; b = t; }
    kk_lse_t r;
    r.m = a.m;
    if (a.m == b.m)
        r.s = a.s + b.s + 1.0;
    else if (a.m != a.m || b.m != b.m)
        r.s = NAN;
    else   /* a.m > b.m; b.m = -inf or a.m = +inf give a zero factor */
        r.s = a.s + (1.0 + b.s) * kk_exp(b.m - a.m);
    return r;
}

/* log of the sum; -inf for an empty or all -inf state */
static KLKIT_HD double kk_lse_value(kk_lse_t a)
{
    return a.m + log1p(a.s);
}

#endif
