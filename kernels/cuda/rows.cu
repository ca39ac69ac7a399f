/* rows.cu: the row reductions on the GPU: logsumexp, softmax and
 * log_softmax, entropy / cross-entropy / KL / JS of logits and of
 * log-probs, and token log-probs (klkit_cuda.h).
 *
 * Every reduction is an Op run by device.cuh's run(): one group of threads
 * per row piece, the pieces of a row combined in row order.
 *
 * KL and JS of logits and softmax outputs need each row's lse first: a
 * first launch writes per row (m, log1p s) of p (and q) into `rc`, then the
 * second pass reads the row again.  KL is then summed in Bregman form
 * around the shift c = log P - log Q of the lse's (any shift gives the
 * exact KL; an error in it costs only its square):
 *   S1 = sum P phi(D),  S2 = sum P (e^-D - 1) = sum (Q' - P),  W = sum P
 *   (a term where P = 0 being Q' in both: the limit of the Bregman term),
 *   KL = S1/W - (S2/W - log1p(S2/W)),   D = log P - log Q per element,
 * every term of S1 >= 0 and S2/W ~ the shift's error, so nothing cancels
 * when P and Q are close (divergence.h's derivation; dividing by W removes
 * the rounding of the normalisers).
 */
#include <math.h>

#include "device.cuh"
#include "klkit/divergence.h"
#include "klkit/lse.h"
#include "klkit/tokens.h"
#include "online.cuh"

namespace kkcu {


__device__ __forceinline__ dstate<2> lse_ds(kk_lse_t l) { return dstate<2>{ { l.m, l.s } }; }
__device__ __forceinline__ kk_lse_t ds_lse(const double *v) { return kk_lse_t{ v[0], v[1] }; }

/* ---- log-sum-exp (also the first pass of softmax, KL and JS) ---- */

template <class E> struct LseOp {
    typedef typename work<E>::type C;
    typedef dstate<2> S;
    kk_cu_rows x;
    double it;
    double *out;     /* the value, or NULL */
    double *rc;      /* (m, log1p s) at rc[RC r + slot], or NULL */
    int slot;

    template <int TPR>
    __device__ S piece(int64_t r, int64_t lo, int64_t hi, int lane) const
    {
        olse<C> a;
        const C itc = (C)it;
        each<TPR>(row_ptr<E>(x, r), lo, hi, lane, [&](int64_t, C v) { a.push(v * itc); });
        return lse_ds(a.state());
    }
    __device__ S combine(S a, S b) const { return lse_ds(kk_lse_combine(ds_lse(a.v), ds_lse(b.v))); }
    __device__ void finish(int64_t r, S s) const
    {
        if (out) out[r] = kk_lse_value(ds_lse(s.v));
        if (rc) {
            rc[RC * r + slot] = s.v[0];
            rc[RC * r + slot + 1] = log1p(s.v[1]);
        }
    }
};

/* ---- softmax / log_softmax outputs from rc ---- */

template <class E, class O>
__global__ void __launch_bounds__(BLOCK) softmax_write(kk_cu_rows x, kk_cu_rows y, int log_,
                                                       const double *rc, int64_t n_rows)
{
    typedef typename work<E>::type C;
    const int64_t n = x.n, S = pieces(n);
    const int tpr = tpr_for(n);
    const int64_t item = (int64_t)blockIdx.x * (BLOCK / tpr) + threadIdx.x / tpr;
    if (item >= n_rows * S) return;
    const int64_t r = item / S, lo = (item % S) * PIECE, hi = lo + PIECE < n ? lo + PIECE : n;
    const E *xr = row_ptr<E>(x, r);
    O *yr = const_cast<O *>(static_cast<const O *>(y.data)) + row_offset(y, r);
    const C m = (C)rc[RC * r], l1 = (C)rc[RC * r + 1], z = (C)exp(rc[RC * r + 1]);
    /* softmax of a row with +inf: NaN (scipy); log_softmax: NaN at the +inf
     * entries, -inf elsewhere, as x - m gives */
    const bool nan_row = !log_ && m == (C)INFINITY;
    for (int64_t i = lo + threadIdx.x % tpr; i < hi; i += tpr) {
        const C d = to_c(xr[i]) - m;
        yr[i] = nan_row ? (O)NAN : (O)(log_ ? d - l1 : ex(d) / z);
    }
}

/* ---- entropy and cross-entropy of logits: one pass ---- */

template <class E> struct EntOp {
    typedef typename work<E>::type C;
    typedef dstate<3> S;
    kk_cu_rows p;
    double it;
    double *out;
    double *saved;   /* NULL, or per row 5: lse, -, value (for the backward) */

    template <int TPR>
    __device__ S piece(int64_t r, int64_t lo, int64_t hi, int lane) const
    {
        oent<C> a;
        const C itc = (C)it;
        each<TPR>(row_ptr<E>(p, r), lo, hi, lane, [&](int64_t, C v) { a.push(v * itc); });
        kk_ent_t e = a.state();
        return S{ { e.l.m, e.l.s, e.u } };
    }
    __device__ static kk_ent_t st(const S &s) { return kk_ent_t{ { s.v[0], s.v[1] }, s.v[2] }; }
    __device__ S combine(S a, S b) const
    {
        kk_ent_t e = kk_ent_combine(st(a), st(b));
        return S{ { e.l.m, e.l.s, e.u } };
    }
    __device__ void finish(int64_t r, S s) const
    {
        out[r] = kk_ent_value(st(s));
        if (saved) {
            saved[5 * r] = kk_lse_value(st(s).l);
            saved[5 * r + 2] = out[r];
        }
    }
};

template <class E> struct XentOp {
    typedef typename work<E>::type C;
    typedef dstate<5> S;
    kk_cu_rows p, q;
    double it;
    double *out;
    double *saved;   /* NULL, or per row 5: lse of p, lse of q, value */

    template <int TPR>
    __device__ S piece(int64_t r, int64_t lo, int64_t hi, int lane) const
    {
        oxent<C> a;
        const C itc = (C)it;
        each2<TPR>(row_ptr<E>(p, r), row_ptr<E>(q, r), lo, hi, lane,
                   [&](int64_t, C vp, C vq) { a.push(vp * itc, vq * itc); });
        return ds(a.state());
    }
    __device__ static S ds(kk_xent_t x) { return S{ { x.p.m, x.p.s, x.q.m, x.q.s, x.u } }; }
    __device__ static kk_xent_t st(const S &s)
    {
        return kk_xent_t{ { s.v[0], s.v[1] }, { s.v[2], s.v[3] }, s.v[4] };
    }
    __device__ S combine(S a, S b) const { return ds(kk_xent_combine(st(a), st(b))); }
    __device__ void finish(int64_t r, S s) const
    {
        out[r] = kk_xent_value(st(s));
        if (saved) {
            saved[5 * r] = kk_lse_value(st(s).p);
            saved[5 * r + 1] = kk_lse_value(st(s).q);
            saved[5 * r + 2] = out[r];
        }
    }
};

/* ---- KL and JS of logits: the second pass, from rc ---- */

__device__ __forceinline__ bool rc_finite(const double *rc, int64_t r)
{
    return isfinite(rc[RC * r]) && isfinite(rc[RC * r + 1]) && isfinite(rc[RC * r + 2]) &&
           isfinite(rc[RC * r + 3]);
}

/* u - log1p(u) without cancellation near 0 */
__device__ __forceinline__ double u_minus_log1p(double u)
{
    return fabs(u) <= 0.5 ? kk_u_minus_log1p(u) : u - log1p(u);
}

/* KL's shift, lse_p - lse_q from rc, as hi + lo in the working precision */
template <class C> __device__ __forceinline__ void shift(const double *c, C &hi, C &lo)
{
    const double v = (c[0] - c[2]) + (c[1] - c[3]);
    hi = (C)v;
    lo = (C)(v - (double)hi);
}

__device__ __forceinline__ float diff_err(float x, float y, float d) { return kk_diff_errf(x, y, d); }
__device__ __forceinline__ double diff_err(double x, double y, double d) { return kk_diff_err(x, y, d); }

template <class E> struct KlOp {
    typedef typename work<E>::type C;
    typedef dstate<3> S;     /* S1, S2, W */
    kk_cu_rows p, q;
    double it;
    const double *rc;
    double *out;
    double *saved;   /* NULL, or per row 5: lse of p, lse of q, KL, lse_p - lse_q */

    template <int TPR>
    __device__ S piece(int64_t r, int64_t lo, int64_t hi, int lane) const
    {
        const double *c = rc + RC * r;
        const C itc = (C)it, mp = (C)c[0], lp1 = (C)c[1], mq = (C)c[2], lq1 = (C)c[3];
        C sh, sl;
        shift(c, sh, sl);
        C s1 = 0, s2 = 0, w = 0;
        each2<TPR>(row_ptr<E>(p, r), row_ptr<E>(q, r), lo, hi, lane, [&](int64_t, C vp, C vq) {
            /* log P, log Q from the exact products (one FMA each), and
             * D = (xp - xq) it - shift from the exact difference (TwoSum,
             * config.h): P e^-D is Q times one constant for every element,
             * which the sums' identity absorbs, so the rounding of the
             * logits' products and of their difference does not reach KL
             * (it would, at |logits| / T of hundreds, by eps |x| / KL) */
            const C P = ex(fma(vp, itc, -mp) - lp1), Q = ex(fma(vq, itc, -mq) - lq1);
            const C d = vp - vq, e = diff_err(vp, vq, d);
            const C D = (fma(d, itc, -sh) - sl) + e * itc;           /* log P - log Q */
            /* where P = 0 the Bregman term P e^-D - P + P D is Q's mass (the
             * limit), in both sums: without it 1 + S2/W would miss Q's mass
             * there and KL lose it */
            /* P > 0 = Q: +inf, also where P's exp underflows */
            s1 += vq == -INFINITY && vp != -INFINITY ? (C)INFINITY : P == 0 ? Q : wphi(P, Q, D);
            s2 += P == 0 ? Q : wem1(P, Q, D);
            w += P;
        });
        return S{ { (double)s1, (double)s2, (double)w } };
    }
    __device__ S combine(S a, S b) const
    {
        return S{ { a.v[0] + b.v[0], a.v[1] + b.v[1], a.v[2] + b.v[2] } };
    }
    __device__ void finish(int64_t r, S s) const
    {
        if (!rc_finite(rc, r) || p.n == 0) {
            out[r] = NAN;
            if (saved)
                for (int k = 0; k < 4; k++) saved[5 * r + k] = NAN;
            return;
        }
        const double u = s.v[1] / s.v[2];
        double kl = s.v[0] / s.v[2] - u_minus_log1p(u);
        out[r] = kl < 0.0 ? 0.0 : kl;         /* NaN stays NaN */
        if (saved) {
            /* the shift the sums were taken at, corrected by them: 1 + u =
             * E_P[e^-D] = exp(shift - (lse_p - lse_q)), to the precision of
             * the sums rather than of two separately rounded lse */
            const double *c = rc + RC * r;
            C sh, sl;
            shift(c, sh, sl);
            saved[5 * r] = c[0] + c[1];
            saved[5 * r + 1] = c[2] + c[3];
            saved[5 * r + 2] = out[r];
            saved[5 * r + 3] = ((double)sh + (double)sl) - log1p(u);
        }
    }
};

/* log M, M = beta P + (1 - beta) Q (double); where M = 0 (P = Q = 0) the
 * callers discard it; NaN and +inf pass */
__device__ __forceinline__ double log_mix(double P, double Q, double beta)
{
    const double m = beta * P + (1.0 - beta) * Q;
    return m == 0.0 ? 0.0 : log(m);
}

/* a JS term from log p and log q (double): kk_js_term with its guards; a
 * NaN or +inf log-prob gives NaN, also for beta 0 and 1 (no term there) */
__device__ __forceinline__ double js_elem(double lp, double lq, double beta, double lb, double lnb)
{
    const double pi = exp(lp), qi = exp(lq);
    double r = lq - lp;
    r = qi == 0.0 ? -INFINITY : r;
    r = pi == 0.0 ? INFINITY : r;
    const double t = kk_js_term(pi, qi, r, beta, lb, lnb);
    return (lp != lp || lq != lq || lp == INFINITY || lq == INFINITY) ? NAN : t;
}

template <class E> struct JsOp {
    typedef typename work<E>::type C;
    typedef dstate<3> S;     /* JS, and for the backward sum P log(P/M), sum Q log(Q/M) */
    kk_cu_rows p, q;
    double it, beta;
    const double *rc;
    double *out;
    double *saved;   /* NULL, or per row 5: lse of p, lse of q, JS, the two sums */

    template <int TPR>
    __device__ S piece(int64_t r, int64_t lo, int64_t hi, int lane) const
    {
        const double *c = rc + RC * r;
        const double lb = log(beta), lnb = log1p(-beta);
        /* the temperature of the lse pass (exact products in double) */
        const double itc = (double)(C)it;
        const bool sums = saved != nullptr;
        double acc = 0, sp = 0, sq = 0;
        each2<TPR>(row_ptr<E>(p, r), row_ptr<E>(q, r), lo, hi, lane, [&](int64_t, C vp, C vq) {
            /* in double whatever the input: p and q enter the Bregman terms at
             * first order (as the CPU kernels) */
            const double lp = ((double)vp * itc - c[0]) - c[1];
            const double lq = ((double)vq * itc - c[2]) - c[3];
            acc += js_elem(lp, lq, beta, lb, lnb);
            if (sums) {
                const double P = exp(lp), Q = exp(lq), lm = log_mix(P, Q, beta);
                sp += P == 0.0 ? 0.0 : P * (lp - lm);
                sq += Q == 0.0 ? 0.0 : Q * (lq - lm);
            }
        });
        return S{ { acc, sp, sq } };
    }
    __device__ S combine(S a, S b) const
    {
        return S{ { a.v[0] + b.v[0], a.v[1] + b.v[1], a.v[2] + b.v[2] } };
    }
    __device__ void finish(int64_t r, S s) const
    {
        const bool bad = !rc_finite(rc, r) || p.n == 0;
        const double js = s.v[0];
        out[r] = bad ? NAN : js < 0.0 ? 0.0 : js;
        if (saved) {
            const double *c = rc + RC * r;
            saved[5 * r] = c[0] + c[1];
            saved[5 * r + 1] = c[2] + c[3];
            saved[5 * r + 2] = out[r];
            saved[5 * r + 3] = s.v[1];
            saved[5 * r + 4] = s.v[2];
        }
    }
};

/* ---- log-probs as given: per-element terms, one pass ---- */

template <class E> struct LogprobsOp {
    typedef typename work<E>::type C;
    typedef dstate<1> S;
    int op;
    kk_cu_rows p, q;        /* q unused for the entropy */
    double beta;
    double *out;

    template <int TPR>
    __device__ S piece(int64_t r, int64_t lo, int64_t hi, int lane) const
    {
        const E *pr = row_ptr<E>(p, r);
        const E *qr = op == KK_ENTROPY ? pr : row_ptr<E>(q, r);
        double acc = 0;
        if (op == KK_JS) {
            const double lb = log(beta), lnb = log1p(-beta);
            each2<TPR>(pr, qr, lo, hi, lane, [&](int64_t, C lp, C lq) {
                acc += js_elem((double)lp, (double)lq, beta, lb, lnb);
            });
            return S{ { acc } };
        }
        C sum = 0;
        const int kl = op == KK_KL;
        each2<TPR>(pr, qr, lo, hi, lane, [&](int64_t, C lp, C lq) {
            const C w = ex(lp);
            C term;
            if (kl) {   /* Bregman form p log(p/q) - p + q = p phi(lp - lq) >= 0 */
                term = wphi(w, ex(lq), lp - lq);
                term = lq == -INFINITY && lp == lp ? (C)INFINITY : term;   /* NaN stays */
                term = lp == -INFINITY ? ex(lq) : term;
            } else {    /* -p log q (entropy: q = p); NaN q stays NaN; P > 0 = Q
                         * is +inf even where p underflows to 0 */
                term = lq == -INFINITY && lp == lp ? (C)INFINITY : -(w * lq);
                term = lp == -INFINITY ? (lq == lq ? (C)0 : lq) : term;
            }
            sum += term;
        });
        return S{ { (double)sum } };
    }
    __device__ S combine(S a, S b) const { return S{ { a.v[0] + b.v[0] } }; }
    __device__ void finish(int64_t r, S s) const
    {
        const double v = s.v[0];
        out[r] = (op == KK_KL || op == KK_JS) && v < 0.0 ? 0.0 : v;   /* NaN stays */
    }
};

/* ---- token log-probs: lse (+ entropy u) (+ smoothing sums), one pass ---- */

template <class E, bool ENT, bool SMOOTH> struct TokenOp {
    typedef typename work<E>::type C;
    typedef dstate<5> S;     /* m, s, u, v, w */
    kk_cu_rows x;
    const int64_t *targets;
    int64_t ignore;
    double it;
    const C *weight;
    double *lp, *ent, *lse, *smooth;

    template <int TPR>
    __device__ S piece(int64_t r, int64_t lo, int64_t hi, int lane) const
    {
        oent<C> a;
        osmooth<C> sm;
        const C itc = (C)it;
        if (targets[r] == ignore) hi = lo;      /* an ignored row is not read */
        each<TPR>(row_ptr<E>(x, r), lo, hi, lane, [&](int64_t i, C v) {
            const C y = v * itc;
            if (SMOOTH) sm.push(y, weight ? weight[i] : (C)1, a.l.m);
            if (ENT)
                a.push(y);
            else
                a.l.push(y);
        });
        return S{ { (double)a.l.m, (double)a.l.s, (double)a.u, (double)sm.v, (double)sm.w } };
    }
    __device__ S combine(S a, S b) const
    {
        kk_ent_t e = kk_ent_combine(kk_ent_t{ { a.v[0], a.v[1] }, a.v[2] },
                                    kk_ent_t{ { b.v[0], b.v[1] }, b.v[2] });
        kk_smooth_t s = kk_smooth_combine(kk_smooth_t{ a.v[0], a.v[3], a.v[4] },
                                          kk_smooth_t{ b.v[0], b.v[3], b.v[4] });
        return S{ { e.l.m, e.l.s, e.u, s.v, s.w } };
    }
    __device__ void finish(int64_t r, S s) const
    {
        const int64_t t = targets[r];
        if (t == ignore) {
            lp[r] = 0.0;
            if (ent) ent[r] = 0.0;
            if (lse) lse[r] = 0.0;
            if (smooth) smooth[r] = 0.0;
            return;
        }
        if (t < 0 || t >= x.n) {        /* never read out of bounds; the caller raises */
            lp[r] = NAN;
            if (ent) ent[r] = NAN;
            if (lse) lse[r] = NAN;
            if (smooth) smooth[r] = NAN;
            return;
        }
        const double m = s.v[0], l1 = log1p(s.v[1]);
        const C y = to_c(row_ptr<E>(x, r)[t]) * (C)it;
        lp[r] = ((double)y - m) - l1;
        if (ent) ent[r] = kk_ent_value(kk_ent_t{ { m, s.v[1] }, s.v[2] });
        if (lse) lse[r] = m + l1;
        if (smooth) smooth[r] = kk_smooth_value(kk_smooth_t{ m, s.v[3], s.v[4] }, 1.0, l1);
    }
};

}  // namespace kkcu

using namespace kkcu;

extern "C" int64_t kk_cu_workspace(int64_t n_rows, int64_t n)
{
    /* the pieces' states (at most 5 doubles) and rc */
    return n_rows * (pieces(n) * (int64_t)sizeof(dstate<5>) + RC * (int64_t)sizeof(double));
}

extern "C" int kk_cu_lse_rows(const kk_cu_rows *x, double *out, void *ws, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    return by_dtype(x->dtype, [&](auto e) {
        typedef KK_ELEMENT_TYPE(e) E;
        return run(LseOp<E>{ *x, 1.0, out, nullptr, 0 }, x->n_rows, x->n, ws, st);
    });
}

template <class E>
static int softmax_typed(const kk_cu_rows *x, int log_, const kk_cu_rows *y, void *ws,
                         cudaStream_t st)
{
    double *rc = rc_of(ws, x->n_rows, x->n);
    int err = run(LseOp<E>{ *x, 1.0, nullptr, rc, 0 }, x->n_rows, x->n, ws, st);
    if (err || x->n_rows == 0) return err;
    const unsigned grid = blocks_for(x->n_rows * pieces(x->n), tpr_for(x->n));
    if (y->dtype == KK_F64)
        softmax_write<E, double><<<grid, BLOCK, 0, st>>>(*x, *y, log_, rc, x->n_rows);
    else
        softmax_write<E, float><<<grid, BLOCK, 0, st>>>(*x, *y, log_, rc, x->n_rows);
    return launched();
}

extern "C" int kk_cu_softmax_rows(const kk_cu_rows *x, int log_, const kk_cu_rows *out,
                                  void *ws, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    return by_dtype(x->dtype, [&](auto e) {
        typedef KK_ELEMENT_TYPE(e) E;
        return softmax_typed<E>(x, log_, out, ws, st);
    });
}

template <class E>
static int div_typed(int op, int kind, const kk_cu_rows *p, const kk_cu_rows *q,
                     double it, double beta, double *out, double *saved, void *ws,
                     cudaStream_t st)
{
    const int64_t nr = p->n_rows, n = p->n;
    if (kind == KK_LOGPROBS)
        return run(LogprobsOp<E>{ op, *p, q ? *q : *p, beta, out }, nr, n, ws, st);
    if (op == KK_ENTROPY) return run(EntOp<E>{ *p, it, out, saved }, nr, n, ws, st);
    if (op == KK_XENT) return run(XentOp<E>{ *p, *q, it, out, saved }, nr, n, ws, st);
    double *rc = rc_of(ws, nr, n);
    int err = run(LseOp<E>{ *p, it, nullptr, rc, 0 }, nr, n, ws, st);
    if (!err) err = run(LseOp<E>{ *q, it, nullptr, rc, 2 }, nr, n, ws, st);
    if (err) return err;
    if (op == KK_KL) return run(KlOp<E>{ *p, *q, it, rc, out, saved }, nr, n, ws, st);
    return run(JsOp<E>{ *p, *q, it, beta, rc, out, saved }, nr, n, ws, st);
}

extern "C" int kk_cu_div_rows(int op, int kind, const kk_cu_rows *p, const kk_cu_rows *q,
                              double inv_temp, double beta, double *out, double *saved,
                              void *ws, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    if (op != KK_ENTROPY && (q == nullptr || q->dtype != p->dtype))
        return (int)cudaErrorInvalidValue;
    return by_dtype(p->dtype, [&](auto e) {
        typedef KK_ELEMENT_TYPE(e) E;
        return div_typed<E>(op, kind, p, q, inv_temp, beta, out, saved, ws, st);
    });
}

extern "C" int kk_cu_token_rows(const kk_cu_rows *x, const int64_t *targets, int64_t ignore_index,
                                double inv_temp, const void *weight, double *lp, double *ent,
                                double *lse, double *smooth, void *ws, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    return by_dtype(x->dtype, [&](auto e) {
        typedef KK_ELEMENT_TYPE(e) E;
        typedef typename work<E>::type C;
        const C *w = static_cast<const C *>(weight);
        const int64_t nr = x->n_rows, n = x->n;
        if (smooth && ent)
            return run(TokenOp<E, true, true>{ *x, targets, ignore_index, inv_temp, w, lp, ent,
                                               lse, smooth },
                       nr, n, ws, st);
        if (smooth)
            return run(TokenOp<E, false, true>{ *x, targets, ignore_index, inv_temp, w, lp, ent,
                                                lse, smooth },
                       nr, n, ws, st);
        if (ent)
            return run(TokenOp<E, true, false>{ *x, targets, ignore_index, inv_temp, w, lp, ent,
                                                lse, smooth },
                       nr, n, ws, st);
        return run(TokenOp<E, false, false>{ *x, targets, ignore_index, inv_temp, w, lp, ent, lse,
                                             smooth },
                   nr, n, ws, st);
    });
}
