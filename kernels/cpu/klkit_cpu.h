/* klkit_cpu.h: the C entry points that _cpu.pyx calls.
 *
 * Arrays are described by raw pointers, element counts and strides in
 * ELEMENTS.  Each row is contiguous (element stride 1); rows are
 * row_stride apart (0 is allowed: a broadcast row).  Every function handles
 * all rows, in parallel over rows with OpenMP; each row is processed by one
 * thread in a fixed order, so results are bitwise independent of the thread
 * count and of the other rows.
 */
#ifndef KLKIT_CPU_H
#define KLKIT_CPU_H

#include <stdint.h>

/* dense.c, tokens.c and segment.c are compiled once per instruction set
 * (KK_ISA = base, avx2, avx512; CMakeLists.txt) and every name they export
 * carries that suffix: KK_FN(kk_lse_rows) is kk_lse_rows_avx2 in the AVX2
 * build.  dispatch.c routes the plain names declared here to one of them. */
#define KK_CAT2(a, b) a##_##b
#define KK_CAT(a, b) KK_CAT2(a, b)
#define KK_FN(name) KK_CAT(name, KK_ISA)

enum kk_dtype { KK_F16 = 0, KK_BF16 = 1, KK_F32 = 2, KK_F64 = 3 };

/* bytes per element of a dtype code */
static inline int kk_itemsize(int dtype)
{
    return dtype == KK_F64 ? 8 : dtype == KK_F32 ? 4 : 2;
}
enum kk_kind { KK_LOGITS = 0, KK_LOGPROBS = 1 };
enum kk_divop { KK_ENTROPY = 0, KK_XENT = 1, KK_KL = 2, KK_JS = 3 };

/* log-sum-exp of each row into out[n_rows] (double). */
void kk_lse_rows(int dtype, const void *x, int64_t n_rows, int64_t n,
                 int64_t row_stride, double *out);

/* softmax (log_ = 0) or log_softmax (log_ = 1) of each row into out, which is
 * float for 16/32-bit input and double for float64 input. */
void kk_softmax_rows(int dtype, const void *x, int64_t n_rows, int64_t n,
                     int64_t row_stride, int log_, void *out,
                     int64_t out_row_stride);

/* entropy / cross-entropy / KL / JS of each row pair into out[n_rows], in
 * nats.  q is ignored for KK_ENTROPY.  inv_temp scales logits (KK_LOGITS). */
void kk_div_rows(int op, int kind, int dtype, const void *p, int64_t p_stride,
                 const void *q, int64_t q_stride, int64_t n_rows, int64_t n,
                 double inv_temp, double beta, double *out);

/* Per-row token log-probs (tokens.c): for each row r with target t = targets[r],
 * lp[r] = log softmax(x[r] * inv_temp)[t]; where set, ent[r] its entropy,
 * lse[r] the lse of x[r] * inv_temp and smooth[r] = sum_c w_c log p_c (the
 * label-smoothing sum; weight NULL = all ones, else n values of float, or
 * double for float64 x).  Rows with t == ignore_index give 0 in every output
 * and are not read; any other t outside [0, n) gives NaN (callers validate
 * first). */
void kk_token_rows(int dtype, const void *x, int64_t n_rows, int64_t n,
                   int64_t row_stride, const int64_t *targets, int64_t ignore_index,
                   double inv_temp, const void *weight, double *lp, double *ent,
                   double *lse, double *smooth);

/* OpenMP control (no-ops returning 1 without OpenMP) and build facts. */
void kk_set_num_threads(int n);
int kk_get_num_threads(void);
int kk_have_openmp(void);
const char *kk_isa(void);          /* code path chosen at run time */
const char *kk_isas_built(void);   /* all code paths compiled in */
int kk_set_isa(const char *name);  /* force a path (NULL: best); 1 if now in use */

/* ---- segments (segment.c) -------------------------------------------------
 * Per-sequence reductions.  A packed sequence s is x[x_start[s] ..
 * x_start[s] + len[s]) of a 1-D array with element stride x_stride (any
 * sign; 0 is a broadcast value); for seq_kl (est != KK_EST_NONE) its
 * partner is y[y_start[s] ..] of the same length.  A padded sequence is the
 * entries of row r of x [n_rows, n] (unit column stride, row stride x_rs
 * elements) whose mask byte is nonzero (mask NULL: all entries).  The caller
 * has checked every range lies inside its array.  out[s] is double; an empty
 * sequence gives `empty`.  clamp = inf means no clamp.  Results are bitwise
 * independent of the thread count and of the other sequences (segment.c). */
enum kk_segop { KK_SEG_SUM = 0, KK_SEG_MEAN = 1, KK_SEG_MAX = 2, KK_SEG_LSE = 3 };
enum kk_est { KK_EST_NONE = 0, KK_EST_K1 = 1, KK_EST_K2 = 2, KK_EST_K3 = 3, KK_EST_ABS = 4 };

void kk_seg_packed(int op, int est, int dtype, const void *x, int64_t x_stride,
                   const int64_t *x_start, const void *y, int64_t y_stride,
                   const int64_t *y_start, const int64_t *len, int64_t n_seg,
                   double clamp, double empty, double *out);

/* count (may be NULL) receives the number of kept entries of each row */
void kk_seg_padded(int op, int est, int dtype, const void *x, int64_t x_rs,
                   const void *y, int64_t y_rs, const uint8_t *mask, int64_t m_rs,
                   int64_t n_rows, int64_t n, double clamp, double empty,
                   double *out, int64_t *count);

/* out[i] = estimator(x[i] - y[i]) for contiguous x, y of n values; out is
 * float for 16/32-bit input, double for float64 input. */
void kk_kl_estimate(int est, int dtype, const void *x, const void *y, int64_t n,
                    double clamp, void *out);

#endif
