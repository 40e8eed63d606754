// Band-limited product on the kept spectrum: planar complex batched GEMMs, one per kept frequency and group.
//
//     C[f, g] (M x N) = op_a(A[f, g]) (M x R) @ op_b(B[f, g]) (R x N)        op = identity or conjugate
//
// Every operand is planar (real plane, imaginary plane `plane` elements further on) and addressed by five
// 64-bit element strides: plane, frequency f, group g, row, column. The three products of the layer are
// views of the spectra the torch path already has, so nothing is copied or transposed:
//
//     forward        Y[f, g] (B x O/g)   = X[f, g] (B x C/g) @ conj(W[f, g])^T (C/g x O/g)
//     input grad     GX[f, g] (B x C/g)  = GY[f, g] (B x O/g) @ W[f, g] (O/g x C/g)
//     weight grad    GW[f, g] (O/g x C/g) = conj(GY[f, g])^T (O/g x B) @ X[f, g] (B x C/g)
//
// The batch x in x out x freq intermediate never exists: each block owns a TILE_M x TILE_N tile of one
// C[f, g], walks the reduction dim in TILE_K steps through shared memory and accumulates in registers
// (float for float/half/bfloat16 inputs, double for double). Each of the THREADS threads computes
// MICRO_M x MICRO_N outputs at rows ty + i * THREADS_M and columns tx + j * THREADS_N.
//
// GAUSS selects Gauss's three-multiplication product: with a = ar + i ai, b = br + i bi,
// k1 = (ar + ai) br, k2 = ar (bi - br), k3 = ai (br + bi), a b = (k1 - k3) + i (k1 + k2). The sums are
// formed once per element when the tiles are loaded, so the inner loop does 3 FMAs per complex
// multiply-add instead of 4.
//
// No CUDA headers are included (half and bfloat16 are converted with PTX `cvt` and bit arithmetic), so
// NVRTC compiles this file without a CUDA toolkit include path. The tile constants are defined by the
// Python side (freqnets/kernels/sources.py), which also emulates this index arithmetic in NumPy; and
// tests/kernels/host_emulation.cpp compiles this very file for the CPU (one OS thread per CUDA thread, a barrier
// for __syncthreads) so the tests run the kernel's own code without a GPU.

#ifndef TILE_M
#error "TILE_M, TILE_N, TILE_K, MICRO_M, MICRO_N and SMEM_PAD are defined by freqnets/kernels/sources.py"
#endif

#define THREADS_M (TILE_M / MICRO_M)
#define THREADS_N (TILE_N / MICRO_N)
#define THREADS (THREADS_M * THREADS_N)

typedef long long index_t;

struct half_bits {
    unsigned short bits;
};
struct bf16_bits {
    unsigned short bits;
};

template <typename T>
struct Io;

template <>
struct Io<float> {
    typedef float acc;
    static __device__ __forceinline__ float load(const float* p) { return *p; }
    static __device__ __forceinline__ void store(float* p, float v) { *p = v; }
};

template <>
struct Io<double> {
    typedef double acc;
    static __device__ __forceinline__ double load(const double* p) { return *p; }
    static __device__ __forceinline__ void store(double* p, double v) { *p = v; }
};

#ifndef FREQNETS_HOST_EMULATION  // the host harness (tests/kernels/host_emulation.cpp) defines these two without PTX
__device__ __forceinline__ float half_to_float(unsigned short bits) {
    float v;
    asm("cvt.f32.f16 %0, %1;" : "=f"(v) : "h"(bits));
    return v;
}
__device__ __forceinline__ unsigned short float_to_half(float v) {
    unsigned short bits;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(v));
    return bits;
}
#endif

template <>
struct Io<half_bits> {
    typedef float acc;
    static __device__ __forceinline__ float load(const half_bits* p) { return half_to_float(p->bits); }
    static __device__ __forceinline__ void store(half_bits* p, float v) { p->bits = float_to_half(v); }
};

template <>
struct Io<bf16_bits> {
    typedef float acc;
    static __device__ __forceinline__ float load(const bf16_bits* p) {
        return __uint_as_float(((unsigned int)p->bits) << 16);
    }
    static __device__ __forceinline__ void store(bf16_bits* p, float v) {
        unsigned int u = __float_as_uint(v);
        if ((u & 0x7fffffffu) > 0x7f800000u) {
            p->bits = (unsigned short)((u >> 16) | 0x40u);  // NaN stays a (quiet) NaN
        } else {
            u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
            p->bits = (unsigned short)(u >> 16);
        }
    }
};

template <typename T, bool GAUSS>
__device__ __forceinline__ void planar_cgemm_body(
    const T* __restrict__ a, index_t a_plane, index_t a_sf, index_t a_sg, index_t a_sm, index_t a_sk,
    const T* __restrict__ b, index_t b_plane, index_t b_sf, index_t b_sg, index_t b_sk, index_t b_sn,
    T* __restrict__ c, index_t c_plane, index_t c_sf, index_t c_sg, index_t c_sm, index_t c_sn,
    index_t num_freqs, index_t groups, index_t m, index_t n, index_t r, int conj_a, int conj_b) {
    // (the same parameters as FREQNETS_PLANAR_CGEMM_PARAMS below)
    typedef typename Io<T>::acc acc_t;
    // Shared tiles, reduction index first. A: real, imaginary, real + imaginary. B: real, imaginary
    // (or imaginary - real for Gauss), real + imaginary.
    __shared__ acc_t a_re[TILE_K][TILE_M + SMEM_PAD];
    __shared__ acc_t a_im[TILE_K][TILE_M + SMEM_PAD];
    __shared__ acc_t a_sum[TILE_K][TILE_M + SMEM_PAD];
    __shared__ acc_t b_re[TILE_K][TILE_N + SMEM_PAD];
    __shared__ acc_t b_im[TILE_K][TILE_N + SMEM_PAD];
    __shared__ acc_t b_sum[TILE_K][TILE_N + SMEM_PAD];

    const int tid = threadIdx.x;
    const int tx = tid % THREADS_N;
    const int ty = tid / THREADS_N;
    const acc_t sign_a = conj_a ? acc_t(-1) : acc_t(1);
    const acc_t sign_b = conj_b ? acc_t(-1) : acc_t(1);
    const index_t tiles_m = (m + TILE_M - 1) / TILE_M;
    const index_t tiles_n = (n + TILE_N - 1) / TILE_N;
    const index_t total_blocks = num_freqs * groups * tiles_m * tiles_n;

    for (index_t block = blockIdx.x; block < total_blocks; block += gridDim.x) {
        // Column tiles fastest, so neighbouring blocks share the rows of A (same f, g) in L2.
        const index_t tile_n = block % tiles_n;
        index_t rest = block / tiles_n;
        const index_t tile_m = rest % tiles_m;
        rest /= tiles_m;
        const index_t g = rest % groups;
        const index_t f = rest / groups;
        const index_t row0 = tile_m * TILE_M;
        const index_t col0 = tile_n * TILE_N;
        const T* a_fg = a + f * a_sf + g * a_sg;
        const T* b_fg = b + f * b_sf + g * b_sg;

        acc_t acc1[MICRO_M][MICRO_N];  // real part, or k1 for Gauss
        acc_t acc2[MICRO_M][MICRO_N];  // imaginary part, or k2
        acc_t acc3[MICRO_M][MICRO_N];  // k3 (Gauss only)
#pragma unroll
        for (int i = 0; i < MICRO_M; ++i) {
#pragma unroll
            for (int j = 0; j < MICRO_N; ++j) {
                acc1[i][j] = acc_t(0);
                acc2[i][j] = acc_t(0);
                acc3[i][j] = acc_t(0);
            }
        }

        for (index_t k0 = 0; k0 < r; k0 += TILE_K) {
            // Load A's tile: consecutive threads walk the operand's contiguous dim when it has one.
#pragma unroll
            for (int e = tid; e < TILE_M * TILE_K; e += THREADS) {
                const int kk = (a_sk == 1) ? (e % TILE_K) : (e / TILE_M);
                const int mm = (a_sk == 1) ? (e / TILE_K) : (e % TILE_M);
                const index_t row = row0 + mm;
                const index_t red = k0 + kk;
                acc_t re = acc_t(0), im = acc_t(0);
                if (row < m && red < r) {
                    const T* p = a_fg + row * a_sm + red * a_sk;
                    re = Io<T>::load(p);
                    im = sign_a * Io<T>::load(p + a_plane);
                }
                a_re[kk][mm] = re;
                a_im[kk][mm] = im;
                a_sum[kk][mm] = re + im;
            }
#pragma unroll
            for (int e = tid; e < TILE_K * TILE_N; e += THREADS) {
                const int nn = (b_sn == 1) ? (e % TILE_N) : (e / TILE_K);
                const int kk = (b_sn == 1) ? (e / TILE_N) : (e % TILE_K);
                const index_t col = col0 + nn;
                const index_t red = k0 + kk;
                acc_t re = acc_t(0), im = acc_t(0);
                if (col < n && red < r) {
                    const T* p = b_fg + red * b_sk + col * b_sn;
                    re = Io<T>::load(p);
                    im = sign_b * Io<T>::load(p + b_plane);
                }
                b_re[kk][nn] = re;
                b_im[kk][nn] = GAUSS ? im - re : im;
                b_sum[kk][nn] = re + im;
            }
            __syncthreads();
#pragma unroll
            for (int kk = 0; kk < TILE_K; ++kk) {
                acc_t ar[MICRO_M], ai[MICRO_M], as[MICRO_M], br[MICRO_N], bi[MICRO_N], bs[MICRO_N];
#pragma unroll
                for (int i = 0; i < MICRO_M; ++i) {
                    ar[i] = a_re[kk][ty + i * THREADS_M];
                    ai[i] = a_im[kk][ty + i * THREADS_M];
                    as[i] = a_sum[kk][ty + i * THREADS_M];
                }
#pragma unroll
                for (int j = 0; j < MICRO_N; ++j) {
                    br[j] = b_re[kk][tx + j * THREADS_N];
                    bi[j] = b_im[kk][tx + j * THREADS_N];
                    bs[j] = b_sum[kk][tx + j * THREADS_N];
                }
#pragma unroll
                for (int i = 0; i < MICRO_M; ++i) {
#pragma unroll
                    for (int j = 0; j < MICRO_N; ++j) {
                        if (GAUSS) {
                            acc1[i][j] = fma(as[i], br[j], acc1[i][j]);  // k1 = (ar + ai) br
                            acc2[i][j] = fma(ar[i], bi[j], acc2[i][j]);  // k2 = ar (bi - br)
                            acc3[i][j] = fma(ai[i], bs[j], acc3[i][j]);  // k3 = ai (br + bi)
                        } else {
                            acc1[i][j] = fma(ar[i], br[j], acc1[i][j]);
                            acc1[i][j] = fma(-ai[i], bi[j], acc1[i][j]);
                            acc2[i][j] = fma(ar[i], bi[j], acc2[i][j]);
                            acc2[i][j] = fma(ai[i], br[j], acc2[i][j]);
                        }
                    }
                }
            }
            __syncthreads();
        }

        T* c_fg = c + f * c_sf + g * c_sg;
#pragma unroll
        for (int i = 0; i < MICRO_M; ++i) {
#pragma unroll
            for (int j = 0; j < MICRO_N; ++j) {
                const index_t row = row0 + ty + i * THREADS_M;
                const index_t col = col0 + tx + j * THREADS_N;
                if (row < m && col < n) {
                    T* p = c_fg + row * c_sm + col * c_sn;
                    Io<T>::store(p, GAUSS ? acc1[i][j] - acc3[i][j] : acc1[i][j]);
                    Io<T>::store(p + c_plane, GAUSS ? acc1[i][j] + acc2[i][j] : acc2[i][j]);
                }
            }
        }
    }
}

// One extern "C" entry point per (storage type, product): plain names for cupy.RawModule.get_function.
#define FREQNETS_PLANAR_CGEMM_PARAMS(T)                                                                    \
    const T* __restrict__ a, index_t a_plane, index_t a_sf, index_t a_sg, index_t a_sm, index_t a_sk,    \
        const T* __restrict__ b, index_t b_plane, index_t b_sf, index_t b_sg, index_t b_sk, index_t b_sn, \
        T* __restrict__ c, index_t c_plane, index_t c_sf, index_t c_sg, index_t c_sm, index_t c_sn,       \
        index_t num_freqs, index_t groups, index_t m, index_t n, index_t r, int conj_a, int conj_b
#define FREQNETS_PLANAR_CGEMM_ARGS                                                                       \
    a, a_plane, a_sf, a_sg, a_sm, a_sk, b, b_plane, b_sf, b_sg, b_sk, b_sn, c, c_plane, c_sf, c_sg, c_sm, \
        c_sn, num_freqs, groups, m, n, r, conj_a, conj_b
#define FREQNETS_PLANAR_CGEMM(NAME, T, GAUSS)                                                          \
    extern "C" __global__ void __launch_bounds__(THREADS, 2) NAME(FREQNETS_PLANAR_CGEMM_PARAMS(T)) { \
        planar_cgemm_body<T, GAUSS>(FREQNETS_PLANAR_CGEMM_ARGS);                                     \
    }

#define FREQNETS_EACH_KERNEL(X)                        \
    X(planar_cgemm_float32, float, false)              \
    X(planar_cgemm_float32_gauss, float, true)         \
    X(planar_cgemm_float64, double, false)             \
    X(planar_cgemm_float64_gauss, double, true)        \
    X(planar_cgemm_float16, half_bits, false)          \
    X(planar_cgemm_float16_gauss, half_bits, true)     \
    X(planar_cgemm_bfloat16, bf16_bits, false)         \
    X(planar_cgemm_bfloat16_gauss, bf16_bits, true)

FREQNETS_EACH_KERNEL(FREQNETS_PLANAR_CGEMM)
