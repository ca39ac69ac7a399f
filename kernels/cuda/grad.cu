/* grad.cu: the backward kernels of torch autograd on the GPU
 * (klkit_cuda.h): the formulas of the CPU kernels (kernels/cpu/grad_rows.inc,
 * where they are derived), elementwise per row from the per-row numbers the
 * forward saved, one read of each input and one write of each gradient
 * (softmax's backward: its reduction first, then the write).
 *
 * Log-probabilities are recomputed from the saved lse split as hi + lo in
 * the working precision, log p = fma(x, it, -hi) - lo: the error of log p
 * is its own rounding, not that of |x| or |lse|.
 */
#include <math.h>

#include "device.cuh"
#include "klkit/expm.h"
#include "online.cuh"

namespace kkcu {

template <class C> __device__ __forceinline__ void split(double v, C &hi, C &lo)
{
    hi = (C)v;
    lo = (C)(v - (double)hi);
}

/* log p = x it - (hi + lo), at most 0 (NaN stays) */
template <class C> __device__ __forceinline__ C logp(C x, C it, C hi, C lo)
{
    const C l = fma(x, it, -hi) - lo;
    return l > 0 ? (C)0 : l;
}

/* near-zero reach of phi's series (online.cuh's wphi) */
template <class C> struct near { static constexpr double v = 2.0; };
template <> struct near<double> { static constexpr double v = 0.5; };
__device__ __forceinline__ float phi_near(float d) { return kk_phif_wide(d); }
__device__ __forceinline__ double phi_near(double d) { return kk_phi_series(d); }

/* log M, M = beta P + (1 - beta) Q in double; NaN and +inf pass, M = 0 is
 * discarded by the callers */
template <class C> __device__ __forceinline__ C lmix(C P, C Q, C beta, C nb)
{
    const double m = (double)beta * (double)P + (double)nb * (double)Q;
    return (C)(m == 0.0 ? 0.0 : log(m));
}

/* the (row, piece) item of a thread, as the row kernels cut rows */
struct item_t {
    int64_t r, lo, hi;
    int lane, tpr;
    bool live;
};

__device__ __forceinline__ item_t item_of(int64_t n_rows, int64_t n)
{
    item_t t;
    const int64_t S = pieces(n);
    t.tpr = tpr_for(n);
    const int64_t item = (int64_t)blockIdx.x * (BLOCK / t.tpr) + threadIdx.x / t.tpr;
    t.lane = threadIdx.x % t.tpr;
    t.live = item < n_rows * S;
    t.r = t.live ? item / S : 0;
    t.lo = t.live ? (item % S) * PIECE : 0;
    t.hi = t.live ? (t.lo + PIECE < n ? t.lo + PIECE : n) : 0;
    return t;
}

inline unsigned grid_rows(int64_t n_rows, int64_t n)
{
    return blocks_for(n_rows * pieces(n), tpr_for(n));
}

template <class E> __device__ __forceinline__ E *out_row(const kk_cu_rows &o, int64_t r)
{
    return const_cast<E *>(row_ptr<E>(o, r));
}

/* ---- token rows, logsumexp, entropy of logits ---- */

template <class E>
__global__ void __launch_bounds__(BLOCK) token_grad(kk_cu_rows x, kk_cu_rows out,
                                                    const int64_t *targets, double inv_temp,
                                                    const double *lse, const double *coef,
                                                    const typename work<E>::type *w)
{
    typedef typename work<E>::type C;
    const item_t t = item_of(x.n_rows, x.n);
    if (!t.live) return;
    const double *cf = coef + 4 * t.r;
    const bool zero = cf[0] == 0 && cf[1] == 0 && cf[2] == 0 && cf[3] == 0;
    const C fillv = zero ? (C)0 : (C)NAN;
    const bool fill = zero || !isfinite(lse[t.r]);
    const E *xr = row_ptr<E>(x, t.r);
    E *o = out_row<E>(out, t.r);
    const int64_t tg = targets ? targets[t.r] : -1;
    C hi, lo;
    split(lse[t.r], hi, lo);
    const C it = (C)inv_temp, a = (C)cf[0], b = (C)cf[1], d = (C)cf[2], e = (C)cf[3];
    for (int64_t i = t.lo + t.lane; i < t.hi; i += t.tpr) {
        C v = fillv;
        if (!fill) {
            const C l = logp(to_c(xr[i]), it, hi, lo), p = ex(l);
            v = a * p + b * (p == 0 ? (C)0 : p * l) + e * (w ? w[i] : (C)1);
            if (i == tg) v += d;
        }
        put(o + i, v);
    }
}

/* ---- divergences ---- */

template <class E>
__global__ void __launch_bounds__(BLOCK) div_grad(int op, int kind, kk_cu_rows p, kk_cu_rows q,
                                                  double inv_temp, double beta,
                                                  const double *saved, const double *g,
                                                  kk_cu_rows dp, kk_cu_rows dq, int want_p,
                                                  int want_q)
{
    typedef typename work<E>::type C;
    const item_t t = item_of(p.n_rows, p.n);
    if (!t.live) return;
    const int64_t r = t.r;
    const E *xp = row_ptr<E>(p, r);
    const E *xq = op == KK_ENTROPY ? xp : row_ptr<E>(q, r);
    E *gp = want_p ? out_row<E>(dp, r) : nullptr;
    E *gq = want_q ? out_row<E>(dq, r) : nullptr;
    if (g[r] == 0.0 || (op == KK_JS && (beta == 0.0 || beta == 1.0))) {
        /* a row that contributes nothing is not read (no 0 * inf); JS is 0
         * for every P, Q at beta 0 and 1, and so is its gradient */
        for (int64_t i = t.lo + t.lane; i < t.hi; i += t.tpr) {
            if (gp) put(gp + i, (C)0);
            if (gq) put(gq + i, (C)0);
        }
        return;
    }
    const C bt = (C)beta, nb = (C)1 - bt;
    if (kind == KK_LOGPROBS) {
        const C gg = (C)g[r];
        for (int64_t i = t.lo + t.lane; i < t.hi; i += t.tpr) {
            const C a = to_c(xp[i]), b = to_c(xq[i]);
            const C P = ex(a), Q = ex(b);
            C vp, vq = 0;
            if (op == KK_ENTROPY) {
                vp = P == 0 ? (C)0 : -gg * P * (a + 1);
            } else if (op == KK_XENT) {
                vp = P == 0 ? (C)0 : -gg * P * b;
                vq = -gg * P;
            } else if (op == KK_KL) {
                vp = P == 0 ? (C)0 : gg * P * (a - b);
                vq = gg * (Q - P);
            } else {
                const C lm = lmix(P, Q, bt, nb);
                vp = P == 0 ? (C)0 : gg * bt * P * (a - lm);
                vq = Q == 0 ? (C)0 : gg * nb * Q * (b - lm);
            }
            if (gp) put(gp + i, vp);
            if (gq) put(gq + i, vq);
        }
        return;
    }
    const double *sv = saved + 5 * r;
    C hp, lp, hq = 0, lq = 0, hd, ld;
    split(sv[0], hp, lp);
    if (op != KK_ENTROPY) split(sv[1], hq, lq);
    split(op == KK_KL ? sv[3] : sv[0] - sv[1], hd, ld);
    const C it = (C)inv_temp, v = (C)sv[2], cg = (C)(g[r] * inv_temp);
    const C jp = op == KK_JS ? (C)sv[3] : (C)0, jq = op == KK_JS ? (C)sv[4] : (C)0;
    for (int64_t i = t.lo + t.lane; i < t.hi; i += t.tpr) {
        const C a = to_c(xp[i]), b = to_c(xq[i]);
        const C l1 = logp(a, it, hp, lp), P = ex(l1);
        C vp, vq = 0;
        if (op == KK_ENTROPY) {
            vp = P == 0 ? (C)0 : cg * P * (-l1 - v);
        } else {
            const C l2 = logp(b, it, hq, lq), Q = ex(l2);
            if (op == KK_XENT) {
                vp = P == 0 ? (C)0 : cg * P * (-l2 - v);
                vq = cg * (Q - P);
            } else if (op == KK_KL) {
                const C d = fma(a - b, it, -hd) - ld;         /* log P - log Q */
                const C qp = fabs(d) <= (C)near<C>::v ? P * (phi_near(d) - d) : Q - P;
                vp = P == 0 ? (C)0 : cg * P * (d - v);
                vq = P == 0 ? cg * Q : cg * qp;
            } else {
                const C lm = lmix(P, Q, bt, nb);
                vp = P == 0 ? (C)0 : cg * bt * P * ((l1 - lm) - jp);
                vq = Q == 0 ? (C)0 : cg * nb * Q * ((l2 - lm) - jq);
            }
        }
        if (gp) put(gp + i, vp);
        if (gq) put(gq + i, vq);
    }
}

/* ---- softmax / log_softmax: S per row, then the write ---- */

template <class Y> struct GradSumOp {
    typedef dstate<1> S;
    int log_;
    kk_cu_rows y, gy;
    double *rc;      /* S of row r at rc[r] */

    template <int TPR>
    __device__ S piece(int64_t r, int64_t lo, int64_t hi, int lane) const
    {
        Y s = 0;
        each2<TPR>(row_ptr<Y>(y, r), row_ptr<Y>(gy, r), lo, hi, lane,
                   [&](int64_t, Y vy, Y vg) { s += log_ ? vg : vg * vy; });
        return S{ { (double)s } };
    }
    __device__ S combine(S a, S b) const { return S{ { a.v[0] + b.v[0] } }; }
    __device__ void finish(int64_t r, S s) const { rc[r] = s.v[0]; }
};

template <class E>
__global__ void __launch_bounds__(BLOCK) softmax_grad(int log_, kk_cu_rows y, kk_cu_rows gy,
                                                      kk_cu_rows out, const double *rc)
{
    typedef typename work<E>::type C;
    const item_t t = item_of(y.n_rows, y.n);
    if (!t.live) return;
    const C *yr = row_ptr<C>(y, t.r), *gr = row_ptr<C>(gy, t.r);
    E *o = out_row<E>(out, t.r);
    const C S = (C)rc[t.r];
    for (int64_t i = t.lo + t.lane; i < t.hi; i += t.tpr)
        put(o + i, log_ ? gr[i] - ex(yr[i]) * S : yr[i] * (gr[i] - S));
}

}  // namespace kkcu

using namespace kkcu;

extern "C" int kk_cu_token_grad(const kk_cu_rows *x, const int64_t *targets, double inv_temp,
                                const double *lse, const double *coef, const void *weight,
                                const kk_cu_rows *out, void *stream)
{
    if (x->n_rows * x->n == 0) return 0;
    if (out->dtype != x->dtype) return (int)cudaErrorInvalidValue;
    cudaStream_t st = (cudaStream_t)stream;
    return by_dtype(x->dtype, [&](auto e) {
        typedef KK_ELEMENT_TYPE(e) E;
        token_grad<E><<<grid_rows(x->n_rows, x->n), BLOCK, 0, st>>>(
            *x, *out, targets, inv_temp, lse, coef,
            static_cast<const typename work<E>::type *>(weight));
        return launched();
    });
}

extern "C" int kk_cu_div_grad(int op, int kind, const kk_cu_rows *p, const kk_cu_rows *q,
                              double inv_temp, double beta, const double *saved, const double *g,
                              const kk_cu_rows *dp, const kk_cu_rows *dq, void *stream)
{
    if (p->n_rows * p->n == 0) return 0;
    if ((q && q->dtype != p->dtype) || (dp && dp->dtype != p->dtype) ||
        (dq && dq->dtype != p->dtype) || (kind == KK_LOGITS && !saved))
        return (int)cudaErrorInvalidValue;
    cudaStream_t st = (cudaStream_t)stream;
    return by_dtype(p->dtype, [&](auto e) {
        typedef KK_ELEMENT_TYPE(e) E;
        div_grad<E><<<grid_rows(p->n_rows, p->n), BLOCK, 0, st>>>(
            op, kind, *p, q ? *q : *p, inv_temp, beta, saved, g, dp ? *dp : *p, dq ? *dq : *p,
            dp != nullptr, dq != nullptr);
        return launched();
    });
}

extern "C" int kk_cu_softmax_grad(int log_, const kk_cu_rows *y, const kk_cu_rows *gy,
                                  const kk_cu_rows *out, void *ws, void *stream)
{
    if (y->n_rows * y->n == 0) return 0;
    if (gy->dtype != y->dtype || (y->dtype != KK_F32 && y->dtype != KK_F64))
        return (int)cudaErrorInvalidValue;
    cudaStream_t st = (cudaStream_t)stream;
    double *rc = rc_of(ws, y->n_rows, y->n);
    int err = y->dtype == KK_F64
                  ? run(GradSumOp<double>{ log_, *y, *gy, rc }, y->n_rows, y->n, ws, st)
                  : run(GradSumOp<float>{ log_, *y, *gy, rc }, y->n_rows, y->n, ws, st);
    if (err) return err;
    return by_dtype(out->dtype, [&](auto e) {
        typedef KK_ELEMENT_TYPE(e) E;
        if ((y->dtype == KK_F64) != std::is_same<E, double>::value)
            return (int)cudaErrorInvalidValue;
        softmax_grad<E><<<grid_rows(y->n_rows, y->n), BLOCK, 0, st>>>(log_, *y, *gy, *out, rc);
        return launched();
    });
}
