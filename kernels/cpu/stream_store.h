/* stream_store.h: non-temporal stores of outputs far larger than the
 * caches (softmax, gradients), computed chunk by chunk into an L1 buffer:
 * writing them with streaming stores saves the read-for-ownership of every
 * output line, a third of the traffic.  Plain stores where the ISA has no
 * AVX.  A loop that streamed calls stream_fence() before its threads meet
 * (the stores are weakly ordered). */
#ifndef KLKIT_STREAM_STORE_H
#define KLKIT_STREAM_STORE_H

#include <stdint.h>
#include <string.h>

/* outputs of at least this many bytes are streamed */
#define STREAM_MIN ((int64_t)16 << 20)

/* copy n values from an L1 buffer to dst */
#if defined(__AVX__)
#include <immintrin.h>
static inline void stream_store_f(float *dst, const float *src, int64_t n)
{
    int64_t i = 0;
    for (; i < n && ((uintptr_t)(dst + i) & 31); i++) dst[i] = src[i];
    for (; i + 8 <= n; i += 8) _mm256_stream_ps(dst + i, _mm256_loadu_ps(src + i));
    for (; i < n; i++) dst[i] = src[i];
}
static inline void stream_store_d(double *dst, const double *src, int64_t n)
{
    int64_t i = 0;
    for (; i < n && ((uintptr_t)(dst + i) & 31); i++) dst[i] = src[i];
    for (; i + 4 <= n; i += 4) _mm256_stream_pd(dst + i, _mm256_loadu_pd(src + i));
    for (; i < n; i++) dst[i] = src[i];
}
static inline void stream_fence(void) { _mm_sfence(); }
#else
static inline void stream_store_f(float *dst, const float *src, int64_t n) { memcpy(dst, src, n * sizeof *dst); }
static inline void stream_store_d(double *dst, const double *src, int64_t n) { memcpy(dst, src, n * sizeof *dst); }
static inline void stream_fence(void) {}
#endif

#endif
