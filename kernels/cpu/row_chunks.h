/* row_chunks.h: the lengths and helpers shared by the row loops of dense.c
 * and tokens.c and by their per-precision chunk primitives (row_chunks.inc).
 *
 * A row is processed in chunks of at most CHUNK elements (converted into an
 * L1-resident buffer when the input is a 16-bit float); sums run over
 * blocks of BLOCK elements (16-32 terms per SIMD lane), see row_chunks.inc.
 */
#ifndef KLKIT_ROW_CHUNKS_H
#define KLKIT_ROW_CHUNKS_H

enum { CHUNK = 2048, BLOCK = 256 };
/* below this many elements a call stays on the calling thread */
#define PAR_MIN 32768

#if defined(__GNUC__) || defined(__clang__)
#define KK_PREFETCH(p) __builtin_prefetch(p)
/* the chunk sums are inlined into each caller so that a constant it = 1
 * (no temperature) folds the scaling multiplies out of the loops */
#define KK_CHUNK_INLINE inline __attribute__((always_inline))
#else
#define KK_PREFETCH(p) ((void)(p))
#define KK_CHUNK_INLINE inline
#endif

/* (s, e) += x with s + e exact to the rounding of e: TwoSum (Knuth, TAOCP
 * 4.2.2), six additions that the build's -ffp-contract=off keeps exact */
static inline void kk_two_sum_into(double *s, double *e, double x)
{
    double n = *s + x, b = n - *s;
    *e += (*s - (n - b)) + (x - b);
    *s = n;
}

#endif
