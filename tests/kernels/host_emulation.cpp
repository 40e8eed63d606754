// Runs the CUDA kernels of spectral_product.cu on the CPU, unchanged, to test them without a GPU.
//
// The kernel source is compiled as C++20 with small shims: every CUDA thread of a block is an OS
// thread, __syncthreads() is a std::barrier over the block's threads, and __shared__ arrays are
// function-local statics, which is exact because the blocks of a grid run one after the other here
// (the same threads run every block, with a barrier between blocks).
// threadIdx/blockIdx are thread_local; gridDim is what the launcher was given, so the kernel's
// grid-stride loop runs as on the GPU. Only the two PTX half conversions are replaced (by the
// IEEE-754 bit manipulations below). Built and called by freqnets/kernels/host_emulation.py.

#include <barrier>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

namespace freqnets_host {
struct Dim3 {
    unsigned int x = 0, y = 0, z = 0;
};
}  // namespace freqnets_host

thread_local freqnets_host::Dim3 threadIdx, blockIdx;
static freqnets_host::Dim3 gridDim, blockDim;
static std::barrier<>* block_barrier = nullptr;

static inline void __syncthreads() { block_barrier->arrive_and_wait(); }
static inline float __uint_as_float(unsigned int u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}
static inline unsigned int __float_as_uint(float f) {
    unsigned int u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}
using std::fma;

// IEEE half <-> float (round to nearest even), standing in for PTX cvt.f32.f16 / cvt.rn.f16.f32.
static inline float half_to_float(unsigned short h) {
    const unsigned int sign = (h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
    if (exponent == 0x1fu) return __uint_as_float(sign | 0x7f800000u | (mantissa << 13));
    if (exponent == 0) {
        const float value = std::ldexp(static_cast<float>(mantissa), -24);
        return sign ? -value : value;
    }
    return __uint_as_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}
static inline unsigned short float_to_half(float v) {
    const unsigned int u = __float_as_uint(v), sign = (u >> 16) & 0x8000u;
    const float a = std::fabs(v);
    if (std::isnan(v)) return static_cast<unsigned short>(sign | 0x7e00u);
    if (a >= 65520.0f) return static_cast<unsigned short>(sign | 0x7c00u);  // rounds to infinity
    if (a < 6.103515625e-05f) {  // subnormal half: multiples of 2^-24, nearbyint rounds to even
        return static_cast<unsigned short>(sign | static_cast<unsigned int>(std::nearbyint(a * 16777216.0f)));
    }
    unsigned int bits = __float_as_uint(a);
    bits += 0xfffu + ((bits >> 13) & 1u);  // round the 13 dropped bits to nearest, ties to even
    return static_cast<unsigned short>(sign | (((bits >> 23) - 112u) << 10) | ((bits >> 13) & 0x3ffu));
}

#define FREQNETS_HOST_EMULATION 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

#include "spectral_product.cu"

template <typename Body>
static void run_grid(unsigned int grid, unsigned int block, Body body) {
    // One OS thread per CUDA thread, reused for every block; a barrier between blocks keeps one block
    // (and so one use of the static "shared" arrays) in flight at a time.
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    std::barrier<> barrier(block);
    block_barrier = &barrier;
    std::vector<std::thread> threads;
    threads.reserve(block);
    for (unsigned int t = 0; t < block; ++t) {
        threads.emplace_back([&body, &barrier, grid, t] {
            threadIdx = {t, 0, 0};
            for (unsigned int b = 0; b < grid; ++b) {
                blockIdx = {b, 0, 0};
                body();
                barrier.arrive_and_wait();
            }
        });
    }
    for (auto& thread : threads) thread.join();
}

#define FREQNETS_HOST_LAUNCHER(NAME, T, GAUSS)                                                         \
    extern "C" void NAME##_host(unsigned int grid, unsigned int block, FREQNETS_PLANAR_CGEMM_PARAMS(T)) { \
        run_grid(grid, block, [&] { NAME(FREQNETS_PLANAR_CGEMM_ARGS); });                              \
    }

FREQNETS_EACH_KERNEL(FREQNETS_HOST_LAUNCHER)

extern "C" float freqnets_half_to_float(unsigned short h) { return half_to_float(h); }
extern "C" unsigned short freqnets_float_to_half(float v) { return float_to_half(v); }
