/* klkit_cpu.h: the C entry points that _cpu.pyx calls.
 *
 * The kernel entry points are listed once, with their documentation, in
 * klkit_entries.h; this header declares them under their plain names, and,
 * in the per-ISA builds of the family files (dense.c, tokens.c, segment.c,
 * states.c, grad.c; KK_ISA defined), under their ISA-suffixed names as
 * well.
 */
#ifndef KLKIT_CPU_H
#define KLKIT_CPU_H

#include <stdint.h>
#include "klkit/codes.h"   /* dtype, kind, op and estimator codes */
#include "rows.h"          /* kk_rows: arrays as batches of rows, in place */
#include "klkit/lse.h"     /* the reduction states of the state entries */
#include "klkit/divergence.h"
#include "klkit/segment.h"

/* What the KL row loop (dense_rows.inc) carries from chunk to chunk: the
 * row's sums so far (not finished: kk_kl_finish once the row is done) and
 * the loop's two flags, which choose later chunks' loops (a non-finite
 * input seen; blocks left before the lean loop is tried again).  Each
 * chunk's shift and precision depend on the row so far, so a row cut into
 * pieces gives the kernels' bits only through this carry (kk_div_carry),
 * not through a combine of states. */
typedef struct {
    kk_kl_t k;
    int special, lean_skip;
} kk_kl_carry_t;

#include "klkit_entries.h"

/* Thread-local variables in the initial-exec model: klkit is a module that
 * Python dlopens, and glibc would otherwise give each thread a block of
 * them from malloc on first use and free it after the thread exits (an
 * ordering that ThreadSanitizer cannot see in ld.so).  Initial-exec puts
 * them in the static TLS that glibc reserves for such modules: keep them
 * few and small (8 bytes today). */
#if defined(__GNUC__)
#define KK_THREAD_LOCAL _Thread_local __attribute__((tls_model("initial-exec")))
#else
#define KK_THREAD_LOCAL _Thread_local
#endif

/* dense.c, tokens.c, segment.c, states.c and grad.c are compiled once per
 * instruction set (KK_ISA = base, avx2, avx512; CMakeLists.txt) and every name they export
 * carries that suffix: KK_FN(kk_lse_rows) is kk_lse_rows_avx2 in the AVX2
 * build.  dispatch.c routes the plain names declared here to one of them. */
#define KK_CAT2(a, b) a##_##b
#define KK_CAT(a, b) KK_CAT2(a, b)
#define KK_FN(name) KK_CAT(name, KK_ISA)

/* the kernel entry points (klkit_entries.h) */
#define KK_DECLARE(isa, name, params, args) void name params;
KK_ENTRIES(KK_DECLARE, )
#undef KK_DECLARE

#ifdef KK_ISA
/* ... and their definitions in this instruction set's build */
#define KK_DECLARE_ISA(isa, name, params, args) void KK_CAT(name, isa) params;
KK_ENTRIES(KK_DECLARE_ISA, KK_ISA)
#undef KK_DECLARE_ISA
#endif

/* OpenMP control (no-ops returning 1 without OpenMP), the code path and
 * build facts (dispatch.c). */
void kk_set_num_threads(int n);
int kk_get_num_threads(void);
int kk_have_openmp(void);
void kk_init(void);                /* choose the code path: once, at import */
const char *kk_isa(void);          /* code path in use */
const char *kk_isas_built(void);   /* all code paths compiled in */
int kk_set_isa(const char *name);  /* force a path (NULL: best); 1 if now in use */

#endif
