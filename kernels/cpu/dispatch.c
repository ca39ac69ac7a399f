/* dispatch.c: chooses at run time which compiled code path (dense.c,
 * tokens.c and segment.c, built per instruction set) serves the public
 * entry points of klkit_cpu.h, and wraps the OpenMP thread controls.
 *
 * x86-64: AVX-512 (F+BW+DQ+VL) if the CPU and OS support it, else AVX2+FMA,
 * else the baseline (SSE2).  Other architectures: the one baseline build.
 * The path is chosen once, by kk_init() when _cpu is imported:
 * KLKIT_ISA=base|avx2|avx512 in the environment forces one; kk_set_isa()
 * switches later (the tests cover every path the machine can run).
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "klkit_cpu.h"
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define KK_HAVE_ATFORK 1
#endif

/* The entry points of one build, declared from the list (klkit_entries.h),
 * and a table of them: one pointer per entry point, named as it. */
#define DECLARE(isa, name, params, args) void KK_CAT(name, isa) params;
#define POINTER(isa, name, params, args) KK_CAT(name, isa),
#define FIELD(isa, name, params, args) void (*name) params;

typedef struct {
    const char *name;
    int (*supported)(void);
    KK_ENTRIES(FIELD, )
} kk_impl;

#define IMPL(isa, test) { #isa, test, KK_ENTRIES(POINTER, isa) }

static int always(void) { return 1; }

KK_ENTRIES(DECLARE, base)
#if defined(KLKIT_X86_PATHS)
KK_ENTRIES(DECLARE, avx2)
KK_ENTRIES(DECLARE, avx512)
static int has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
static int has_avx512(void)
{
    __builtin_cpu_init();
    return has_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
}
static const kk_impl impls[] = { IMPL(avx512, has_avx512), IMPL(avx2, has_avx2), IMPL(base, always) };
#else
static const kk_impl impls[] = { IMPL(base, always) };
#endif
enum { N_IMPLS = sizeof(impls) / sizeof(impls[0]) };

/* The table in use.  It is published with a release store (kk_init, once,
 * from _cpu's module initialisation; kk_set_isa) and every kernel call reads
 * it with one acquire load and never writes it: calls made with the GIL
 * released, on any thread, see a whole table, never a torn or half-set
 * value.  Before kk_init it is the baseline build, which every CPU runs. */
static _Atomic(const kk_impl *) current = &impls[N_IMPLS - 1];

static const kk_impl *impl(void)
{
    return atomic_load_explicit(&current, memory_order_acquire);
}

/* the best supported path, or the one named if it is supported */
int kk_set_isa(const char *name)
{
    for (int i = 0; i < N_IMPLS; i++) {
        if ((name == NULL || strcmp(name, impls[i].name) == 0) && impls[i].supported()) {
            atomic_store_explicit(&current, &impls[i], memory_order_release);
            return 1;
        }
    }
    return 0;
}

/* The thread count is process-wide, as users expect of set_num_threads
 * (torch's is): omp_set_num_threads sets only the calling thread's count,
 * so a Python thread (a thread pool, a Dask worker thread) would keep
 * OpenMP's default.  Each set_num_threads is a new generation of the
 * count; an entry point called from a thread that has not taken the latest
 * one gives it to that thread, unless the thread holds a count of its own
 * (threadpoolctl's limit, its own omp_set_num_threads): klkit replaces only
 * the count it gave the thread last, or OpenMP's default in a thread it
 * never gave one, and looks again at the next call while the thread's own
 * count holds. */
static atomic_int kk_threads;                 /* the count set (0: none yet) */
static atomic_uint kk_threads_gen;            /* how many times it was set */
static int kk_threads_default;                /* OpenMP's count before any was set */
static KK_THREAD_LOCAL unsigned kk_threads_seen;
static KK_THREAD_LOCAL int kk_threads_given;    /* the count klkit gave this thread (0: none) */

/* A child made by fork() runs every call on one thread: GNU OpenMP keeps
 * its thread pool's state across fork but not its threads, so the child's
 * first parallel region would wait for them forever (a plain C program with
 * `omp parallel` hangs the same way).  Set by the pthread_atfork handler. */
static atomic_int kk_forked;

#ifdef KK_HAVE_ATFORK
static void after_fork_in_child(void)
{
    atomic_store_explicit(&kk_forked, 1, memory_order_relaxed);
}
#endif

static void use_threads_set(void)
{
#ifdef _OPENMP
    if (atomic_load_explicit(&kk_forked, memory_order_relaxed)) {
        if (omp_get_max_threads() != 1) omp_set_num_threads(1);
        return;
    }
    unsigned gen = atomic_load_explicit(&kk_threads_gen, memory_order_acquire);
    if (gen == kk_threads_seen) return;
    int mine = omp_get_max_threads();
    if (mine != (kk_threads_given ? kk_threads_given : kk_threads_default))
        return;                               /* the thread's own count holds */
    int n = atomic_load_explicit(&kk_threads, memory_order_relaxed);
    omp_set_num_threads(n);
    kk_threads_given = n;
    kk_threads_seen = gen;
#endif
}

/* KLKIT_ISA=base|avx2|avx512 if set and supported, else the best path */
void kk_init(void)
{
    const char *env = getenv("KLKIT_ISA");
    if (!(env && *env && kk_set_isa(env))) kk_set_isa(NULL);
#ifdef _OPENMP
    kk_threads_default = omp_get_max_threads();
#endif
#ifdef KK_HAVE_ATFORK
    pthread_atfork(NULL, NULL, after_fork_in_child);
#endif
}

const char *kk_isa(void) { return impl()->name; }

const char *kk_isas_built(void)
{
#if defined(KLKIT_X86_PATHS)
    return "avx512 avx2 base";
#else
    return "base";
#endif
}

/* the plain-name entry points: calls through the table in use */
#define WRAPPER(isa, name, params, args) \
    void name params { use_threads_set(); impl()->name args; }
KK_ENTRIES(WRAPPER, )

void kk_set_num_threads(int n)
{
    atomic_store_explicit(&kk_threads, n, memory_order_relaxed);
    unsigned gen = atomic_fetch_add_explicit(&kk_threads_gen, 1, memory_order_release) + 1;
#ifdef _OPENMP
    omp_set_num_threads(n);                   /* the calling thread: always */
    kk_threads_given = n;
    kk_threads_seen = gen;
#else
    (void)gen;
#endif
}

int kk_get_num_threads(void)
{
#ifdef _OPENMP
    use_threads_set();
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int kk_have_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
