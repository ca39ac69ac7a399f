/* segment.cu: per-sequence reductions (segment_sum / mean / max /
 * logsumexp, seq_kl), the elementwise KL estimators, the validation
 * kernels and the module's build facts (klkit_cuda.h).
 *
 * Packed sequences are cut into pieces of SEG_PIECE tokens (a sequence of
 * length L has max(1, ceil(L / SEG_PIECE)) of them, numbered in sequence
 * order by an exclusive scan of those counts), so that a launch of one warp
 * per piece does the same work per warp whatever the mix of lengths (one
 * 10^6-token sequence next to 10^5 one-token ones); a second launch
 * combines each sequence's pieces in order, one thread per sequence.
 * Terms and states are in double (segment.h), estimator terms in the
 * working precision first (segment.h's k3 forms), as the CPU kernels.
 * Padded rows [B, T] take a block per row.
 */
#include <math.h>
#include <type_traits>

#include <cub/device/device_scan.cuh>

#include "device.cuh"
#include "klkit/segment.h"
#include "online.cuh"

namespace kkcu {

constexpr int64_t SEG_PIECE = 4096;

__device__ __forceinline__ float clampc(float x, float c) { return kk_clampf(x, c); }
__device__ __forceinline__ double clampc(double x, double c) { return kk_clamp(x, c); }
__device__ __forceinline__ float k3c(float x, float y, float c) { return kk_k3f_xy(x, y, c); }
__device__ __forceinline__ double k3c(double x, double y, double c) { return kk_k3_xy(x, y, c); }

/* the estimator of d = x - y clamped to [-c, c] (segment.h) */
template <class C>
__device__ __forceinline__ C est_term(int est, C x, C y, C c)
{
    switch (est) {
    case KK_EST_K1: return clampc(x - y, c);
    case KK_EST_K2: { C d = clampc(x - y, c); return (d * d) * (C)0.5; }
    case KK_EST_K3: return k3c(x, y, c);
    default: return fabs(clampc(x - y, c));
    }
}

/* a running segment state over single terms */
struct oseg {
    int op;
    kk_seg_t s;
    __device__ explicit oseg(int op_) : op(op_), s(kk_seg_empty(op_)) {}
    __device__ __forceinline__ void push(double v)
    {
        if (op == KK_SEG_SUM || op == KK_SEG_MEAN) {
            s.a += v;
        } else if (op == KK_SEG_MAX) {
            s = kk_seg_combine(op, s, kk_seg_t{ v, 0.0 });
        } else {          /* the lse push of online.cuh, in double */
            olse<double> l;
            l.m = s.a;
            l.s = s.b;
            l.push(v);
            s.a = l.m;
            s.b = l.s;
        }
    }
};

struct SegCombine {
    typedef dstate<2> S;
    int op;
    __device__ S combine(S a, S b) const
    {
        kk_seg_t r = kk_seg_combine(op, kk_seg_t{ a.v[0], a.v[1] }, kk_seg_t{ b.v[0], b.v[1] });
        return S{ { r.a, r.b } };
    }
};

__device__ __forceinline__ int64_t seg_pieces(int64_t len)
{
    return len <= SEG_PIECE ? 1 : (len + SEG_PIECE - 1) / SEG_PIECE;
}

/* Whether sequence s lies inside the n_tokens values (x's and y's).  The
 * offsets are validated on the device after the kernels are queued (the
 * caller raises then); until then a bad span is not read: its pieces are
 * empty and its result NaN. */
__device__ __forceinline__ bool span_ok(const int64_t *start, const int64_t *y_start,
                                        const int64_t *len, int64_t s, int64_t n_tokens)
{
    const int64_t l = len[s];
    bool ok = l >= 0 && start[s] >= 0 && start[s] <= n_tokens - l;
    if (y_start) ok = ok && y_start[s] >= 0 && y_start[s] <= n_tokens - l;
    return ok;
}

__global__ void seg_count(const int64_t *start, const int64_t *y_start, const int64_t *len,
                          int64_t n_seg, int64_t n_tokens, int64_t *cnt)
{
    const int64_t s = (int64_t)blockIdx.x * BLOCK + threadIdx.x;
    if (s < n_seg) cnt[s] = span_ok(start, y_start, len, s, n_tokens) ? seg_pieces(len[s]) : 1;
}

/* one warp per piece k: its sequence s (the last with base[s] <= k) */
template <class E>
__global__ void __launch_bounds__(BLOCK) seg_piece(int op, int est, const E *x, int64_t xs,
                                                   const int64_t *x_start, const E *y,
                                                   int64_t ys, const int64_t *y_start,
                                                   const int64_t *len, const int64_t *base,
                                                   int64_t n_seg, int64_t n_tokens,
                                                   int64_t max_pieces, double clamp,
                                                   dstate<2> *part)
{
    typedef typename work<E>::type C;
    const int64_t k = (int64_t)blockIdx.x * (BLOCK / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (k >= max_pieces) return;                 /* whole warps only */
    int64_t lo_s = 0, hi_s = n_seg;              /* base is increasing */
    while (hi_s - lo_s > 1) {
        const int64_t mid = (lo_s + hi_s) / 2;
        if (base[mid] <= k) lo_s = mid; else hi_s = mid;
    }
    const int64_t s = lo_s, j = k - base[s];
    const bool ok = span_ok(x_start, y ? y_start : nullptr, len, s, n_tokens);
    if (j >= (ok ? seg_pieces(len[s]) : 1)) return;    /* past the last piece */
    const int64_t lo = j * SEG_PIECE;
    const int64_t hi = !ok ? lo : lo + SEG_PIECE < len[s] ? lo + SEG_PIECE : len[s];
    oseg a(op);
    const C c = (C)clamp;
    for (int64_t i = lo + lane; i < hi; i += 32) {
        const C v = to_c(x[(x_start[s] + i) * xs]);
        a.push(est == KK_EST_NONE ? (double)v
                                  : (double)est_term<C>(est, v, to_c(y[(y_start[s] + i) * ys]), c));
    }
    dstate<2> st{ { a.s.a, a.s.b } };
    st = group_reduce<32>(SegCombine{ op }, st);
    if (lane == 0) part[k] = st;
}

__global__ void seg_finish(int op, const int64_t *start, const int64_t *y_start,
                           const int64_t *len, const int64_t *base, int64_t n_seg,
                           int64_t n_tokens, int64_t max_pieces, double empty,
                           const dstate<2> *part, double *out)
{
    const int64_t s = (int64_t)blockIdx.x * BLOCK + threadIdx.x;
    if (s >= n_seg) return;
    /* a bad span, or pieces beyond the bound (overlapping spans of bad
     * offsets): NaN, nothing read */
    if (!span_ok(start, y_start, len, s, n_tokens) ||
        base[s] + seg_pieces(len[s]) > max_pieces) {
        out[s] = NAN;
        return;
    }
    const SegCombine cb{ op };
    dstate<2> st = part[base[s]];
    for (int64_t j = 1; j < seg_pieces(len[s]); j++) st = cb.combine(st, part[base[s] + j]);
    out[s] = kk_seg_value(op, kk_seg_t{ st.v[0], st.v[1] }, len[s], empty);
}

/* padded rows: a block per row */
template <class E>
__global__ void __launch_bounds__(BLOCK) seg_rows(int op, int est, kk_cu_rows x, kk_cu_rows y,
                                                  kk_cu_rows mask, int has_y, int has_mask,
                                                  double clamp, double empty, double *out,
                                                  int64_t *count)
{
    typedef typename work<E>::type C;
    const int64_t r = blockIdx.x, n = x.n;
    const E *xr = row_ptr<E>(x, r);
    const E *yr = has_y ? row_ptr<E>(y, r) : nullptr;
    const uint8_t *mr = has_mask ? static_cast<const uint8_t *>(mask.data) + row_offset(mask, r)
                                 : nullptr;
    oseg a(op);
    const C c = (C)clamp;
    int64_t kept = 0;
    for (int64_t i = threadIdx.x; i < n; i += BLOCK) {
        if (mr && !mr[i]) continue;
        const C v = to_c(xr[i]);
        a.push(has_y ? (double)est_term<C>(est, v, to_c(yr[i]), c) : (double)v);
        kept++;
    }
    dstate<2> st{ { a.s.a, a.s.b } };
    st = group_reduce<BLOCK>(SegCombine{ op }, st);
    /* the count: an exact integer sum, any order */
    __shared__ unsigned long long total;
    if (threadIdx.x == 0) total = 0;
    __syncthreads();
    atomicAdd(&total, (unsigned long long)kept);
    __syncthreads();
    if (threadIdx.x != 0) return;
    out[r] = kk_seg_value(op, kk_seg_t{ st.v[0], st.v[1] }, (int64_t)total, empty);
    if (count) count[r] = (int64_t)total;
}

template <class E, class O>
__global__ void __launch_bounds__(BLOCK) estimate(int est, kk_cu_rows x, kk_cu_rows y,
                                                  double clamp, O *out, int64_t total)
{
    typedef typename work<E>::type C;
    const int64_t n = x.n;
    const C c = (C)clamp;
    for (int64_t i = (int64_t)blockIdx.x * BLOCK + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * BLOCK) {
        const int64_t r = i / n, j = i - r * n;
        out[i] = (O)est_term<C>(est, to_c(row_ptr<E>(x, r)[j]), to_c(row_ptr<E>(y, r)[j]), c);
    }
}

__global__ void check_index(const int64_t *v, int64_t n, int64_t lo, int64_t hi, int64_t skip,
                            unsigned long long *first)
{
    for (int64_t i = (int64_t)blockIdx.x * BLOCK + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * BLOCK)
        if (v[i] != skip && (v[i] < lo || v[i] >= hi)) atomicMin(first, (unsigned long long)i);
}

__global__ void check_sorted(const int64_t *v, int64_t n, unsigned long long *first)
{
    for (int64_t i = (int64_t)blockIdx.x * BLOCK + threadIdx.x; i + 1 < n;
         i += (int64_t)gridDim.x * BLOCK)
        if (v[i + 1] < v[i]) atomicMin(first, (unsigned long long)i);
}

inline unsigned grid_for(int64_t n)
{
    int64_t b = (n + BLOCK - 1) / BLOCK;
    return (unsigned)(b < 1 ? 1 : b > 65535 ? 65535 : b);
}

}  // namespace kkcu

using namespace kkcu;

/* workspace: piece counts and bases, the pieces' states, CUB's scratch */
static size_t scan_bytes(int64_t n_seg)
{
    size_t b = 0;
    cub::DeviceScan::ExclusiveSum(nullptr, b, (const int64_t *)nullptr, (int64_t *)nullptr,
                                  (int)(n_seg > 0 ? n_seg : 1));
    return (b + 255) & ~(size_t)255;
}

static int64_t max_pieces(int64_t n_seg, int64_t n_tokens)
{
    return n_seg + (n_tokens + SEG_PIECE - 1) / SEG_PIECE;
}

extern "C" int64_t kk_cu_seg_workspace(int64_t n_seg, int64_t n_tokens)
{
    return 2 * n_seg * 8 + max_pieces(n_seg, n_tokens) * (int64_t)sizeof(dstate<2>) +
           (int64_t)scan_bytes(n_seg);
}

extern "C" int kk_cu_seg_packed(int op, int est, const void *x, int dtype, int64_t x_step,
                                const int64_t *x_start, const void *y, int64_t y_step,
                                const int64_t *y_start, const int64_t *len, int64_t n_seg,
                                int64_t n_tokens, double clamp, double empty, double *out,
                                void *ws, void *stream)
{
    if (n_seg == 0) return 0;
    if (n_seg > 0x7fffffff) return (int)cudaErrorInvalidValue;   /* CUB's item count is int */
    cudaStream_t st = (cudaStream_t)stream;
    int64_t *cnt = static_cast<int64_t *>(ws), *base = cnt + n_seg;
    const int64_t np = max_pieces(n_seg, n_tokens);
    dstate<2> *part = reinterpret_cast<dstate<2> *>(base + n_seg);
    void *scratch = part + np;
    size_t sb = scan_bytes(n_seg);
    seg_count<<<(unsigned)((n_seg + BLOCK - 1) / BLOCK), BLOCK, 0, st>>>(x_start, y ? y_start : nullptr,
                                                                        len, n_seg, n_tokens, cnt);
    int err = launched();
    if (err) return err;
    err = (int)cub::DeviceScan::ExclusiveSum(scratch, sb, cnt, base, (int)n_seg, st);
    if (err) return err;
    return by_dtype(dtype, [&](auto e) {
        typedef KK_ELEMENT_TYPE(e) E;
        seg_piece<E><<<blocks_for(np, 32), BLOCK, 0, st>>>(
            op, est, static_cast<const E *>(x), x_step, x_start, static_cast<const E *>(y),
            y_step, y_start, len, base, n_seg, n_tokens, np, clamp, part);
        int e2 = launched();
        if (e2) return e2;
        seg_finish<<<(unsigned)((n_seg + BLOCK - 1) / BLOCK), BLOCK, 0, st>>>(
            op, x_start, y ? y_start : nullptr, len, base, n_seg, n_tokens, np, empty, part, out);
        return launched();
    });
}

extern "C" int kk_cu_seg_padded(int op, int est, const kk_cu_rows *x, const kk_cu_rows *y,
                                const kk_cu_rows *mask, double clamp, double empty, double *out,
                                int64_t *count, void *stream)
{
    if (x->n_rows == 0) return 0;
    if (y && y->dtype != x->dtype) return (int)cudaErrorInvalidValue;
    cudaStream_t st = (cudaStream_t)stream;
    return by_dtype(x->dtype, [&](auto e) {
        typedef KK_ELEMENT_TYPE(e) E;
        seg_rows<E><<<(unsigned)x->n_rows, BLOCK, 0, st>>>(op, est, *x, y ? *y : *x,
                                                           mask ? *mask : *x, y != nullptr,
                                                           mask != nullptr, clamp, empty, out,
                                                           count);
        return launched();
    });
}

extern "C" int kk_cu_kl_estimate(int est, const kk_cu_rows *x, const kk_cu_rows *y, double clamp,
                                 void *out, void *stream)
{
    const int64_t total = x->n_rows * x->n;
    if (total == 0) return 0;
    if (y->dtype != x->dtype) return (int)cudaErrorInvalidValue;
    cudaStream_t st = (cudaStream_t)stream;
    return by_dtype(x->dtype, [&](auto e) {
        typedef KK_ELEMENT_TYPE(e) E;
        typedef typename work<E>::type O;
        estimate<E, O><<<grid_for(total), BLOCK, 0, st>>>(est, *x, *y, clamp,
                                                          static_cast<O *>(out), total);
        return launched();
    });
}

extern "C" int kk_cu_check_index(const int64_t *v, int64_t n, int64_t lo, int64_t hi,
                                 int64_t skip, int64_t *first, void *stream)
{
    if (n == 0) return 0;
    check_index<<<grid_for(n), BLOCK, 0, (cudaStream_t)stream>>>(
        v, n, lo, hi, skip, reinterpret_cast<unsigned long long *>(first));
    return launched();
}

extern "C" int kk_cu_check_sorted(const int64_t *v, int64_t n, int64_t *first, void *stream)
{
    if (n < 2) return 0;
    check_sorted<<<grid_for(n), BLOCK, 0, (cudaStream_t)stream>>>(
        v, n, reinterpret_cast<unsigned long long *>(first));
    return launched();
}

extern "C" int kk_cu_use_device(int device, int *previous)
{
    cudaError_t e = cudaGetDevice(previous);
    if (e == cudaSuccess && *previous != device) e = cudaSetDevice(device);
    return (int)e;
}

extern "C" void kk_cu_versions(int *driver, int *runtime, int *devices, int *err)
{
    *driver = 0;
    *runtime = 0;
    *devices = 0;
    cudaDriverGetVersion(driver);         /* 0 where no driver is installed */
    cudaRuntimeGetVersion(runtime);
    cudaError_t e = *driver ? cudaGetDeviceCount(devices) : cudaErrorNoDevice;
    if (e != cudaSuccess) *devices = 0;
    *err = (int)e;
    cudaGetLastError();                   /* not sticky: leave no error behind */
}

extern "C" const char *kk_cu_error_string(int err)
{
    return cudaGetErrorString((cudaError_t)err);
}

#ifndef KLKIT_CUDA_ARCHS
#define KLKIT_CUDA_ARCHS "unknown"
#endif

extern "C" const char *kk_cu_archs(void) { return KLKIT_CUDA_ARCHS; }
