/* dense.c: row loops of the dense log-space family (logsumexp, softmax,
 * log_softmax, entropy, cross-entropy, KL, JS).
 *
 * This file is compiled once per instruction set (KK_ISA = base, avx2,
 * avx512; see CMakeLists.txt) and every exported name carries that suffix;
 * dispatch.c picks one set at run time.  The per-row math is in
 * dense_rows.inc and row_chunks.inc (instantiated for float and double by
 * precisions.inc) on top of the scalar headers in kernels/include/klkit.
 *
 * Work split: rows are distributed over OpenMP threads, each row done by one
 * thread start to end.  A logsumexp row longer than TILE is instead cut into
 * TILE-sized pieces whose states are computed in parallel and combined in
 * order; the cut depends only on the row length, so a row still gives the
 * same bits whatever the thread count or the rest of the batch.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "klkit/lse.h"
#include "klkit/divergence.h"
#include "klkit_cpu.h"
#include "row_chunks.h"

enum { TILE = 1 << 16 };
/* softmax outputs of at least this many bytes are written non-temporally */
#define STREAM_MIN ((int64_t)16 << 20)

/* Non-temporal copy of n values from an L1 buffer to dst (softmax output
 * far larger than the caches); plain stores where the ISA has no AVX. */
#if defined(__AVX__)
#include <immintrin.h>
static void stream_store_f(float *dst, const float *src, int64_t n)
{
    int64_t i = 0;
    for (; i < n && ((uintptr_t)(dst + i) & 31); i++) dst[i] = src[i];
    for (; i + 8 <= n; i += 8) _mm256_stream_ps(dst + i, _mm256_loadu_ps(src + i));
    for (; i < n; i++) dst[i] = src[i];
}
static void stream_store_d(double *dst, const double *src, int64_t n)
{
    int64_t i = 0;
    for (; i < n && ((uintptr_t)(dst + i) & 31); i++) dst[i] = src[i];
    for (; i + 4 <= n; i += 4) _mm256_stream_pd(dst + i, _mm256_loadu_pd(src + i));
    for (; i < n; i++) dst[i] = src[i];
}
static void stream_fence(void) { _mm_sfence(); }
#else
static void stream_store_f(float *dst, const float *src, int64_t n) { memcpy(dst, src, n * sizeof *dst); }
static void stream_store_d(double *dst, const double *src, int64_t n) { memcpy(dst, src, n * sizeof *dst); }
static void stream_fence(void) {}
#endif

#define KK_REAL_INC "dense_rows.inc"
#include "precisions.inc"

/* the lse states of the rows of x into states, or (states NULL) their
 * values into out */
static void lse_rows(const kk_rows *x, double *out, kk_lse_t *states)
{
    int64_t n_rows = x->n_rows, n = x->n;
    int64_t tiles = n > TILE ? (n + TILE - 1) / TILE : 1;
    int par = n_rows * n >= PAR_MIN;
    int contiguous = kk_rows_contiguous(x), item = kk_itemsize(x->dtype);
    kk_lse_t *st = tiles > 1 ? (kk_lse_t *)malloc(sizeof(kk_lse_t) * n_rows * tiles) : NULL;
    if (tiles > 1 && !st) {   /* out of memory: do the rows whole, serially */
        tiles = 1;
        par = 0;
    }
#pragma omp parallel if (par)
    {
        _Alignas(64) float buf_f[CHUNK];
        _Alignas(64) double buf_d[CHUNK];
#pragma omp for schedule(static)
        for (int64_t it = 0; it < n_rows * tiles; it++) {
            int64_t r = it / tiles, t = it % tiles;
            kk_row row = kk_row_at(x, r);
            int64_t i0 = t * TILE, i1 = tiles == 1 ? n : (i0 + TILE < n ? i0 + TILE : n);
            /* the start of the next item (this thread's, under the static
             * schedule), prefetched during the last chunk: short rows would
             * otherwise start every row from memory */
            const char *after = it + 1 == n_rows * tiles || !contiguous ? NULL
                              : i1 < n ? row.p + i1 * item
                                       : kk_row_at(x, r + 1).p;
            kk_lse_t s = x->dtype == KK_F64 ? span_lse_d(row, i0, i1, after, buf_d)
                                            : span_lse_f(row, i0, i1, after, buf_f);
            if (tiles > 1)
                st[it] = s;
            else if (states)
                states[r] = s;
            else
                out[r] = kk_lse_value(s);
        }
    }
    if (tiles > 1) {
        for (int64_t r = 0; r < n_rows; r++) {
            kk_lse_t s = st[r * tiles];
            for (int64_t t = 1; t < tiles; t++) s = kk_lse_combine(s, st[r * tiles + t]);
            if (states)
                states[r] = s;
            else
                out[r] = kk_lse_value(s);
        }
        free(st);
    }
}

void KK_FN(kk_lse_rows)(const kk_rows *x, double *out)
{
    lse_rows(x, out, NULL);
}

void KK_FN(kk_lse_states)(const kk_rows *x, kk_lse_t *states)
{
    lse_rows(x, NULL, states);
}

/* softmax / log_softmax of the rows of x into out, from their lse states
 * (NULL: each row's own) */
static void softmax_rows(const kk_rows *x, int log_, const kk_lse_t *states, const kk_rows *out)
{
    int64_t n_rows = x->n_rows, n = x->n;
    /* contiguous outputs beyond STREAM_MIN bytes do not stay in cache anyway */
    int64_t out_bytes = n_rows * n * kk_itemsize(out->dtype);
    int stream = out_bytes >= STREAM_MIN && kk_rows_contiguous(out);
#pragma omp parallel if (n_rows * n >= PAR_MIN)
    {
        _Alignas(64) float buf_f[CHUNK];
        _Alignas(64) double buf_d[CHUNK];
#pragma omp for schedule(static)
        for (int64_t r = 0; r < n_rows; r++) {
            kk_row row = kk_row_at(x, r), o = kk_row_at(out, r);
            const kk_lse_t *given = states ? states + r : NULL;
            if (out->dtype == KK_F64)
                softmax_row_d(row, n, given, log_, stream, o, buf_d);
            else
                softmax_row_f(row, n, given, log_, stream, o, buf_f);
        }
        if (stream) stream_fence();   /* before the barrier: stores visible */
    }
}

void KK_FN(kk_softmax_rows)(const kk_rows *x, int log_, const kk_rows *out)
{
    softmax_rows(x, log_, NULL, out);
}

void KK_FN(kk_softmax_given)(const kk_rows *x, int log_, const kk_lse_t *states,
                             const kk_rows *out)
{
    softmax_rows(x, log_, states, out);
}

#define DIV_ROW(S, REALT, buf, buf2)                                           \
    (kind == KK_LOGPROBS ? div_logprobs_row_##S(op, pr, qr, n, beta, buf, buf2) \
     : op == KK_ENTROPY  ? entropy_logits_row_##S(pr, n, (REALT)inv_temp, buf)  \
     : op == KK_XENT     ? xent_logits_row_##S(pr, qr, n, (REALT)inv_temp, buf, buf2) \
     : op == KK_KL       ? kl_logits_row_##S(pr, qr, n, (REALT)inv_temp, buf, buf2)   \
                         : js_logits_row_##S(pr, qr, n, (REALT)inv_temp, beta, pc, buf, buf2))

/* Divergences of the row pairs of p and q (q NULL for the entropy): their
 * values into out, or (states set) their reduction states, kk_ent_t for
 * the entropy, kk_xent_t for the cross-entropy and kk_kl_t for KL (logits
 * only) */
static void div_rows(int op, int kind, int prec, const kk_rows *p, const kk_rows *q,
                     double inv_temp, double beta, double *out, void *states)
{
    int64_t n_rows = p->n_rows, n = p->n;
    /* JS of 16/32-bit logits: its polynomial's coefficients for this beta,
     * fitted once per call (dense_rows.inc, js_poly_fit), shared read-only */
    float js_pc[JS_POLY_DEG + 1];
    const float *pc = NULL;
    if (op == KK_JS && kind != KK_LOGPROBS && prec != KK_F64 && beta > 0.0 && beta < 1.0
        && !states) {
        js_poly_fit(beta, js_pc, beta == 0.5);
        pc = js_pc;
    }
#pragma omp parallel if (n_rows * n >= PAR_MIN)
    {
        _Alignas(64) float bf[CHUNK], bf2[CHUNK];
        _Alignas(64) double bd[CHUNK], bd2[CHUNK];
#pragma omp for schedule(static)
        for (int64_t r = 0; r < n_rows; r++) {
            kk_row pr = kk_row_at(p, r);
            kk_row qr = q ? kk_row_at(q, r) : pr;
            if (!states)
                out[r] = prec == KK_F64 ? DIV_ROW(d, double, bd, bd2)
                                        : DIV_ROW(f, float, bf, bf2);
            else if (op == KK_ENTROPY)
                ((kk_ent_t *)states)[r] =
                    prec == KK_F64 ? entropy_logits_state_d(pr, n, inv_temp, bd)
                                   : entropy_logits_state_f(pr, n, (float)inv_temp, bf);
            else if (op == KK_XENT)
                ((kk_xent_t *)states)[r] =
                    prec == KK_F64 ? xent_logits_state_d(pr, qr, n, inv_temp, bd, bd2)
                                   : xent_logits_state_f(pr, qr, n, (float)inv_temp, bf, bf2);
            else
                ((kk_kl_t *)states)[r] =
                    prec == KK_F64 ? kl_logits_sums_d(pr, qr, n, inv_temp, bd, bd2)
                                   : kl_logits_sums_f(pr, qr, n, (float)inv_temp, bf, bf2);
        }
    }
}

void KK_FN(kk_div_rows)(int op, int kind, int prec, const kk_rows *p, const kk_rows *q,
                        double inv_temp, double beta, double *out)
{
    div_rows(op, kind, prec, p, q, inv_temp, beta, out, NULL);
}

void KK_FN(kk_div_states)(int op, int prec, const kk_rows *p, const kk_rows *q,
                          double inv_temp, void *states)
{
    div_rows(op, KK_LOGITS, prec, p, q, inv_temp, 0.5, NULL, states);
}

/* The row loops of KL from logits and of the log-prob sums continued from
 * each row's carry (kk_kl_carry_t, or a double for kind KK_LOGPROBS) */
void KK_FN(kk_div_carry)(int op, int kind, int prec, const kk_rows *p, const kk_rows *q,
                         double inv_temp, double beta, void *carry)
{
    int64_t n_rows = p->n_rows, n = p->n;
#pragma omp parallel if (n_rows * n >= PAR_MIN)
    {
        _Alignas(64) float bf[CHUNK], bf2[CHUNK];
        _Alignas(64) double bd[CHUNK], bd2[CHUNK];
#pragma omp for schedule(static)
        for (int64_t r = 0; r < n_rows; r++) {
            kk_row pr = kk_row_at(p, r);
            kk_row qr = q ? kk_row_at(q, r) : pr;
            if (kind == KK_LOGPROBS) {
                double *acc = (double *)carry + r;
                *acc = prec == KK_F64 ? div_logprobs_sum_d(op, pr, qr, n, beta, *acc, bd, bd2)
                                      : div_logprobs_sum_f(op, pr, qr, n, beta, *acc, bf, bf2);
            } else {
                kk_kl_carry_t *c = (kk_kl_carry_t *)carry + r;
                if (prec == KK_F64)
                    kl_logits_run_d(pr, qr, n, inv_temp, c, bd, bd2);
                else
                    kl_logits_run_f(pr, qr, n, (float)inv_temp, c, bf, bf2);
            }
        }
    }
}
