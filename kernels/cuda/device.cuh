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

/* blocks for `items` groups of TPR threads */
inline unsigned blocks_for(int64_t items, int tpr)
{
    int64_t per = BLOCK / tpr;
    return (unsigned)((items + per - 1) / per);
}

/* ---- the generic launches of a row Op (rows.cu, grad.cu) ----
 * An Op has
 *   piece<TPR>(row, lo, hi, lane): the thread's state over its elements of
 *                                  the row piece [lo, hi) (each / each2),
 *   combine(a, b):                 the header combine (a first),
 *   finish(row, state):            the row's outputs from its whole state;
 * piece_kernel runs one group of TPR threads per row piece (a row of one
 * piece is finished there), finish_kernel one thread per row of several
 * pieces, combining them in row order.  `ws` holds the pieces' states. */

template <int TPR, class Op>
__global__ void __launch_bounds__(BLOCK) piece_kernel(Op op, int64_t n_rows, int64_t n,
                                                      typename Op::S *part)
{
    const int64_t S = pieces(n);
    const int64_t item = (int64_t)blockIdx.x * (BLOCK / TPR) + threadIdx.x / TPR;
    const int lane = threadIdx.x % TPR;
    const bool live = item < n_rows * S;
    const int64_t row = live ? item / S : 0, lo = live ? (item % S) * PIECE : 0;
    const int64_t hi = live ? (lo + PIECE < n ? lo + PIECE : n) : 0;
    typename Op::S s = op.template piece<TPR>(row, lo, hi, lane);
    s = group_reduce<TPR>(op, s);
    if (!live || lane != 0) return;
    if (S == 1)
        op.finish(row, s);
    else
        part[item] = s;
}

template <class Op>
__global__ void __launch_bounds__(BLOCK) finish_kernel(Op op, int64_t n_rows, int64_t S,
                                                       const typename Op::S *part)
{
    const int64_t row = (int64_t)blockIdx.x * BLOCK + threadIdx.x;
    if (row >= n_rows) return;
    typename Op::S s = part[row * S];
    for (int64_t k = 1; k < S; k++) s = op.combine(s, part[row * S + k]);
    op.finish(row, s);
}

template <class Op>
static int run(const Op &op, int64_t n_rows, int64_t n, void *ws, cudaStream_t st)
{
    if (n_rows == 0) return 0;
    const int64_t S = pieces(n);
    typename Op::S *part = static_cast<typename Op::S *>(ws);
    if (tpr_for(n) == 32)
        piece_kernel<32><<<blocks_for(n_rows * S, 32), BLOCK, 0, st>>>(op, n_rows, n, part);
    else
        piece_kernel<BLOCK><<<blocks_for(n_rows * S, BLOCK), BLOCK, 0, st>>>(op, n_rows, n, part);
    if (S > 1)
        finish_kernel<<<(unsigned)((n_rows + BLOCK - 1) / BLOCK), BLOCK, 0, st>>>(op, n_rows, S,
                                                                                   part);
    return launched();
}

/* a float value stored as element type E (16-bit: rounded to nearest even) */
__device__ __forceinline__ void put(__half *o, float v) { *o = __float2half_rn(v); }
__device__ __forceinline__ void put(__nv_bfloat16 *o, float v) { *o = __float2bfloat16_rn(v); }
__device__ __forceinline__ void put(float *o, float v) { *o = v; }
__device__ __forceinline__ void put(double *o, double v) { *o = v; }

/* The workspace of the row functions: the pieces' states (at most 5
 * doubles each), then rc, per row RC doubles that a first pass leaves for
 * a second: (m, log1p s) of p then of q (rows.cu), the backward's row sums
 * (grad.cu). */
constexpr int RC = 4;

inline double *rc_of(void *ws, int64_t n_rows, int64_t n)
{
    return reinterpret_cast<double *>(static_cast<char *>(ws) +
                                      n_rows * pieces(n) * (int64_t)sizeof(dstate<5>));
}

}  // namespace kkcu

#endif
