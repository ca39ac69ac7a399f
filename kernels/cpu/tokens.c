/* tokens.c: row loops of token_logprobs and softmax_cross_entropy: for each
 * row of logits (rows.h) and its target index, log softmax(x / T)[target]
 * and optionally the entropy, the lse and the label-smoothing sum, in one
 * streaming pass per row (tokens_rows.inc).
 *
 * Compiled once per instruction set like dense.c (KK_ISA; dispatch.c picks
 * one at run time).  Rows go to OpenMP threads in dynamic blocks of about
 * TASK_ELEMS = 64K elements (ignored rows are skipped, so static blocks
 * could be lopsided), each row done by one thread start to end: results
 * are bitwise independent of the thread count and of the other rows.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include "klkit/lse.h"
#include "klkit/divergence.h"
#include "klkit/tokens.h"
#include "klkit_cpu.h"
#include "row_chunks.h"

/* elements per dynamic task (one row at least), the size of dense.c's TILE */
enum { TASK_ELEMS = 1 << 16 };

#define KK_REAL_INC "tokens_rows.inc"
#include "precisions.inc"

void KK_FN(kk_token_rows)(int prec, const kk_rows *x, const int64_t *targets,
                          int64_t ignore_index, double inv_temp, const void *weight,
                          double *lp, double *ent, double *lse, double *smooth)
{
    int64_t n_rows = x->n_rows, n = x->n;
    int64_t rows_per_task = n >= TASK_ELEMS ? 1 : TASK_ELEMS / (n > 0 ? n : 1);
    int want_ent = ent != NULL, want_smooth = smooth != NULL;
#pragma omp parallel if (n_rows * n >= PAR_MIN)
    {
        _Alignas(64) float buf_f[CHUNK];
        _Alignas(64) double buf_d[CHUNK];
#pragma omp for schedule(dynamic, rows_per_task)
        for (int64_t r = 0; r < n_rows; r++) {
            int64_t t = targets[r];
            double *o_ent = ent ? ent + r : NULL, *o_lse = lse ? lse + r : NULL;
            double *o_sm = smooth ? smooth + r : NULL;
            if (t == ignore_index || t < 0 || t >= n) {
                /* ignored: zeros, the row is not read; out of range (the
                 * Python layer raises before calling): NaN, nothing read */
                double v = t == ignore_index ? 0.0 : NAN;
                lp[r] = v;
                if (o_ent) *o_ent = v;
                if (o_lse) *o_lse = v;
                if (o_sm) *o_sm = v;
                continue;
            }
            kk_row row = kk_row_at(x, r);
            if (prec == KK_F64)
                token_row_d(row, n, t, inv_temp, want_ent, want_smooth,
                            (const double *)weight, buf_d, lp + r, o_ent, o_lse, o_sm);
            else
                token_row_f(row, n, t, (float)inv_temp, want_ent, want_smooth,
                            (const float *)weight, buf_f, lp + r, o_ent, o_lse, o_sm);
        }
    }
}
