/* klkit_entries.h: every C entry point of the CPU kernels, listed once.
 *
 * KK_ENTRIES(X, isa) expands X(isa, name, (typed parameters), (argument
 * names)) once per entry point; every entry point returns void.  From this
 * list are generated
 *   - the plain-name declarations of klkit_cpu.h (what _cpu.pyx calls),
 *   - the ISA-suffixed declarations that dense.c, tokens.c and segment.c
 *     see (klkit_cpu.h under KK_ISA), so that each definition
 *     `void KK_FN(kk_lse_rows)(...)` is checked by the compiler against
 *     this list,
 *   - dispatch.c's per-ISA table of function pointers, its initialisers,
 *     and the plain-name wrappers that call through the table.
 * Adding an entry point: one X(...) here, its KK_FN definition in a family
 * file, its call in _cpu.pyx.
 *
 * Arrays are described by raw pointers, element counts and strides in
 * ELEMENTS.  In the row functions each row is contiguous (element stride
 * 1); rows are row_stride apart (0 is allowed: a broadcast row).  Every
 * function handles all rows, in parallel over rows with OpenMP; each row is
 * processed by one thread in a fixed order, so results are bitwise
 * independent of the thread count and of the other rows.  The dtype, op,
 * kind and estimator codes are the enums of klkit/codes.h.
 */
#ifndef KLKIT_ENTRIES_H
#define KLKIT_ENTRIES_H

#define KK_ENTRIES(X, isa)                                                     \
    /* log-sum-exp of each row into out[n_rows] (double) */                    \
    X(isa, kk_lse_rows,                                                        \
      (int dtype, const void *x, int64_t n_rows, int64_t n, int64_t row_stride, \
       double *out),                                                           \
      (dtype, x, n_rows, n, row_stride, out))                                  \
                                                                               \
    /* softmax (log_ = 0) or log_softmax (log_ = 1) of each row into out,      \
     * which is float for 16/32-bit input and double for float64 input */      \
    X(isa, kk_softmax_rows,                                                    \
      (int dtype, const void *x, int64_t n_rows, int64_t n, int64_t row_stride, \
       int log_, void *out, int64_t out_row_stride),                           \
      (dtype, x, n_rows, n, row_stride, log_, out, out_row_stride))            \
                                                                               \
    /* entropy / cross-entropy / KL / JS (op) of each row pair into            \
     * out[n_rows], in nats.  q is ignored for KK_ENTROPY.  inv_temp scales    \
     * logits (kind KK_LOGITS). */                                             \
    X(isa, kk_div_rows,                                                        \
      (int op, int kind, int dtype, const void *p, int64_t p_stride,           \
       const void *q, int64_t q_stride, int64_t n_rows, int64_t n,             \
       double inv_temp, double beta, double *out),                             \
      (op, kind, dtype, p, p_stride, q, q_stride, n_rows, n, inv_temp, beta,   \
       out))                                                                   \
                                                                               \
    /* Per-row token log-probs (tokens.c): for each row r with target          \
     * t = targets[r], lp[r] = log softmax(x[r] * inv_temp)[t]; where set,     \
     * ent[r] its entropy, lse[r] the lse of x[r] * inv_temp and smooth[r] =   \
     * sum_c w_c log p_c (the label-smoothing sum; weight NULL = all ones,     \
     * else n values of float, or double for float64 x).  Rows with            \
     * t == ignore_index give 0 in every output and are not read; any other t  \
     * outside [0, n) gives NaN (callers validate first). */                   \
    X(isa, kk_token_rows,                                                      \
      (int dtype, const void *x, int64_t n_rows, int64_t n, int64_t row_stride, \
       const int64_t *targets, int64_t ignore_index, double inv_temp,          \
       const void *weight, double *lp, double *ent, double *lse,               \
       double *smooth),                                                        \
      (dtype, x, n_rows, n, row_stride, targets, ignore_index, inv_temp,       \
       weight, lp, ent, lse, smooth))                                          \
                                                                               \
    /* Segments (segment.c): per-sequence reductions.  A packed sequence s is  \
     * x[x_start[s] .. x_start[s] + len[s]) of a 1-D array with element        \
     * stride x_stride (any sign; 0 is a broadcast value); for seq_kl          \
     * (est != KK_EST_NONE) its partner is y[y_start[s] ..] of the same        \
     * length.  The caller has checked every range lies inside its array.      \
     * out[s] is double; an empty sequence gives `empty`.  clamp = inf means   \
     * no clamp.  Results are bitwise independent of the thread count and of   \
     * the other sequences (segment.c). */                                     \
    X(isa, kk_seg_packed,                                                      \
      (int op, int est, int dtype, const void *x, int64_t x_stride,            \
       const int64_t *x_start, const void *y, int64_t y_stride,                \
       const int64_t *y_start, const int64_t *len, int64_t n_seg,              \
       double clamp, double empty, double *out),                               \
      (op, est, dtype, x, x_stride, x_start, y, y_stride, y_start, len, n_seg, \
       clamp, empty, out))                                                     \
                                                                               \
    /* A padded sequence is the entries of row r of x [n_rows, n] (unit        \
     * column stride, row stride x_rs elements) whose mask byte is nonzero     \
     * (mask NULL: all entries); otherwise as kk_seg_packed.  count (may be    \
     * NULL) receives the number of kept entries of each row. */               \
    X(isa, kk_seg_padded,                                                      \
      (int op, int est, int dtype, const void *x, int64_t x_rs,                \
       const void *y, int64_t y_rs, const uint8_t *mask, int64_t m_rs,         \
       int64_t n_rows, int64_t n, double clamp, double empty, double *out,     \
       int64_t *count),                                                        \
      (op, est, dtype, x, x_rs, y, y_rs, mask, m_rs, n_rows, n, clamp, empty,  \
       out, count))                                                            \
                                                                               \
    /* out[i] = estimator(x[i] - y[i]) for contiguous x, y of n values; out    \
     * is float for 16/32-bit input, double for float64 input. */              \
    X(isa, kk_kl_estimate,                                                     \
      (int est, int dtype, const void *x, const void *y, int64_t n,            \
       double clamp, void *out),                                               \
      (est, dtype, x, y, n, clamp, out))

#endif
