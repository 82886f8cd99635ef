// kernels/gemm_driver.hpp — the ISA-independent half of SGEMM: cache blocking, packing, edges.
//
// GemmDriver<Microkernel, MC, KC, NC>::sgemm implements KernelTable::sgemm (row-major,
// C = alpha·op(A)·op(B) + beta·C, beta == 0 ⇒ C not read) the BLIS way:
//   for jc (NC columns of C)      :
//     for pc (KC of the K dim)    : pack op(B)[pc:pc+KC, jc:jc+NC] into NR-wide panels
//       for ic (MC rows of C)     :
//         for jr, ir              : Microkernel::run on one MR×NR tile of C
// Only B is packed (absorbing tb, ldb and the zero padding of the last panel). A is read in
// place through (row, k) strides — either transpose is just a stride swap — because at this
// engine's shapes (M ≤ 800, K ≤ 1024) an A block stays in L2 anyway and packing it cost as much
// as the multiply when N is small. Micro-kernels compute full MR×NR tiles and store only the
// mr×nr corner that exists. beta is applied on the first K block, 1 on the following ones.
//
// GemmMicrokernel<V, MR, NV> is a register-tiled MR × (NV·V::width) kernel written once over a
// SIMD vector type V (interface documented in kernels/simd_kernels.hpp); each ISA header names
// its instantiation XNNPACK-style (f32_gemm_6x16__avx2_fma, ...).
//
// ODR/SIGILL: everything here is a template whose arguments include the ISA's own types, so
// each ISA TU gets distinct symbols; this header uses no std:: inline functions for the same
// reason (a -mavx512f copy of std::min could be the one the linker keeps for everyone).
//
// Thread-safety: packing buffers are thread_local, grown on demand and reused (no allocation
// per call once warmed up), so concurrent calls from different threads are safe.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace mercury::kernels {

template <class V, int64_t kMR, int64_t kNV>
struct GemmMicrokernel {
  using Reg = typename V::Reg;
  static constexpr int64_t MR = kMR;
  static constexpr int64_t NR = kNV * V::width;

  // c[0:mr, 0:nr] = alpha · op(A)[0:mr, 0:kc] · b + beta · c  (beta == 0 ⇒ c not read).
  // op(A) is read in place: element (r, k) at a[r·rs_a + k·cs_a]; rows ≥ mr re-read row mr−1
  // (never out of bounds; their results are dropped). b: packed kc×NR panel (NR floats per k).
  static void run(int64_t kc, const float* a, int64_t rs_a, int64_t cs_a, const float* b, float* c,
                  int64_t ldc, int64_t mr, int64_t nr, float alpha, float beta) {
    int64_t row_offset[MR];
#pragma GCC unroll 16
    for (int64_t r = 0; r < MR; ++r) row_offset[r] = (r < mr ? r : mr - 1) * rs_a;
    Reg acc[MR][kNV];
#pragma GCC unroll 16
    for (int64_t r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int64_t v = 0; v < kNV; ++v) acc[r][v] = V::zero();
    for (int64_t k = 0; k < kc; ++k, a += cs_a, b += NR) {
      Reg bv[kNV];
#pragma GCC unroll 4
      for (int64_t v = 0; v < kNV; ++v) bv[v] = V::load(b + v * V::width);
#pragma GCC unroll 16
      for (int64_t r = 0; r < MR; ++r) {
        const Reg ar = V::set1(a[row_offset[r]]);
#pragma GCC unroll 4
        for (int64_t v = 0; v < kNV; ++v) acc[r][v] = V::fma(ar, bv[v], acc[r][v]);
      }
    }
    if (mr == MR && nr == NR) {
      const Reg alpha_v = V::set1(alpha), beta_v = V::set1(beta);
#pragma GCC unroll 16
      for (int64_t r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (int64_t v = 0; v < kNV; ++v) {
          float* cp = c + r * ldc + v * V::width;
          const Reg scaled = alpha == 1.0f ? acc[r][v] : V::mul(alpha_v, acc[r][v]);
          V::store(cp, beta == 0.0f ? scaled : V::fma(beta_v, V::load(cp), scaled));
        }
      return;
    }
    // Edge tile: spill through a buffer with constant indices (a run-time acc[r][v] would force
    // every accumulator of the fast path into memory), then merge the mr×nr corner.
    alignas(64) float tile[MR * NR];
#pragma GCC unroll 16
    for (int64_t r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int64_t v = 0; v < kNV; ++v) V::store(tile + r * NR + v * V::width, acc[r][v]);
    for (int64_t r = 0; r < mr; ++r)
      for (int64_t j = 0; j < nr; ++j) {
        float& out = c[r * ldc + j];
        out = alpha * tile[r * NR + j] + (beta == 0.0f ? 0.0f : beta * out);
      }
  }
};

template <class Microkernel, int64_t MC, int64_t KC, int64_t NC>
struct GemmDriver {
  static constexpr int64_t MR = Microkernel::MR;
  static constexpr int64_t NR = Microkernel::NR;
  static_assert(MC % MR == 0 && NC % NR == 0, "cache blocks must hold whole register tiles");

  static void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                    int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
      scale_c(M, N, beta, C, ldc);
      return;
    }
    float* packed_b = packing_buffer(smaller(K, KC) * round_up(smaller(N, NC), NR));
    // op(A)(i, k) = A[i·rs_a + k·cs_a]
    const int64_t rs_a = ta ? 1 : lda, cs_a = ta ? lda : 1;
    for (int64_t jc = 0; jc < N; jc += NC) {
      const int64_t nc = smaller(NC, N - jc);
      for (int64_t pc = 0; pc < K; pc += KC) {
        const int64_t kc = smaller(KC, K - pc);
        const float beta_block = pc == 0 ? beta : 1.0f;
        pack_b(tb, B, ldb, pc, jc, kc, nc, packed_b);
        for (int64_t ic = 0; ic < M; ic += MC) {
          const int64_t mc = smaller(MC, M - ic);
          for (int64_t jr = 0; jr < nc; jr += NR)
            for (int64_t ir = 0; ir < mc; ir += MR)
              Microkernel::run(kc, A + (ic + ir) * rs_a + pc * cs_a, rs_a, cs_a, packed_b + jr * kc,
                               C + (ic + ir) * ldc + jc + jr, ldc, smaller(MR, mc - ir),
                               smaller(NR, nc - jr), alpha, beta_block);
        }
      }
    }
  }

 private:
  static int64_t smaller(int64_t a, int64_t b) { return a < b ? a : b; }
  static int64_t round_up(int64_t x, int64_t multiple) {
    return (x + multiple - 1) / multiple * multiple;
  }

  static void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
  }

  // op(B)[pc:pc+kc, jc:jc+nc] → NR-column panels, panel p at p·NR·kc, element (k, c) at k·NR + c.
  static void pack_b(bool tb, const float* B, int64_t ldb, int64_t pc, int64_t jc, int64_t kc,
                     int64_t nc, float* dst) {
    for (int64_t j0 = 0; j0 < nc; j0 += NR, dst += NR * kc) {
      const int64_t cols = smaller(NR, nc - j0);
      if (tb) {  // B stored N×K: a transpose, done in 16-k strips (one cache line per row of B)
        const float* src = B + (jc + j0) * ldb + pc;
        for (int64_t k0 = 0; k0 < kc; k0 += 16) {
          const int64_t k_end = smaller(k0 + 16, kc);
          for (int64_t c = 0; c < cols; ++c)
            for (int64_t k = k0; k < k_end; ++k) dst[k * NR + c] = src[c * ldb + k];
          for (int64_t k = k0; k < k_end; ++k)
            for (int64_t c = cols; c < NR; ++c) dst[k * NR + c] = 0.0f;
        }
      } else {  // B stored K×N: each k gives `cols` contiguous floats
        const float* src = B + pc * ldb + jc + j0;
        for (int64_t k = 0; k < kc; ++k) {
          for (int64_t c = 0; c < cols; ++c) dst[k * NR + c] = src[k * ldb + c];
          for (int64_t c = cols; c < NR; ++c) dst[k * NR + c] = 0.0f;
        }
      }
    }
  }

  // A per-thread, 64-byte aligned float buffer that only grows. Kernels must not throw, so an
  // allocation failure (at most KC·NC floats, a few MiB) aborts with a message.
  struct PackingBuffer {
    float* data = nullptr;
    int64_t capacity = 0;
    ~PackingBuffer() { std::free(data); }
    float* reserve(int64_t floats) {
      if (floats <= capacity) return data;
      std::free(data);
      const int64_t bytes = round_up(floats * static_cast<int64_t>(sizeof(float)), 64);
      data = static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(bytes)));
      if (data == nullptr) {
        std::fprintf(stderr, "mercury::kernels sgemm: cannot allocate %lld packing bytes\n",
                     static_cast<long long>(bytes));
        std::abort();
      }
      capacity = floats;
      return data;
    }
  };
  static float* packing_buffer(int64_t floats) {
    thread_local PackingBuffer buffer;
    return buffer.reserve(floats);
  }
};

}  // namespace mercury::kernels
