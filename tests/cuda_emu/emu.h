/* emu.h: runs klkit's CUDA kernels (kernels/cuda/*.cu) on the host, for
 * tests on machines without a GPU (tests/test_cuda_emulated.py).
 *
 * Each block of a launch runs as blockDim.x host threads at once (blocks
 * one after the other, on the same threads); __syncthreads is a barrier of the block's threads,
 * a warp shuffle exchanges through a per-warp slot between two barriers of
 * the warp's threads, __shared__ variables are static (one block runs at a
 * time).  A thread that returns leaves its barriers (as on sm_70 and
 * later).  Launches `k<<<grid, block, shmem, stream>>>(args)` are rewritten
 * by the test into kk_emu::launch(lambda, grid, block, ...)(args).  What this
 * checks: indexing, reduction trees and orders, special values, the
 * host-side launch logic.  It cannot check timing, memory coalescing or
 * the hardware's own arithmetic (expf and friends are the host's libm).
 */
#ifndef KK_CUDA_EMU_H
#define KK_CUDA_EMU_H

#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
struct uint4 {
    unsigned x, y, z, w;
} __attribute__((aligned(16)));

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace kk_emu {

struct block_sync {
    std::unique_ptr<std::barrier<>> block;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    std::vector<double> slots;          /* one double per thread */
};
inline thread_local block_sync *current = nullptr;
inline std::mutex atomics;

inline void syncthreads() { current->block->arrive_and_wait(); }

inline void syncwarp() { current->warps[threadIdx.x / 32]->arrive_and_wait(); }

template <class F>
struct launcher {
    F f;
    unsigned grid, block;
    /* one host thread per thread of a block, kept for the whole grid: the
     * blocks run one after the other, each with fresh barriers (a thread
     * that returned has left the last block's) */
    template <class... A>
    void operator()(A... args) const
    {
        if (grid == 0) return;
        block_sync s;
        std::barrier<> all(block);
        auto fresh = [&] {
            s.block = std::make_unique<std::barrier<>>(block);
            s.warps.clear();
            for (unsigned w = 0; w < (block + 31) / 32; w++)
                s.warps.push_back(std::make_unique<std::barrier<>>(
                    block - w * 32 < 32 ? block - w * 32 : 32));
            s.slots.assign(block, 0.0);
        };
        fresh();
        std::vector<std::thread> ts;
        for (unsigned t = 0; t < block; t++)
            ts.emplace_back([&, t] {
                threadIdx.x = t;
                blockDim.x = block;
                gridDim.x = grid;
                current = &s;
                for (unsigned b = 0; b < grid; b++) {
                    blockIdx.x = b;
                    f(args...);
                    s.warps[t / 32]->arrive_and_drop();
                    s.block->arrive_and_drop();
                    all.arrive_and_wait();          /* every thread is done with b */
                    if (t == 0) fresh();
                    all.arrive_and_wait();          /* b + 1's barriers are ready */
                }
            });
        for (auto &t : ts) t.join();
    }
};

template <class F>
launcher<F> launch(F f, unsigned grid, unsigned block, size_t = 0, void * = nullptr)
{
    return launcher<F>{ f, grid, block };
}

}  // namespace kk_emu

inline void __syncthreads() { kk_emu::syncthreads(); }

template <class T>
inline T __shfl_xor_sync(unsigned, T v, int mask)
{
    static_assert(sizeof(T) <= sizeof(double), "one slot per thread");
    auto &s = *kk_emu::current;
    double slot;
    std::memcpy(&slot, &v, sizeof(T));
    s.slots[threadIdx.x] = slot;
    kk_emu::syncwarp();
    slot = s.slots[threadIdx.x ^ mask];
    kk_emu::syncwarp();
    T r;
    std::memcpy(&r, &slot, sizeof(T));
    return r;
}

template <class T>
inline T __ldg(const T *p) { return *p; }

inline unsigned long long atomicMin(unsigned long long *a, unsigned long long v)
{
    std::lock_guard<std::mutex> g(kk_emu::atomics);
    unsigned long long old = *a;
    if (v < old) *a = v;
    return old;
}

inline unsigned long long atomicAdd(unsigned long long *a, unsigned long long v)
{
    std::lock_guard<std::mutex> g(kk_emu::atomics);
    unsigned long long old = *a;
    *a = old + v;
    return old;
}

#endif
