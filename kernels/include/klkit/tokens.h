/* klkit/tokens.h: the label-smoothing state of the token rows
 * (softmax_cross_entropy; the row loop is kernels/cpu/tokens_rows.inc).
 *
 * Label smoothing needs, per row with lse state (m / T, s) (lse.h),
 *     sum_c w_c log p_c = sum_c w_c (x_c - m) / T - W log1p(s),
 * W = sum_c w_c.  The state (m, v, w) holds a maximum m, v = sum w_c (x_c - m)
 * against it and w = sum w_c.  Each chunk gives v against its own maximum
 * (for weights >= 0 every term is <= 0: nothing cancels), and a combine
 * moves the sum of the smaller maximum to the larger as in the lse combine:
 * v += (m_small - m_big) w_small.  A class with weight 0 contributes
 * nothing, even where its logit is -inf or NaN: a row whose classes all
 * have weight 0 sums to 0 (v = 0 and no W log1p(s) term, which a NaN s
 * would spoil).  In a row of all -inf logits every log p_c is
 * -inf - (-inf) = NaN, so the sum over classes of nonzero weight is NaN.
 */
#ifndef KLKIT_TOKENS_H
#define KLKIT_TOKENS_H

#include <math.h>
#include "config.h"

typedef struct { double m, v, w; } kk_smooth_t;

static KLKIT_HD kk_smooth_t kk_smooth_combine(kk_smooth_t a, kk_smooth_t b)
{
    if (a.m < b.m) { kk_smooth_t t = a; a = b; b = t; }
    kk_smooth_t r;
    r.m = a.m;
    r.v = a.v + b.v;
    r.w = a.w + b.w;
    if (b.w != 0.0 && b.m != a.m) r.v += (b.m - a.m) * b.w;   /* -inf if b.m = -inf */
    return r;
}

/* sum_c w_c log p_c of a row, given 1/T and log1p(s) of its lse state */
static KLKIT_HD double kk_smooth_value(kk_smooth_t a, double inv_t, double log1p_s)
{
    if (a.w == 0.0) return a.v * inv_t;   /* weights cancel, or all are 0 (v = 0) */
    if (a.m == -INFINITY) return NAN;     /* all -inf row */
    return a.v * inv_t - a.w * log1p_s;
}

#endif
