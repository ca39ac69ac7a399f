/* klkit_cuda.h: the entry points of the CUDA kernels (what _cuda.pyx calls).
 *
 * Every entry point is a host function that launches on `stream` (a
 * cudaStream_t given as void *: the producer's current stream) and returns
 * at once, without synchronising; it returns 0 or the cudaError_t of the
 * launch.  Pointers are device pointers of the current device, which the
 * caller (_cuda.pyx) has made the device of the arrays.
 *
 * Arrays of rows are kk_cu_rows: the leading (batch) axes keep any shape and
 * strides (in elements; a view such as logits[:, :-1] is read in place),
 * each row is contiguous (the Python layer copies a row that is not).  Two
 * operands of one call (p and q, logp and ref_logp) have the same dtype.
 * The working precision is double for float64 input and float for the
 * others; per-row results are double.
 *
 * Determinism: each row is cut into pieces of KK_CU_PIECE elements (the
 * number of pieces a function of the row's length alone), each piece is
 * read by one group of threads in a fixed order, the threads' states are
 * combined by a fixed tree and the pieces' states in row order by the
 * header combines.  No result uses float atomics: the same row gives the
 * same bits run to run and in any batch.  The only atomics are the integer
 * minimum of the validation kernels (the first bad position).
 *
 * `ws` is scratch device memory of kk_cu_workspace(n_rows, n) bytes (the
 * caller allocates it through the array's own framework); segment
 * functions take kk_cu_seg_workspace(n_seg, n_tokens) bytes.
 */
#ifndef KLKIT_CUDA_H
#define KLKIT_CUDA_H

#include <stdint.h>
#include "klkit/codes.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { KK_CU_MAX_DIMS = 8 };

typedef struct {
    const void *data;                   /* the first element of the first row */
    int dtype;                          /* enum kk_dtype */
    int lead_ndim;                      /* >= 0 */
    int64_t lead_shape[KK_CU_MAX_DIMS], lead_step[KK_CU_MAX_DIMS];
    int64_t n_rows, n;                  /* rows, elements per row */
} kk_cu_rows;

/* bytes of scratch memory the row functions need for this shape */
int64_t kk_cu_workspace(int64_t n_rows, int64_t n);

/* out[r] = log-sum-exp of row r */
int kk_cu_lse_rows(const kk_cu_rows *x, double *out, void *ws, void *stream);

/* row r of out (float32, or float64 for float64 x; rows like x's, written)
 * = softmax (log_ 0) or log_softmax (log_ 1) of row r of x */
int kk_cu_softmax_rows(const kk_cu_rows *x, int log_, const kk_cu_rows *out, void *ws,
                       void *stream);

/* out[r] = entropy / cross-entropy / KL / JS (op) of rows r of p and q (q
 * NULL for the entropy) of kind logits (scaled by inv_temp) or log-probs;
 * for logits, saved (NULL: not wanted) receives per row the 5 numbers
 * kk_cu_div_grad takes: lse of p, lse of q, the value in nats and, for KL,
 * lse_p - lse_q from its own sums, for JS sum P log(P/M) and sum Q log(Q/M) */
int kk_cu_div_rows(int op, int kind, const kk_cu_rows *p, const kk_cu_rows *q,
                   double inv_temp, double beta, double *out, double *saved, void *ws,
                   void *stream);

/* token log-probs as kk_token_rows of the CPU kernels: lp[r] = log
 * softmax(x[r] * inv_temp)[targets[r]] (0 in every output where targets[r]
 * == ignore_index); ent, lse, smooth (sum_c w_c log p_c, weight NULL: all
 * ones, else n values of the working precision) where not NULL.  A row
 * whose target is outside [0, n) is not read and gives NaN (the caller
 * validates the targets on the device, kk_cu_check_index, and raises). */
int kk_cu_token_rows(const kk_cu_rows *x, const int64_t *targets, int64_t ignore_index,
                     double inv_temp, const void *weight, double *lp, double *ent,
                     double *lse, double *smooth, void *ws, void *stream);

/* ---- backward (torch autograd): the gradient with respect to an input's
 * rows, written into out (rows like the input's, of its dtype: 16-bit
 * rounded to nearest even), elementwise per row from per-row numbers the
 * forward saved; the formulas and special cases of the CPU kernels'
 * kk_token_grad, kk_div_grad and kk_softmax_grad (kernels/cpu/klkit_entries.h) ---- */

/* out_c = a p_c + b p_c log p_c + e w_c (+ d at c = targets[r]), p =
 * softmax(x[r] * inv_temp) from lse[r], coef[4r .. 4r+3] = {a, b, d, e};
 * targets NULL: no d term; weight NULL: all ones, else n values of the
 * working precision.  A row whose coefficients are all 0 is zeros and not
 * read; one whose lse is not finite is NaN. */
int kk_cu_token_grad(const kk_cu_rows *x, const int64_t *targets, double inv_temp,
                     const double *lse, const double *coef, const void *weight,
                     const kk_cu_rows *out, void *stream);

/* g[r] times the gradient of op(p, q) of row r into dp and dq (either NULL:
 * not wanted), from kk_cu_div_rows' saved numbers (logits; NULL for
 * log-probs).  A row with g[r] = 0 (JS: beta 0 or 1) is zeros, not read. */
int kk_cu_div_grad(int op, int kind, const kk_cu_rows *p, const kk_cu_rows *q, double inv_temp,
                   double beta, const double *saved, const double *g, const kk_cu_rows *dp,
                   const kk_cu_rows *dq, void *stream);

/* softmax (log_ 0) / log_softmax (log_ 1) backward from the output y and
 * the upstream gradient gy (both of the working precision) into out */
int kk_cu_softmax_grad(int log_, const kk_cu_rows *y, const kk_cu_rows *gy,
                       const kk_cu_rows *out, void *ws, void *stream);

/* bytes of scratch memory of the packed segment functions */
int64_t kk_cu_seg_workspace(int64_t n_seg, int64_t n_tokens);

/* per packed sequence s (elements x_start[s] .. + len[s] of the 1-D x, of
 * element stride x_step; seq_kl: the same span of y from y_start[s]):
 * out[s] = its reduction (op, estimator est, clamp), `empty` where len[s]
 * is 0.  n_tokens is the length of x (and of y); the spans may not
 * overlap.  A span outside the values is not read: its result is NaN (the
 * caller validates the offsets on the device and raises). */
int kk_cu_seg_packed(int op, int est, const void *x, int dtype, int64_t x_step,
                     const int64_t *x_start, const void *y, int64_t y_step,
                     const int64_t *y_start, const int64_t *len, int64_t n_seg,
                     int64_t n_tokens, double clamp, double empty, double *out, void *ws,
                     void *stream);

/* per row r of x [B, T] (y: its partner, NULL without estimator; mask:
 * bytes 0/1 of the same rows, NULL: all kept): out[r] = the reduction of
 * the kept entries, count[r] (may be NULL) their number */
int kk_cu_seg_padded(int op, int est, const kk_cu_rows *x, const kk_cu_rows *y,
                     const kk_cu_rows *mask, double clamp, double empty, double *out,
                     int64_t *count, void *stream);

/* out (contiguous, n_rows * n values of the working precision) =
 * estimator(x - y) elementwise */
int kk_cu_kl_estimate(int est, const kk_cu_rows *x, const kk_cu_rows *y, double clamp,
                      void *out, void *stream);

/* validation, on the device: *first = the smallest i < n with v[i] outside
 * [lo, hi) and v[i] != skip (first must hold n before the call; it is left
 * alone where every value is good) */
int kk_cu_check_index(const int64_t *v, int64_t n, int64_t lo, int64_t hi, int64_t skip,
                      int64_t *first, void *stream);

/* *first = the smallest i with v[i + 1] < v[i] (n values; first must hold
 * n before the call) */
int kk_cu_check_sorted(const int64_t *v, int64_t n, int64_t *first, void *stream);

/* make `device` the calling thread's current device, its previous one into
 * *previous (kernels launch on the device of their arrays, whatever the
 * framework's current device) */
int kk_cu_use_device(int device, int *previous);

/* the CUDA driver's and runtime's versions (e.g. 13000), and the number of
 * devices (0 where there is no driver or no GPU; *err: the error) */
void kk_cu_versions(int *driver, int *runtime, int *devices, int *err);

/* the message of a cudaError_t */
const char *kk_cu_error_string(int err);

/* the SM architectures the module was built for, e.g. "80-real;90-real;90-virtual" */
const char *kk_cu_archs(void);

#ifdef __cplusplus
}
#endif

#endif
