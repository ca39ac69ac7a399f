/* klkit/config.h: the one place that says how the shared math headers compile.
 *
 * Every header under klkit/ holds scalar functions only (no loops over arrays,
 * no allocation) marked KLKIT_HD, so the same math is compiled for the CPU
 * loops in kernels/cpu and, under nvcc, for the CUDA kernels in kernels/cuda.
 *
 * KK_FMA(a, b, c) is a*b + c fused where the target has a fused multiply-add
 * (CUDA, x86 with -mfma, aarch64) and plain otherwise: calling fmaf() on a
 * target without FMA would be a libm call per element and stop vectorisation.
 * Nothing below relies on the fusion for correctness; it only tightens
 * rounding.
 *
 * It also holds the other primitives every header builds on: bit casts and
 * the exact rounding error of a difference (kk_diff_err).
 */
#ifndef KLKIT_CONFIG_H
#define KLKIT_CONFIG_H

#include <stdint.h>

#if defined(__CUDACC__)
#  define KLKIT_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__) || defined(__clang__)
#  define KLKIT_HD inline __attribute__((always_inline))
#else
#  define KLKIT_HD inline
#endif

#if defined(__CUDACC__) || defined(__FMA__) || defined(__aarch64__)
#  define KK_FMAF(a, b, c) __builtin_fmaf((a), (b), (c))
#  define KK_FMA(a, b, c) __builtin_fma((a), (b), (c))
#else
#  define KK_FMAF(a, b, c) ((a) * (b) + (c))
#  define KK_FMA(a, b, c) ((a) * (b) + (c))
#endif

/* Bit casts.  In C a union is the defined way and, unlike memcpy, leaves no
 * memory operation in the loop body for if-conversion to trip over (gcc 12
 * stops vectorising any loop with a select when memcpy casts are inlined into
 * it).  CUDA device code has intrinsics for it, which host code cannot call:
 * the choice is made inside each function with __CUDA_ARCH__ (defined only
 * in nvcc's device passes), so the host side of these __host__ __device__
 * functions takes the union too (gcc and clang define the union cast in
 * C++ as well). */
static KLKIT_HD float kk_f32_from_bits(uint32_t u)
{
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    union { uint32_t u; float f; } c = { u };
    return c.f;
#endif
}

static KLKIT_HD uint32_t kk_bits_f32(float f)
{
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    union { float f; uint32_t u; } c = { f };
    return c.u;
#endif
}

static KLKIT_HD double kk_f64_from_bits(uint64_t u)
{
#if defined(__CUDA_ARCH__)
    return __longlong_as_double((long long)u);
#else
    union { uint64_t u; double f; } c = { u };
    return c.f;
#endif
}

static KLKIT_HD uint64_t kk_bits_f64(double f)
{
#if defined(__CUDA_ARCH__)
    return (uint64_t)__double_as_longlong(f);
#else
    union { double f; uint64_t u; } c = { f };
    return c.u;
#endif
}

/* The rounding error of d = fl(x - y): d + kk_diff_err(x, y, d) == x - y
 * exactly (TwoSum, Knuth TAOCP 4.2.2; no FMA needed, and it survives -O3
 * without -ffast-math).  Inf or NaN operands give NaN. */
static KLKIT_HD float kk_diff_errf(float x, float y, float d)
{
    float bb = d - x;
    return (x - (d - bb)) + (-y - bb);
}

static KLKIT_HD double kk_diff_err(double x, double y, double d)
{
    double bb = d - x;
    return (x - (d - bb)) + (-y - bb);
}

#endif
