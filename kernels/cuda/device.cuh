/* device.cuh: what every CUDA kernel file shares: element loads, the
 * addressing of rows, the traversal of a row piece by a group of threads,
 * and the fixed-order reduction of double states across that group.
 *
 * A row piece of at most KK_CU_PIECE elements is read by TPR threads (a
 * warp for rows of at most WARP_ROW_MAX elements, a block of BLOCK threads
 * otherwise) in groups of V = 16 / sizeof(element) consecutive elements:
 * thread `lane` takes groups lane, lane + TPR, ... and each group's
 * elements in order.  Where the row's address is 16-byte aligned a group is
 * one 16-byte load; otherwise (a row of a view at an odd offset) the same
 * elements are loaded one by one, so the arithmetic, and so the bits, do
 * not depend on the alignment.
 */
#ifndef KLKIT_CUDA_DEVICE_CUH
#define KLKIT_CUDA_DEVICE_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <type_traits>

#include "klkit_cuda.h"

namespace kkcu {

constexpr int BLOCK = 256;                 /* threads per block, every kernel */
constexpr int64_t PIECE = 32768;           /* elements of a row per group of threads */
constexpr int64_t WARP_ROW_MAX = 2048;     /* rows up to this length: a warp each */

/* pieces of a row of n elements (a function of n alone) */
__host__ __device__ inline int64_t pieces(int64_t n) { return n <= PIECE ? 1 : (n + PIECE - 1) / PIECE; }

/* threads per piece for rows of n elements */
__host__ __device__ inline int tpr_for(int64_t n) { return n <= WARP_ROW_MAX ? 32 : BLOCK; }

/* ---- element types: E is what memory holds, C the working precision ---- */
__device__ __forceinline__ float to_c(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_c(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_c(float v) { return v; }
__device__ __forceinline__ double to_c(double v) { return v; }

template <class E> struct work { typedef float type; };
template <> struct work<double> { typedef double type; };

/* the element offset of row r of a batch (its index over the lead shape) */
__device__ __forceinline__ int64_t row_offset(const kk_cu_rows &a, int64_t r)
{
    if (a.lead_ndim == 1) return r * a.lead_step[0];
    int64_t off = 0;
    for (int d = a.lead_ndim - 1; d >= 0; d--) {
        off += (r % a.lead_shape[d]) * a.lead_step[d];
        r /= a.lead_shape[d];
    }
    return off;
}

template <class E>
__device__ __forceinline__ const E *row_ptr(const kk_cu_rows &a, int64_t r)
{
    return static_cast<const E *>(a.data) + row_offset(a, r);
}

__device__ __forceinline__ bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* f(i, v) for the elements i of [lo, hi) that thread `lane` of TPR owns, in
 * its fixed order, v converted to the working precision */
template <int TPR, class E, class F>
__device__ __forceinline__ void each(const E *row, int64_t lo, int64_t hi, int lane, F &&f)
{
    constexpr int V = 16 / sizeof(E);
    const bool al = aligned16(row);
    for (int64_t b = lo + (int64_t)lane * V; b < hi; b += (int64_t)TPR * V) {
        if (al && b + V <= hi) {
            uint4 raw = __ldg(reinterpret_cast<const uint4 *>(row + b));
            const E *e = reinterpret_cast<const E *>(&raw);
#pragma unroll
            for (int j = 0; j < V; j++) f(b + j, to_c(e[j]));
        } else {
            for (int j = 0; j < V && b + j < hi; j++) f(b + j, to_c(row[b + j]));
        }
    }
}

/* the same over two rows of one dtype: f(i, vp, vq) */
template <int TPR, class E, class F>
__device__ __forceinline__ void each2(const E *p, const E *q, int64_t lo, int64_t hi, int lane,
                                      F &&f)
{
    constexpr int V = 16 / sizeof(E);
    const bool al = aligned16(p) && aligned16(q);
    for (int64_t b = lo + (int64_t)lane * V; b < hi; b += (int64_t)TPR * V) {
        if (al && b + V <= hi) {
            uint4 rp = __ldg(reinterpret_cast<const uint4 *>(p + b));
            uint4 rq = __ldg(reinterpret_cast<const uint4 *>(q + b));
            const E *ep = reinterpret_cast<const E *>(&rp);
            const E *eq = reinterpret_cast<const E *>(&rq);
#pragma unroll
            for (int j = 0; j < V; j++) f(b + j, to_c(ep[j]), to_c(eq[j]));
        } else {
            for (int j = 0; j < V && b + j < hi; j++) f(b + j, to_c(p[b + j]), to_c(q[b + j]));
        }
    }
}

/* ---- states: K doubles, combined by S::combine(a, b) (a the earlier) ---- */
template <int K> struct dstate { double v[K]; };

template <class S>
__device__ __forceinline__ S shfl_xor(const S &s, int mask)
{
    S r;
#pragma unroll
    for (int k = 0; k < (int)(sizeof(s.v) / sizeof(double)); k++)
        r.v[k] = __shfl_xor_sync(0xffffffffu, s.v[k], mask);
    return r;
}

/* The combine of the states of the TPR threads of a group, in a fixed
 * tree: lanes 2j and 2j+1, then pairs of those, ... (the lower lane's state
 * first: element order within the piece is kept); warps then in warp order
 * through shared memory.  Returns the result in lane 0 of the group (TPR
 * 32: every lane).  TPR == BLOCK needs every thread of the block. */
template <int TPR, class Op, class S>
__device__ __forceinline__ S group_reduce(const Op &op, S s)
{
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int m = 1; m < 32; m <<= 1) {
        S o = shfl_xor(s, m);
        s = (lane & m) ? op.combine(o, s) : op.combine(s, o);
    }
    if (TPR == 32) return s;
    __shared__ S warp_states[BLOCK / 32];
    const int warp = threadIdx.x >> 5;
    if (lane == 0) warp_states[warp] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        s = warp_states[0];
        for (int w = 1; w < BLOCK / 32; w++) s = op.combine(s, warp_states[w]);
    }
    __syncthreads();
    return s;
}

/* blocks for `items` groups of TPR threads */
inline unsigned blocks_for(int64_t items, int tpr)
{
    int64_t per = BLOCK / tpr;
    return (unsigned)((items + per - 1) / per);
}

/* ---- dtype dispatch: f(a null const E *) for the element type E of the
 * dtype code; KK_ELEMENT_TYPE(e) names E inside f ---- */
#define KK_ELEMENT_TYPE(e) \
    typename std::remove_cv<typename std::remove_pointer<decltype(e)>::type>::type

template <class F>
inline int by_dtype(int dtype, F &&f)
{
    switch (dtype) {
    case KK_F16: return f((const __half *)nullptr);
    case KK_BF16: return f((const __nv_bfloat16 *)nullptr);
    case KK_F32: return f((const float *)nullptr);
    case KK_F64: return f((const double *)nullptr);
    default: return (int)cudaErrorInvalidValue;
    }
}

inline int launched() { return (int)cudaGetLastError(); }

}  // namespace kkcu

#endif
