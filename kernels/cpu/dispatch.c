/* dispatch.c: chooses at run time which compiled code path (dense.c,
 * tokens.c and segment.c, built per instruction set) serves the public
 * entry points of klkit_cpu.h, and wraps the OpenMP thread controls.
 *
 * x86-64: AVX-512 (F+BW+DQ+VL) if the CPU and OS support it, else AVX2+FMA,
 * else the baseline (SSE2).  Other architectures: the one baseline build.
 * KLKIT_ISA=base|avx2|avx512 in the environment, or kk_set_isa(), forces a
 * path (used by the tests to cover every path the machine can run).
 */
#include <stdlib.h>
#include <string.h>
#include "klkit_cpu.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define DECLARE(isa)                                                           \
    void kk_lse_rows_##isa(int, const void *, int64_t, int64_t, int64_t, double *); \
    void kk_softmax_rows_##isa(int, const void *, int64_t, int64_t, int64_t, int, \
                               void *, int64_t);                               \
    void kk_div_rows_##isa(int, int, int, const void *, int64_t, const void *, \
                           int64_t, int64_t, int64_t, double, double, double *); \
    void kk_token_rows_##isa(int, const void *, int64_t, int64_t, int64_t,      \
                             const int64_t *, int64_t, double, const void *,   \
                             double *, double *, double *, double *);         \
    void kk_seg_packed_##isa(int, int, int, const void *, int64_t, const int64_t *, \
                             const void *, int64_t, const int64_t *, const int64_t *, \
                             int64_t, double, double, double *);               \
    void kk_seg_padded_##isa(int, int, int, const void *, int64_t, const void *, \
                             int64_t, const uint8_t *, int64_t, int64_t, int64_t, \
                             double, double, double *, int64_t *);             \
    void kk_kl_estimate_##isa(int, int, const void *, const void *, int64_t, double, void *);

typedef struct {
    const char *name;
    void (*lse_rows)(int, const void *, int64_t, int64_t, int64_t, double *);
    void (*softmax_rows)(int, const void *, int64_t, int64_t, int64_t, int, void *, int64_t);
    void (*div_rows)(int, int, int, const void *, int64_t, const void *, int64_t,
                     int64_t, int64_t, double, double, double *);
    void (*token_rows)(int, const void *, int64_t, int64_t, int64_t, const int64_t *,
                       int64_t, double, const void *, double *, double *, double *,
                       double *);
    void (*seg_packed)(int, int, int, const void *, int64_t, const int64_t *, const void *,
                       int64_t, const int64_t *, const int64_t *, int64_t, double, double,
                       double *);
    void (*seg_padded)(int, int, int, const void *, int64_t, const void *, int64_t,
                       const uint8_t *, int64_t, int64_t, int64_t, double, double, double *,
                       int64_t *);
    void (*kl_estimate)(int, int, const void *, const void *, int64_t, double, void *);
    int (*supported)(void);
} kk_impl;

#define IMPL(isa, test)                                                        \
    { #isa, kk_lse_rows_##isa, kk_softmax_rows_##isa, kk_div_rows_##isa,       \
      kk_token_rows_##isa, kk_seg_packed_##isa, kk_seg_padded_##isa,          \
      kk_kl_estimate_##isa, test }

static int always(void) { return 1; }

DECLARE(base)
#if defined(KLKIT_X86_PATHS)
DECLARE(avx2)
DECLARE(avx512)
static int has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
static int has_avx512(void)
{
    __builtin_cpu_init();
    return has_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
}
static const kk_impl impls[] = { IMPL(avx512, has_avx512), IMPL(avx2, has_avx2), IMPL(base, always) };
#else
static const kk_impl impls[] = { IMPL(base, always) };
#endif
enum { N_IMPLS = sizeof(impls) / sizeof(impls[0]) };

static const kk_impl *current = NULL;

/* the best supported path, or the one named if it is supported */
int kk_set_isa(const char *name)
{
    for (int i = 0; i < N_IMPLS; i++) {
        if ((name == NULL || strcmp(name, impls[i].name) == 0) && impls[i].supported()) {
            current = &impls[i];
            return 1;
        }
    }
    return 0;
}

static const kk_impl *impl(void)
{
    if (!current) {
        const char *env = getenv("KLKIT_ISA");
        if (!(env && *env && kk_set_isa(env))) kk_set_isa(NULL);
    }
    return current;
}

const char *kk_isa(void) { return impl()->name; }

const char *kk_isas_built(void)
{
#if defined(KLKIT_X86_PATHS)
    return "avx512 avx2 base";
#else
    return "base";
#endif
}

void kk_lse_rows(int dtype, const void *x, int64_t n_rows, int64_t n,
                 int64_t row_stride, double *out)
{
    impl()->lse_rows(dtype, x, n_rows, n, row_stride, out);
}

void kk_softmax_rows(int dtype, const void *x, int64_t n_rows, int64_t n,
                     int64_t row_stride, int log_, void *out, int64_t out_row_stride)
{
    impl()->softmax_rows(dtype, x, n_rows, n, row_stride, log_, out, out_row_stride);
}

void kk_div_rows(int op, int kind, int dtype, const void *p, int64_t p_stride,
                 const void *q, int64_t q_stride, int64_t n_rows, int64_t n,
                 double inv_temp, double beta, double *out)
{
    impl()->div_rows(op, kind, dtype, p, p_stride, q, q_stride, n_rows, n, inv_temp, beta, out);
}

void kk_token_rows(int dtype, const void *x, int64_t n_rows, int64_t n,
                   int64_t row_stride, const int64_t *targets, int64_t ignore_index,
                   double inv_temp, const void *weight, double *lp, double *ent,
                   double *lse, double *smooth)
{
    impl()->token_rows(dtype, x, n_rows, n, row_stride, targets, ignore_index, inv_temp,
                       weight, lp, ent, lse, smooth);
}

void kk_set_num_threads(int n)
{
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

int kk_get_num_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int kk_have_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

void kk_seg_packed(int op, int est, int dtype, const void *x, int64_t x_stride,
                   const int64_t *x_start, const void *y, int64_t y_stride,
                   const int64_t *y_start, const int64_t *len, int64_t n_seg,
                   double clamp, double empty, double *out)
{
    impl()->seg_packed(op, est, dtype, x, x_stride, x_start, y, y_stride, y_start, len,
                       n_seg, clamp, empty, out);
}

void kk_seg_padded(int op, int est, int dtype, const void *x, int64_t x_rs,
                   const void *y, int64_t y_rs, const uint8_t *mask, int64_t m_rs,
                   int64_t n_rows, int64_t n, double clamp, double empty,
                   double *out, int64_t *count)
{
    impl()->seg_padded(op, est, dtype, x, x_rs, y, y_rs, mask, m_rs, n_rows, n, clamp,
                       empty, out, count);
}

void kk_kl_estimate(int est, int dtype, const void *x, const void *y, int64_t n,
                    double clamp, void *out)
{
    impl()->kl_estimate(est, dtype, x, y, n, clamp, out);
}
