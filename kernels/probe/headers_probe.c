/* headers_probe.c: includes every header of kernels/include/klkit and calls
 * every KLKIT_HD function, from host code and, under nvcc, from a __global__
 * kernel.  check_headers.sh compiles it (nothing runs it) as strict C11
 * (gcc -std=c11 -pedantic -Wall -Wextra -Werror), as C++17 where g++ is
 * found, and as CUDA C++ for sm_80 and sm_90 where nvcc is found; it also
 * fails when a KLKIT_HD function of the headers is missing here. */
#include "klkit/codes.h"
#include "klkit/config.h"
#include "klkit/expm.h"
#include "klkit/lse.h"
#include "klkit/divergence.h"
#include "klkit/segment.h"
#include "klkit/tokens.h"

/* Every KLKIT_HD function once, on the inputs in[0 .. 1]; the results are
 * summed so that none is dead code. */
static KLKIT_HD double probe_all(const double *in, float *out_f)
{
    double x = in[0], y = in[1], acc = 0.0;
    float xf = (float)x, yf = (float)y, acc_f = 0.0f;
    int32_t ni;
    int64_t nl;
    double nd;

    /* config.h */
    acc_f += kk_f32_from_bits(kk_bits_f32(xf)) + kk_diff_errf(xf, yf, xf - yf);
    acc += kk_f64_from_bits(kk_bits_f64(x)) + kk_diff_err(x, y, x - y);

    /* expm.h */
    acc_f += kk_expf_reduced(xf, 1.0f, &ni);
    acc_f += (float)ni;
    acc_f += kk_expf(xf) + kk_expf_neg(xf) + kk_expf_neg_unclamped(xf);
    acc_f += kk_phif_wide(xf);
    acc_f += kk_bf16_to_f32((uint16_t)ni) + kk_f16_to_f32((uint16_t)ni);
    acc_f += (float)kk_f32_to_bf16(xf) + (float)kk_f32_to_f16(yf);
    acc += kk_exp_reduced(x, 1.0, &nd, &nl);
    acc += nd + (double)nl;
    acc += kk_exp(x) + kk_exp_neg(x) + kk_exp_neg_unclamped(x);
    acc += kk_log_pos(y) + kk_log1p_mod(x) + kk_expm1_small(x) + kk_phi_series(x);

    /* lse.h */
    kk_lse_t l = { x, y };
    l = kk_lse_combine(kk_lse_empty(), l);
    acc += kk_lse_value(l);

    /* divergence.h */
    kk_ent_t e = { l, x };
    e = kk_ent_combine(e, kk_ent_empty());
    acc += kk_ent_value(e);
    kk_xent_t xe = { l, l, y };
    xe = kk_xent_combine(xe, xe);
    acc += kk_xent_rescale(xe, x, y) + kk_xent_value(xe);
    acc += kk_u_minus_log1p(x) + kk_kl_value(1.0, x, y);
    double W = 1.0, A = x, B = y;
    kk_kl_shift_sums(&W, &A, &B, x);
    acc += W + A + B;
    kk_kl_t k = kk_kl_combine(kk_kl_empty(), kk_kl_empty(), y);
    k = kk_kl_finish(k, y);
    acc += kk_kl_shift(k, y) + kk_kl_state_value(k, y, 1e-16);
    double v = 0.0;
    acc += (double)kk_kl_special(k, &v) + v + (double)kk_kl_sums_usable(k, y, 1e-16);
    acc += kk_js_term(x, y, x - y, 0.5, -0.6931471805599453, -0.6931471805599453);

    /* segment.h */
    acc_f += kk_clampf(xf, yf) + (float)kk_finite_nonnegf(xf) + kk_k3f_series(xf) + kk_k3f(xf);
    acc_f += kk_k3f_xy(xf, yf, 20.0f) + kk_k3f_xy_small(xf, yf);
    acc += kk_max_nan(x, y) + kk_clamp(x, y) + (double)kk_finite_nonneg(x);
    acc += kk_k3_series(x) + kk_k3(x) + kk_k3_xy(x, y, 20.0) + kk_k3_xy_small(x, y);
    kk_seg_t s = kk_seg_combine(KK_SEG_LSE, kk_seg_empty(KK_SEG_MAX), kk_seg_empty(KK_SEG_SUM));
    acc += kk_seg_value(KK_SEG_MEAN, s, 3, 0.0);

    /* tokens.h */
    kk_smooth_t sm = { x, y, 1.0 };
    sm = kk_smooth_combine(sm, sm);
    acc += kk_smooth_value(sm, 1.0, y);

    *out_f = acc_f;
    return acc;
}

double probe_host(const double *in, float *out_f);

double probe_host(const double *in, float *out_f)
{
    return probe_all(in, out_f);
}

#ifdef __CUDACC__
__global__ void probe_kernel(const double *in, double *out, float *out_f)
{
    unsigned i = threadIdx.x;
    out[i] = probe_all(in + 2 * i, out_f + i);
}
#endif
