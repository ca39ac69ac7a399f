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
 * Arrays are kk_rows (rows.h): a strided array seen in place as a batch of
 * rows (any layout, any element type of codes.h); prec (KK_F32 or KK_F64)
 * is the working precision, float also serving 16-bit input.  Every
 * function handles all rows, in parallel over rows with OpenMP; each row is
 * processed by one thread in a fixed order, so results are bitwise
 * independent of the thread count, of the other rows and of the layout.
 * The dtype, op, kind and estimator codes are the enums of klkit/codes.h.
 */
#ifndef KLKIT_ENTRIES_H
#define KLKIT_ENTRIES_H

#define KK_ENTRIES(X, isa)                                                     \
    /* log-sum-exp of each row of x into out[n_rows] (double), in double for   \
     * float64 x, else in float */                                             \
    X(isa, kk_lse_rows, (const kk_rows *x, double *out), (x, out))              \
                                                                               \
    /* softmax (log_ = 0) or log_softmax (log_ = 1) of each row of x into the  \
     * same row of out, whose dtype (float32 or float64) is the precision */   \
    X(isa, kk_softmax_rows, (const kk_rows *x, int log_, const kk_rows *out),   \
      (x, log_, out))                                                          \
                                                                               \
    /* entropy / cross-entropy / KL / JS (op) of each row pair of p and q      \
     * (rows alike in number and length) into out[n_rows], in nats.  q is      \
     * NULL for KK_ENTROPY.  inv_temp scales logits (kind KK_LOGITS). */       \
    X(isa, kk_div_rows,                                                        \
      (int op, int kind, int prec, const kk_rows *p, const kk_rows *q,         \
       double inv_temp, double beta, double *out),                             \
      (op, kind, prec, p, q, inv_temp, beta, out))                             \
                                                                               \
    /* Per-row token log-probs (tokens.c): for each row r of x with target     \
     * t = targets[r], lp[r] = log softmax(x[r] * inv_temp)[t]; where set,     \
     * ent[r] its entropy, lse[r] the lse of x[r] * inv_temp and smooth[r] =   \
     * sum_c w_c log p_c (the label-smoothing sum; weight NULL = all ones,     \
     * else n values of the precision's type).  Rows with t == ignore_index    \
     * give 0 in every output and are not read; any other t outside [0, n)     \
     * gives NaN (callers validate first). */                                  \
    X(isa, kk_token_rows,                                                      \
      (int prec, const kk_rows *x, const int64_t *targets, int64_t ignore_index, \
       double inv_temp, const void *weight, double *lp, double *ent,           \
       double *lse, double *smooth),                                           \
      (prec, x, targets, ignore_index, inv_temp, weight, lp, ent, lse, smooth)) \
                                                                               \
    /* Segments (segment.c): per-sequence reductions.  A packed sequence s is  \
     * elements x_start[s] .. x_start[s] + len[s] of the one row of x (a 1-D   \
     * array of any stride, 0 included); for seq_kl (est != KK_EST_NONE) its   \
     * partner is the same span of y from y_start[s].  The caller has checked  \
     * every span lies inside its array.  out[s] is double; an empty sequence  \
     * gives `empty`.  clamp = inf means no clamp.  Results are bitwise        \
     * independent of the thread count and of the other sequences. */         \
    X(isa, kk_seg_packed,                                                      \
      (int op, int est, int prec, const kk_rows *x, const int64_t *x_start,    \
       const kk_rows *y, const int64_t *y_start, const int64_t *len,           \
       int64_t n_seg, double clamp, double empty, double *out),                \
      (op, est, prec, x, x_start, y, y_start, len, n_seg, clamp, empty, out))  \
                                                                               \
    /* A padded sequence is the entries of row r of x whose byte in row r of   \
     * mask (KK_BOOL, rows like x's; NULL: all entries) is nonzero; y (or      \
     * NULL) is x's partner for seq_kl; otherwise as kk_seg_packed.  count     \
     * (may be NULL) receives the number of kept entries of each row. */       \
    X(isa, kk_seg_padded,                                                      \
      (int op, int est, int prec, const kk_rows *x, const kk_rows *y,          \
       const kk_rows *mask, double clamp, double empty, double *out,           \
       int64_t *count),                                                        \
      (op, est, prec, x, y, mask, clamp, empty, out, count))                   \
                                                                               \
    /* out[r * n + i] = estimator(x - y) at element i of row r of x and y      \
     * (broadcast views allowed); out is contiguous, of the precision's type. */ \
    X(isa, kk_kl_estimate,                                                     \
      (int est, int prec, const kk_rows *x, const kk_rows *y, double clamp,    \
       void *out),                                                             \
      (est, prec, x, y, clamp, out))                                          \
                                                                               \
    /* ---- backward (grad.c, for torch autograd): the gradient of a row op   \
     * with respect to an input's rows, written into out (rows alike in      \
     * number and length with the input; any float dtype: 16-bit rounded to  \
     * nearest even; not overlapping the inputs), elementwise per row from   \
     * per-row numbers the forward saved. ---- */                            \
                                                                               \
    /* token rows, logsumexp, entropy of logits: out_c = a p_c + b p_c log p_c \
     * + e w_c (+ d at c = targets[r]) with p = softmax(x[r] * inv_temp) from \
     * lse[r] and coef[4r .. 4r+3] = {a, b, d, e}; targets NULL: no d term;    \
     * weight NULL: all ones, else n values of the precision's type.  A row  \
     * whose four coefficients are 0 is written as zeros without being read \
     * (lse and target ignored); one whose lse is not finite is NaN.  Every  \
     * target of the other rows must be in [0, n). */                        \
    X(isa, kk_token_grad,                                                      \
      (int prec, const kk_rows *x, const int64_t *targets, double inv_temp,    \
       const double *lse, const double *coef, const void *weight,             \
       const kk_rows *out),                                                    \
      (prec, x, targets, inv_temp, lse, coef, weight, out))                    \
                                                                               \
    /* g[r] times the gradient of op(p, q) of row r (kind; inv_temp scales     \
     * logits) into dp and dq (either NULL: not wanted; dq NULL for          \
     * KK_ENTROPY); logits need saved[5r .. 5r+4] = lse of p, lse of q,      \
     * value in nats and, for KK_KL, lse_p - lse_q (taken apart, to full    \
     * precision) or, for KK_JS, the two sums of kk_js_sums (saved NULL for \
     * log-probs).  A row with g[r] = 0 is written as zeros without being   \
     * read. */                                                              \
    X(isa, kk_div_grad,                                                        \
      (int op, int kind, int prec, const kk_rows *p, const kk_rows *q,         \
       double inv_temp, double beta, const double *saved, const double *g,     \
       const kk_rows *dp, const kk_rows *dq),                                  \
      (op, kind, prec, p, q, inv_temp, beta, saved, g, dp, dq))                \
                                                                               \
    /* JS of logits' forward, for its backward: from saved[5r], saved[5r+1]  \
     * (the lse of p and q rows), the sums sum P log(P/M) and sum Q log(Q/M) \
     * into saved[5r+3], saved[5r+4] */                                      \
    X(isa, kk_js_sums,                                                         \
      (int prec, const kk_rows *p, const kk_rows *q, double inv_temp,          \
       double beta, double *saved),                                            \
      (prec, p, q, inv_temp, beta, saved))                                     \
                                                                               \
    /* softmax (log_ = 0) / log_softmax (log_ = 1) backward: from the rows of  \
     * the output y and of the upstream gradient gy (both of the precision's \
     * type), the gradient with respect to the input into out */             \
    X(isa, kk_softmax_grad,                                                    \
      (int log_, int prec, const kk_rows *y, const kk_rows *gy,               \
       const kk_rows *out),                                                    \
      (log_, prec, y, gy, out))                                                \
                                                                               \
    /* ---- reduction states (private: for reductions of a row or sequence   \
     * cut into pieces, e.g. by a Dask graph).  Each writes per row (per      \
     * sequence) the state the functions above take their value from; the    \
     * states of consecutive pieces combine with the header's combine, left  \
     * to right, into the state of the whole: the same bits as the kernels'   \
     * own result where the pieces are the kernels' own (lse: CHUNK-sized     \
     * pieces of a row of at most TILE elements, TILE-sized ones of a longer  \
     * row; entropy, cross-entropy: CHUNK-sized; segments: SEG_BLK-sized),   \
     * within a few ulp otherwise.  KL states combine within the kernels'     \
     * error bound (each chunk of a row takes its shift from the row so far,  \
     * which a piece alone cannot know); kk_div_carry continues the row       \
     * itself, bit for bit. ---- */                                           \
                                                                               \
    /* lse state (lse.h) of each row of x: value kk_lse_value */              \
    X(isa, kk_lse_states, (const kk_rows *x, kk_lse_t *states), (x, states))    \
                                                                               \
    /* the reduction state of each row of logits p (op KK_ENTROPY: kk_ent_t, \
     * combine kk_ent_combine, value kk_ent_value) or row pair of logits p,   \
     * q (op KK_XENT: kk_xent_t, combine kk_xent_combine, value              \
     * kk_xent_value; op KK_KL: kk_kl_t, finished by kk_kl_finish; combine    \
     * kk_kl_combine then kk_kl_finish, value kk_kl_state_value), scaled by   \
     * inv_temp */                                                            \
    X(isa, kk_div_states,                                                      \
      (int op, int prec, const kk_rows *p, const kk_rows *q, double inv_temp,  \
       void *states),                                                          \
      (op, prec, p, q, inv_temp, states))                                      \
                                                                               \
    /* softmax / log_softmax of each row of x into out as kk_softmax_rows,   \
     * from the lse state of each row given in states (the combine of the     \
     * states of its pieces): the kernels' bits where that is the row's own */ \
    X(isa, kk_softmax_given,                                                   \
      (const kk_rows *x, int log_, const kk_lse_t *states, const kk_rows *out), \
      (x, log_, states, out))                                                  \
                                                                               \
    /* the row loops that carry more than a combinable state, continued: per  \
     * row, from carry[r] over the row's elements, the new carry into         \
     * carry[r].  op KK_KL of logits: kk_kl_carry_t (klkit_cpu.h; start       \
     * {kk_kl_empty(), 0, 0}; the row's state is kk_kl_finish of its k);      \
     * kind KK_LOGPROBS: the double sum of the row's terms (start 0; not      \
     * clamped: KL and JS are max(0, sum)).  A row cut at multiples of CHUNK  \
     * (log-probs other than JS: of BLOCK) and run piece by piece gives the   \
     * whole row's carry, bit for bit. */                                     \
    X(isa, kk_div_carry,                                                       \
      (int op, int kind, int prec, const kk_rows *p, const kk_rows *q,         \
       double inv_temp, double beta, void *carry),                             \
      (op, kind, prec, p, q, inv_temp, beta, carry))                           \
                                                                               \
    /* the state (segment.h) of each packed sequence, as kk_seg_packed (an    \
     * empty sequence: kk_seg_empty): combine kk_seg_combine, value           \
     * kk_seg_value with the sequence's length */                              \
    X(isa, kk_seg_states,                                                      \
      (int op, int est, int prec, const kk_rows *x, const int64_t *x_start,    \
       const kk_rows *y, const int64_t *y_start, const int64_t *len,           \
       int64_t n_seg, double clamp, kk_seg_t *states),                         \
      (op, est, prec, x, x_start, y, y_start, len, n_seg, clamp, states))      \
                                                                               \
    /* out[i] = the combine of states a[i] then b[i], n states of type kind   \
     * (enum kk_state; op: the segment reduction, inv_temp: KL's), through    \
     * the same instructions as the kernels (states.c) */                     \
    X(isa, kk_state_combine,                                                   \
      (int kind, int op, double inv_temp, int64_t n, const void *a,            \
       const void *b, void *out),                                              \
      (kind, op, inv_temp, n, a, b, out))                                      \
                                                                               \
    /* out[i] = the value of state i (KL: its inputs' unit roundoff eps, NaN  \
     * where only the row's direct form would do; segments: the token        \
     * counts and the empty value) */                                         \
    X(isa, kk_state_values,                                                    \
      (int kind, int op, double inv_temp, double eps, int64_t n,               \
       const void *states, const int64_t *counts, double empty, double *out),  \
      (kind, op, inv_temp, eps, n, states, counts, empty, out))

#endif
