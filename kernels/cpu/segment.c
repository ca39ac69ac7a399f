/* segment.c: per-sequence (segmented) reductions and the per-token KL
 * estimators: segment_sum / mean / max / logsumexp, seq_kl, kl_estimate.
 *
 * Compiled once per instruction set like dense.c (KK_ISA = base, avx2,
 * avx512; see CMakeLists.txt), exported names carry that suffix and
 * dispatch.c routes the public names of klkit_cpu.h.  The scalar math
 * (estimators, clamp) and the reduction states with their combines
 * (kk_seg_t: sum, NaN-propagating max, the log-sum-exp state of
 * klkit/lse.h) are in klkit/segment.h.
 *
 * ---- the canonical reduction order (what makes results reproducible) ----
 * A sequence of n terms t_0 .. t_{n-1} (its kept values, or the per-token
 * estimates for seq_kl) is cut into blocks of SEG_BLK terms by position IN
 * THE SEQUENCE (never by absolute position in the values buffer).  A block is
 * reduced into LANES independent accumulators (term j of the block goes to
 * lane j mod LANES) that are combined in a fixed tree, giving one state per
 * block; the block states are combined left to right.  The order depends on
 * n only, so a sequence gives the same bits
 *   - for any thread count (threads only decide who computes which block),
 *   - alone or inside any batch, at any offset,
 *   - packed, padded (its kept entries are compacted into a block buffer
 *     first) or from Arrow (packed with per-sequence starts).
 * Sums use explicit lanes (not `omp simd` reductions, whose order would
 * follow the vector width), so segment_sum / mean give the same bits on
 * every instruction-set build too; max is exact (any order); exp-based
 * terms (k3, logsumexp) may differ in the last bit between the FMA and
 * non-FMA builds.
 *
 * ---- work split (balanced for skewed lengths) ----
 * Packed input: one serial O(n_seq) pass cuts the batch into work items:
 * runs of whole short sequences (<= SEG_BLK terms each) of about GRAIN terms,
 * and one item per SEG_BLK block of every longer sequence.  Items are
 * distributed with schedule(dynamic, 1); block states of long sequences go
 * to a scratch array and are combined in order afterwards.  One 10^6-token
 * sequence among 10^4 short ones is therefore 245 items like any others.
 * Padded input: one row per item, schedule(dynamic); every row costs T reads
 * whatever its mask, so this is balanced for B >= a few times the threads.
 *
 * Accumulation: sums in double (LANES = 16 double lanes; with AVX2 four
 * ymm accumulators, enough to hide the add latency at memory speed); max in
 * the input precision (exact); log-sum-exp per block as dense.c's chunk_lse
 * (maximum, then exp(x - max) over the other terms, summed in double).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "klkit/segment.h"
#include "klkit_cpu.h"

enum { SEG_BLK = 4096, LANES = 16, GRAIN = 32768, GROUP_MAX = 4096 };
/* below this many terms a call stays on the calling thread */
#define SEG_PAR_MIN 65536

/* A work item of the packed driver: whole sequences [s0, s1) (blk < 0), or
 * block blk of sequence s0 whose state goes to parts[part]. */
typedef struct { int64_t s0, s1, blk, part; } seg_item;

/* arguments of the packed driver (kk_seg_packed, kk_seg_states): each
 * sequence's value goes to out, or its state to states where that is set */
typedef struct {
    int op, est;
    const kk_rows *x;
    const int64_t *x_start;
    const kk_rows *y;
    const int64_t *y_start;
    const int64_t *len;
    double clamp, empty;
    double *out;
    kk_seg_t *states;
} seg_args;

/* the result of packed sequence s from its state */
static void put_seq(const seg_args *a, int64_t s, kk_seg_t st)
{
    if (a->states)
        a->states[s] = st;
    else
        a->out[s] = kk_seg_value(a->op, st, a->len[s], a->empty);
}

/* arguments of the padded driver (kk_seg_padded) */
typedef struct {
    int op, est;
    const kk_rows *x, *y, *mask;
    double clamp, empty;
    double *out;
    int64_t *count;
} padded_args;

/* Pointer to the mask bytes of elements i0 .. i0+n of a mask row: the row
 * itself where it is contiguous, else gathered into buf. */
static const uint8_t *load_mask(kk_row row, int64_t i0, int64_t n, uint8_t *buf)
{
    if (kk_rows_contiguous(row.a)) return (const uint8_t *)row.p + i0;
    for (int64_t i = 0; i < n; i++) buf[i] = *(const uint8_t *)kk_row_elem(row, i0 + i);
    return buf;
}

/* the loops, per precision (float, double) */
#define KK_REAL_INC "segment_real.inc"
#include "precisions.inc"

/* ------------------------------------------------------------------------ */
/* packed driver                                                            */
/* ------------------------------------------------------------------------ */

/* Cut the batch into items (see the top).  Returns the item count, or -1
 * when the scratch arrays cannot be allocated (the caller then runs
 * serially, with the same per-sequence order). */
static int64_t build_items(const int64_t *len, int64_t n, seg_item **items_out,
                           int64_t *n_parts_out, int64_t *total_out)
{
    int64_t total = 0, cap = 1;
    for (int64_t s = 0; s < n; s++) {
        total += len[s];
        cap += 1 + (len[s] > SEG_BLK ? (len[s] + SEG_BLK - 1) / SEG_BLK : 0);
    }
    *total_out = total;
    seg_item *items = (seg_item *)malloc(sizeof(seg_item) * (size_t)cap);
    if (!items) return -1;
    int64_t n_items = 0, n_parts = 0, g0 = -1, cost = 0;
    for (int64_t s = 0; s < n; s++) {
        int64_t l = len[s];
        if (l > SEG_BLK) {
            if (g0 >= 0) {
                seg_item it = { g0, s, -1, 0 };
                items[n_items++] = it;
                g0 = -1;
            }
            int64_t nb = (l + SEG_BLK - 1) / SEG_BLK;
            for (int64_t b = 0; b < nb; b++) {
                seg_item it = { s, s + 1, b, n_parts + b };
                items[n_items++] = it;
            }
            n_parts += nb;
            continue;
        }
        if (g0 < 0) { g0 = s; cost = 0; }
        cost += l + 16;                   /* ~16 terms of per-sequence overhead */
        if (cost >= GRAIN || s + 1 - g0 >= GROUP_MAX) {
            seg_item it = { g0, s + 1, -1, 0 };
            items[n_items++] = it;
            g0 = -1;
        }
    }
    if (g0 >= 0) {
        seg_item it = { g0, n, -1, 0 };
        items[n_items++] = it;
    }
    *items_out = items;
    *n_parts_out = n_parts;
    return n_items;
}

static void seg_packed(const seg_args *a, int prec, int64_t n_seg)
{
    int op = a->op;
    const int64_t *len = a->len;
    if (n_seg <= 0) return;
    seg_item *items = NULL;
    int64_t n_parts = 0, total = 0;
    int64_t n_items = build_items(len, n_seg, &items, &n_parts, &total);
    kk_seg_t *parts = NULL;
    if (n_items >= 0 && n_parts > 0) {
        parts = (kk_seg_t *)malloc(sizeof(kk_seg_t) * (size_t)n_parts);
        if (!parts) { free(items); n_items = -1; }
    }
    if (n_items < 0) {                    /* out of memory: serial, same order */
        if (prec == KK_F64) packed_serial_d(a, n_seg);
        else packed_serial_f(a, n_seg);
        return;
    }
    int par = total >= SEG_PAR_MIN && n_items > 1;
    if (prec == KK_F64) packed_items_d(a, items, n_items, parts, par);
    else packed_items_f(a, items, n_items, parts, par);
    /* long sequences: their block states in order */
    for (int64_t i = 0; i < n_items; i++) {
        if (items[i].blk != 0) continue;
        int64_t s = items[i].s0, p = items[i].part;
        int64_t nb = (len[s] + SEG_BLK - 1) / SEG_BLK;
        kk_seg_t st = parts[p];
        for (int64_t b = 1; b < nb; b++) st = kk_seg_combine(op, st, parts[p + b]);
        put_seq(a, s, st);
    }
    free(parts);
    free(items);
}

void KK_FN(kk_seg_packed)(int op, int est, int prec, const kk_rows *x,
                          const int64_t *x_start, const kk_rows *y, const int64_t *y_start,
                          const int64_t *len, int64_t n_seg, double clamp, double empty,
                          double *out)
{
    seg_args a = { op, est, x, x_start, y, y_start, len, clamp, empty, out, NULL };
    seg_packed(&a, prec, n_seg);
}

void KK_FN(kk_seg_states)(int op, int est, int prec, const kk_rows *x,
                          const int64_t *x_start, const kk_rows *y, const int64_t *y_start,
                          const int64_t *len, int64_t n_seg, double clamp, kk_seg_t *states)
{
    seg_args a = { op, est, x, x_start, y, y_start, len, clamp, 0.0, NULL, states };
    seg_packed(&a, prec, n_seg);
}

void KK_FN(kk_seg_padded)(int op, int est, int prec, const kk_rows *x, const kk_rows *y,
                          const kk_rows *mask, double clamp, double empty, double *out,
                          int64_t *count)
{
    int64_t n_rows = x->n_rows;
    if (n_rows <= 0) return;
    padded_args a = { op, est, x, y, mask, clamp, empty, out, count };
    int par = n_rows > 1 && n_rows * x->n >= SEG_PAR_MIN;
    if (prec == KK_F64) padded_rows_d(&a, n_rows, par);
    else padded_rows_f(&a, n_rows, par);
}

void KK_FN(kk_kl_estimate)(int est, int prec, const kk_rows *x, const kk_rows *y,
                           double clamp, void *out)
{
    int64_t n_rows = x->n_rows, n = x->n;
    if (n_rows <= 0 || n <= 0) return;
    int64_t nb = (n + SEG_BLK - 1) / SEG_BLK;
    int par = n_rows * n >= SEG_PAR_MIN;
#pragma omp parallel if (par)
    {
        _Alignas(64) float bxf[SEG_BLK], byf[SEG_BLK];
        _Alignas(64) double bxd[SEG_BLK], byd[SEG_BLK];
#pragma omp for schedule(static)
        for (int64_t it = 0; it < n_rows * nb; it++) {
            int64_t r = it / nb, i0 = (it % nb) * SEG_BLK;
            int64_t m = n - i0 < SEG_BLK ? n - i0 : SEG_BLK;
            kk_row xr = kk_row_at(x, r), yr = kk_row_at(y, r);
            if (prec == KK_F64)
                terms_est_d(est, load_d(xr, i0, m, bxd), load_d(yr, i0, m, byd), m, clamp,
                            (double *)out + r * n + i0);
            else
                terms_est_f(est, load_f(xr, i0, m, bxf), load_f(yr, i0, m, byf), m,
                            (float)clamp, (float *)out + r * n + i0);
        }
    }
}
