/* grad.c: the backward row loops of klkit's torch autograd functions
 * (src/klkit/_autograd.py): token_logprobs, softmax_cross_entropy,
 * logsumexp, entropy, cross-entropy, KL, JS, softmax and log_softmax.
 *
 * Each writes the gradient with respect to an input's rows, in that
 * input's element type (16-bit types computed in float and rounded to
 * nearest even), from the input itself and a few numbers per row that the
 * forward pass saved: its lse, its value.  The input is read once and the
 * gradient written once (per-span math in grad_rows.inc); nothing of the
 * row's size is kept in between.  Plain stores: non-temporal ones (as
 * dense.c's softmax uses) measured 5-15% slower here, into fresh pages
 * and reused ones alike.
 *
 * Work split: the elementwise gradients go to OpenMP threads as (row, tile)
 * items of at most TILE elements; softmax / log_softmax, which first sum
 * over the row, as whole rows (so are JS's sums, kk_js_sums, which its
 * forward saves).  An element's
 * value depends only on its row, so the bits do not depend on the thread
 * count or on the other rows.  Compiled once per instruction set like
 * dense.c (KK_ISA).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "klkit/lse.h"
#include "klkit/divergence.h"
#include "klkit_cpu.h"
#include "row_chunks.h"

enum { TILE = 1 << 16 };

#define KK_REAL_INC "grad_rows.inc"
#include "precisions.inc"

/* whether a gradient output is computed in place: a contiguous run of
 * the working precision (else through a buffer, converted) */
static int in_place(const kk_rows *out, int prec)
{
    return out->dtype == prec && kk_rows_contiguous(out);
}

/* the scratch of one thread: two input buffers and two output buffers of
 * CHUNK doubles (float rows use them as floats) */
typedef struct {
    _Alignas(64) double in1[CHUNK];
    _Alignas(64) double in2[CHUNK];
    _Alignas(64) double out1[CHUNK];
    _Alignas(64) double out2[CHUNK];
} scratch_t;

static int64_t n_tiles(int64_t n)
{
    return n > TILE ? (n + TILE - 1) / TILE : 1;
}

/* the row of work item `item` (of n_tiles(n) tiles per row of n elements),
 * its elements [*i0, *i1) */
static inline int64_t tile_span(int64_t item, int64_t tiles, int64_t n, int64_t *i0, int64_t *i1)
{
    *i0 = item % tiles * TILE;
    *i1 = *i0 + TILE < n ? *i0 + TILE : n;
    return item / tiles;
}

void KK_FN(kk_token_grad)(int prec, const kk_rows *x, const int64_t *targets, double inv_temp,
                          const double *lse, const double *coef, const void *weight,
                          const kk_rows *out)
{
    int64_t n_rows = x->n_rows, n = x->n, tiles = n_tiles(n);
    int direct = in_place(out, prec);
#pragma omp parallel if (n_rows * n >= PAR_MIN)
    {
        scratch_t sc;
#pragma omp for schedule(static)
        for (int64_t item = 0; item < n_rows * tiles; item++) {
            int64_t i0, i1, r = tile_span(item, tiles, n, &i0, &i1);
            const double *cf = coef + 4 * r;
            kk_row row = kk_row_at(x, r), o = kk_row_at(out, r);
            int zero = cf[0] == 0 && cf[1] == 0 && cf[2] == 0 && cf[3] == 0;
            /* a row that contributes nothing (an ignored position) is not
             * read; one without a finite lse (NaN, +inf, all -inf) is NaN */
            double v = zero ? 0.0 : isfinite(lse[r]) ? 1.0 : NAN;
            int64_t t = targets ? targets[r] : -1;
            if (prec == KK_F64) {
                if (v != 1.0)
                    fill_d(o, i0, i1, v, direct, sc.out1);
                else
                    token_span_d(row, o, i0, i1, inv_temp, lse[r], cf, t,
                                 (const double *)weight, direct, sc.in1, sc.out1);
            } else {
                if (v != 1.0)
                    fill_f(o, i0, i1, (float)v, direct, (float *)sc.out1);
                else
                    token_span_f(row, o, i0, i1, (float)inv_temp, lse[r], cf, t,
                                 (const float *)weight, direct, (float *)sc.in1,
                                 (float *)sc.out1);
            }
        }
    }
}

void KK_FN(kk_div_grad)(int op, int kind, int prec, const kk_rows *p, const kk_rows *q,
                        double inv_temp, double beta, const double *saved, const double *g,
                        const kk_rows *dp, const kk_rows *dq)
{
    int64_t n_rows = p->n_rows, n = p->n, tiles = n_tiles(n);
    int js = op == KK_JS && kind == KK_LOGITS;      /* its sums in saved[3, 4] */
    int direct_p = dp && in_place(dp, prec), direct_q = dq && in_place(dq, prec);
#pragma omp parallel if (n_rows * n >= PAR_MIN)
    {
        scratch_t sc;
#pragma omp for schedule(static)
        for (int64_t item = 0; item < n_rows * tiles; item++) {
            int64_t i0, i1, r = tile_span(item, tiles, n, &i0, &i1);
            kk_row rp = kk_row_at(p, r), rq = { NULL, q };
            kk_row op_ = { NULL, dp }, oq_ = { NULL, dq };
            if (op != KK_ENTROPY) rq = kk_row_at(q, r);
            if (dp) op_ = kk_row_at(dp, r);
            if (dq) oq_ = kk_row_at(dq, r);
            const double *sv = saved ? saved + 5 * r : NULL;
            if (g[r] == 0.0 || (op == KK_JS && (beta == 0.0 || beta == 1.0))) {
                /* a row that contributes nothing is not read (as in
                 * kk_token_grad: no 0 * inf from an infinite divergence);
                 * JS is 0 for every P, Q at beta 0 and 1 (M is P or Q): so
                 * is its gradient (the formulas would give 0 * inf where
                 * M = 0) */
                if (prec == KK_F64) {
                    if (dp) fill_d(op_, i0, i1, 0.0, direct_p, sc.out1);
                    if (dq) fill_d(oq_, i0, i1, 0.0, direct_q, sc.out1);
                } else {
                    if (dp) fill_f(op_, i0, i1, 0.0f, direct_p, (float *)sc.out1);
                    if (dq) fill_f(oq_, i0, i1, 0.0f, direct_q, (float *)sc.out1);
                }
                continue;
            }
            if (prec == KK_F64) {
                double *bp = sc.in1, *bq = sc.in2, *gp = sc.out1, *gq = sc.out2;
                if (kind == KK_LOGPROBS) {
                    div_span_logprobs_d(op, rp, rq, op_, oq_, i0, i1, g[r], beta, direct_p,
                                        direct_q, bp, bq, gp, gq);
                    continue;
                }
                div_span_d(op, rp, rq, op_, oq_, i0, i1, inv_temp, sv, g[r], beta,
                           js ? sv + 3 : NULL, direct_p, direct_q, bp, bq, gp, gq);
            } else {
                float *bp = (float *)sc.in1, *bq = (float *)sc.in2;
                float *gp = (float *)sc.out1, *gq = (float *)sc.out2;
                if (kind == KK_LOGPROBS) {
                    div_span_logprobs_f(op, rp, rq, op_, oq_, i0, i1, g[r], (float)beta,
                                        direct_p, direct_q, bp, bq, gp, gq);
                    continue;
                }
                div_span_f(op, rp, rq, op_, oq_, i0, i1, (float)inv_temp, sv, g[r],
                           (float)beta, js ? sv + 3 : NULL, direct_p, direct_q, bp, bq, gp,
                           gq);
            }
        }
    }
}

void KK_FN(kk_js_sums)(int prec, const kk_rows *p, const kk_rows *q, double inv_temp,
                       double beta, double *saved)
{
    int64_t n_rows = p->n_rows, n = p->n;
#pragma omp parallel if (n_rows * n >= PAR_MIN)
    {
        scratch_t sc;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < n_rows; r++) {
            kk_row rp = kk_row_at(p, r), rq = kk_row_at(q, r);
            double *sv = saved + 5 * r;
            if (prec == KK_F64)
                js_sums_d(rp, rq, n, inv_temp, sv, beta, sc.in1, sc.in2, sv + 3);
            else
                js_sums_f(rp, rq, n, (float)inv_temp, sv, (float)beta, (float *)sc.in1,
                          (float *)sc.in2, sv + 3);
        }
    }
}

void KK_FN(kk_softmax_grad)(int log_, int prec, const kk_rows *y, const kk_rows *gy,
                            const kk_rows *out)
{
    int64_t n_rows = y->n_rows, n = y->n;
    int direct = in_place(out, prec);
#pragma omp parallel if (n_rows * n >= PAR_MIN)
    {
        scratch_t sc;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < n_rows; r++) {
            kk_row ry = kk_row_at(y, r), rg = kk_row_at(gy, r), o = kk_row_at(out, r);
            if (prec == KK_F64)
                softmax_grad_row_d(log_, ry, rg, o, n, direct, sc.in1, sc.in2, sc.out1);
            else
                softmax_grad_row_f(log_, ry, rg, o, n, direct, (float *)sc.in1,
                                   (float *)sc.in2, (float *)sc.out1);
        }
    }
}
