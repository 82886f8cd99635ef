// kernels/gemm_driver.hpp — the ISA-independent half of SGEMM: cache blocking, packing, edges.
//
// GemmDriver<Microkernel, MC, KC, NC>::sgemm implements KernelTable::sgemm (row-major,
// C = alpha·op(A)·op(B) + beta·C, beta == 0 ⇒ C not read) the BLIS way:
//   for jc (NC columns of C)      :
//     for pc (KC of the K dim)    : pack op(B)[pc:pc+KC, jc:jc+NC] into NR-wide panels
//       for ic (MC rows of C)     :
//         for jr, ir              : Microkernel::run on one MR×NR tile of C
// B is packed (absorbing tb, ldb and the zero padding of the last panel). A is read in place
// through (row, k) strides — either transpose is just a stride swap — because for most of this
// engine's shapes an A block stays in L2 anyway and packing it cost as much as the multiply when
// N is small. The exception is a large transposed A (M ≥ 256, N ≥ 8·NR: the dx GEMMs of
// ResNet-18/50's wide layers), packed into MR-row panels per cache block: bench_gemm, avx512,
// 1.2× on ResNet-18's 512-channel dx and 1.3–1.4× on ResNet-50's 1×1 dx. Micro-kernels compute full
// MR×NR tiles and store only the mr×nr corner that exists. beta is applied on the first K block, 1
// on the following ones. Packing is SIMD (V::transpose for tb); with tb = false and kc ≤ 32 full
// panels are read in place. GemmDotNT (below) is the alternative for A·Bᵀ with narrow N, chosen by
// each ISA header.
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
  using Vec = V;
  using Reg = typename V::Reg;
  static constexpr int64_t MR = kMR;
  static constexpr int64_t NR = kNV * V::width;

  // c[0:mr, 0:nr] = alpha · op(A)[0:mr, 0:kc] · b + beta · c  (beta == 0 ⇒ c not read).
  // op(A) is read in place: element (r, k) at a[r·rs_a + k·cs_a]; rows ≥ mr re-read row mr−1
  // (never out of bounds; their results are dropped). b: kc×NR panel, row k at b + k·rs_b, or at
  // b + boff[k] when boff != nullptr (an indirect B read in place: sgemm_rows).
  // rs_b: floats between consecutive k of b (NR for a packed panel; ldb when read in place).
  static void run(int64_t kc, const float* a, int64_t rs_a, int64_t cs_a, const float* b,
                  int64_t rs_b, float* c, int64_t ldc, int64_t mr, int64_t nr, float alpha,
                  float beta, const int64_t* boff = nullptr) {
    int64_t row_offset[MR];
#pragma GCC unroll 16
    for (int64_t r = 0; r < MR; ++r) row_offset[r] = (r < mr ? r : mr - 1) * rs_a;
    Reg acc[MR][kNV];
#pragma GCC unroll 16
    for (int64_t r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int64_t v = 0; v < kNV; ++v) acc[r][v] = V::zero();
    const auto multiply = [&](auto b_row) {
      for (int64_t k = 0; k < kc; ++k, a += cs_a) {
        const float* bk = b_row(k);
        Reg bv[kNV];
#pragma GCC unroll 4
        for (int64_t v = 0; v < kNV; ++v) bv[v] = V::load(bk + v * V::width);
#pragma GCC unroll 16
        for (int64_t r = 0; r < MR; ++r) {
          const Reg ar = V::set1(a[row_offset[r]]);
#pragma GCC unroll 4
          for (int64_t v = 0; v < kNV; ++v) acc[r][v] = V::fma(ar, bv[v], acc[r][v]);
        }
      }
    };
    if (boff)
      multiply([b, boff](int64_t k) { return b + boff[k]; });
    else
      multiply([b, rs_b](int64_t k) { return b + k * rs_b; });
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

// GemmDotNT<V, RB, CB>: C = alpha·A·Bᵀ + beta·C for ta = false, tb = true (both operands
// contiguous in k) as blocks of RB×CB dot products vectorised along K — no packing at all, and
// no padding lanes: every column of a narrow C (N = 25 for conv1 dW, N = 10 for the classifier)
// costs exactly K/W FMAs per row, where a register tile of NR columns would compute
// round_up(N, NR) of them and first pay a transpose of B. Edge blocks are exact (smaller R×C
// instantiations). Each dot ends in one horizontal reduction, so it pays off only when K spans
// several vectors (the ISA's sgemm decides).
template <class V, int64_t RB, int64_t CB>
struct GemmDotNT {
  using Reg = typename V::Reg;
  static constexpr int64_t W = V::width;

  // Row j of B (K contiguous floats) is at B + j·ldb, or at B + boff[j] when boff != nullptr.
  static void sgemm(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                    const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                    const int64_t* boff = nullptr) {
    for (int64_t i = 0; i < M; i += RB) {
      const int64_t mr = M - i < RB ? M - i : RB;
      for (int64_t j = 0; j < N; j += CB) {
        const int64_t nr = N - j < CB ? N - j : CB;
        const float* rows[CB];
        for (int64_t c = 0; c < CB; ++c) {
          const int64_t r = j + (c < nr ? c : nr - 1);
          rows[c] = boff ? B + boff[r] : B + r * ldb;
        }
        dispatch_rows(mr, nr, K, alpha, A + i * lda, lda, rows, beta, C + i * ldc + j, ldc);
      }
    }
  }

 private:
  template <int64_t R = RB>
  static void dispatch_rows(int64_t mr, int64_t nr, int64_t K, float alpha, const float* A,
                            int64_t lda, const float* const* B, float beta, float* C, int64_t ldc) {
    if constexpr (R > 1) {
      if (mr < R) return dispatch_rows<R - 1>(mr, nr, K, alpha, A, lda, B, beta, C, ldc);
    }
    dispatch_cols<R>(nr, K, alpha, A, lda, B, beta, C, ldc);
  }
  template <int64_t R, int64_t Cn = CB>
  static void dispatch_cols(int64_t nr, int64_t K, float alpha, const float* A, int64_t lda,
                            const float* const* B, float beta, float* C, int64_t ldc) {
    if constexpr (Cn > 1) {
      if (nr < Cn) return dispatch_cols<R, Cn - 1>(nr, K, alpha, A, lda, B, beta, C, ldc);
    }
    block<R, Cn>(K, alpha, A, lda, B, beta, C, ldc);
  }

  // C[0:R, 0:Cn] from rows A[0:R] and B[0:Cn] (each K contiguous floats; B[c] points at row c).
  template <int64_t R, int64_t Cn>
  static void block(int64_t K, float alpha, const float* A, int64_t lda, const float* const* B,
                    float beta, float* C, int64_t ldc) {
    Reg acc[R][Cn];
#pragma GCC unroll 8
    for (int64_t r = 0; r < R; ++r)
#pragma GCC unroll 8
      for (int64_t c = 0; c < Cn; ++c) acc[r][c] = V::zero();
    int64_t k = 0;
    for (; k + W <= K; k += W) {
      Reg b[Cn];
#pragma GCC unroll 8
      for (int64_t c = 0; c < Cn; ++c) b[c] = V::load(B[c] + k);
#pragma GCC unroll 8
      for (int64_t r = 0; r < R; ++r) {
        const Reg a = V::load(A + r * lda + k);
#pragma GCC unroll 8
        for (int64_t c = 0; c < Cn; ++c) acc[r][c] = V::fma(a, b[c], acc[r][c]);
      }
    }
    if (k < K) {
      const int64_t rest = K - k;
      Reg b[Cn];
#pragma GCC unroll 8
      for (int64_t c = 0; c < Cn; ++c) b[c] = V::load_partial(B[c] + k, rest, 0.0f);
#pragma GCC unroll 8
      for (int64_t r = 0; r < R; ++r) {
        const Reg a = V::load_partial(A + r * lda + k, rest, 0.0f);
#pragma GCC unroll 8
        for (int64_t c = 0; c < Cn; ++c) acc[r][c] = V::fma(a, b[c], acc[r][c]);
      }
    }
    if constexpr (RB * CB <= W &&
                  requires(const Reg(&x)[W], float* o) { V::reduce_add_lanes(x, o); }) {
      // One shuffle tree reduces W accumulators at once (~3 ops per dot instead of ~8).
      Reg flat[W];
      float sums[W];
#pragma GCC unroll 16
      for (int64_t i = 0; i < W; ++i) flat[i] = i < R * Cn ? acc[i / Cn][i % Cn] : V::zero();
      V::reduce_add_lanes(flat, sums);
#pragma GCC unroll 8
      for (int64_t r = 0; r < R; ++r)
#pragma GCC unroll 8
        for (int64_t c = 0; c < Cn; ++c) {
          float& out = C[r * ldc + c];
          const float dot = alpha * sums[r * Cn + c];
          out = beta == 0.0f ? dot : dot + beta * out;
        }
    } else {
#pragma GCC unroll 8
      for (int64_t r = 0; r < R; ++r)
#pragma GCC unroll 8
        for (int64_t c = 0; c < Cn; ++c) {
          float& out = C[r * ldc + c];
          const float dot = alpha * V::reduce_add(acc[r][c]);
          out = beta == 0.0f ? dot : dot + beta * out;
        }
    }
  }
};

template <class Microkernel, int64_t MC, int64_t KC, int64_t NC>
struct GemmDriver {
  static constexpr int64_t MR = Microkernel::MR;
  static constexpr int64_t NR = Microkernel::NR;
  using V = typename Microkernel::Vec;
  using Reg = typename V::Reg;
  static constexpr int64_t W = V::width;
  static constexpr int64_t NV = NR / W;
  static constexpr int64_t kInPlaceMaxK = 32;
  // Indirect B (a stride-1 conv's padded input rows) is read in place at any K when M is at most
  // this: a packed panel would serve only a few row tiles. bench_conv (AVX-512, MR = 8) with the
  // limit at 2·MR / 8·MR / every M: 16-channel layers 1.10× faster from 2·MR, 32–64 channels
  // 3–13% faster from 8·MR, 128+ channels 3–9% slower when read in place.
  static constexpr int64_t kInPlaceIndirectMaxM = 8 * MR;
  // A transposed (stored K×M) is packed into MR-row panels when M and N are both large: each
  // k of a tile then reads MR floats lda apart, and at lda = 4,608 (ResNet-18's 512-channel dx
  // GEMM) consecutive k fall into the same two L1 sets.
  static constexpr int64_t kPackTransposedAMinM = 256;
  static constexpr int64_t kPackTransposedAMinN = 8 * NR;
  static_assert(MC % MR == 0 && NC % NR == 0, "cache blocks must hold whole register tiles");

  // boff != nullptr: stored row r of B is at B + boff[r] instead of B + r·ldb (the indirect
  // form of KernelTable::sgemm_rows; ldb is then unused).
  static void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                    int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                    const int64_t* boff = nullptr) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
      scale_c(M, N, beta, C, ldc);
      return;
    }
    float* packed_b = packing_buffer(smaller(K, KC) * round_up(smaller(N, NC), NR));
    // op(A)(i, k) = A[i·rs_a + k·cs_a]
    const int64_t rs_a = ta ? 1 : lda, cs_a = ta ? lda : 1;
    const bool pack_a = ta && M >= kPackTransposedAMinM && N >= kPackTransposedAMinN;
    float* packed_a =
        pack_a ? a_packing_buffer(round_up(smaller(M, MC), MR) * smaller(K, KC)) : nullptr;
    for (int64_t jc = 0; jc < N; jc += NC) {
      const int64_t nc = smaller(NC, N - jc);
      for (int64_t pc = 0; pc < K; pc += KC) {
        const int64_t kc = smaller(KC, K - pc);
        const float beta_block = pc == 0 ? beta : 1.0f;
        // Short K, B not transposed: full panels are read in place (kc rows of NR floats stay
        // in L1 across the M tiles), which removes the copy and its store traffic; only the
        // zero-padded last panel is packed. Capped at kc ≤ 32: at fc1 dW (K = 64, ldb = 4 KiB)
        // the 4 KiB-strided rows fight over a few L1 sets and avx2 lost 40%.
        const bool in_place = !tb && (kc <= kInPlaceMaxK || (boff && M <= kInPlaceIndirectMaxM));
        const int64_t full = in_place ? nc / NR * NR : 0;
        if (full < nc) pack_b(tb, BRows{B, ldb, boff}, pc, jc + full, kc, nc - full, packed_b);
        for (int64_t ic = 0; ic < M; ic += MC) {
          const int64_t mc = smaller(MC, M - ic);
          if (pack_a) pack_a_block(A + ic * rs_a + pc * cs_a, rs_a, cs_a, mc, kc, packed_a);
          for (int64_t jr = 0; jr < nc; jr += NR)
            for (int64_t ir = 0; ir < mc; ir += MR)
              Microkernel::run(kc, pack_a ? packed_a + ir * kc : A + (ic + ir) * rs_a + pc * cs_a,
                               pack_a ? 1 : rs_a, pack_a ? MR : cs_a,
                               jr >= full ? packed_b + (jr - full) * kc
                               : boff     ? B + jc + jr
                                          : B + pc * ldb + jc + jr,
                               jr < full ? ldb : NR, C + (ic + ir) * ldc + jc + jr, ldc,
                               smaller(MR, mc - ir), smaller(NR, nc - jr), alpha, beta_block,
                               jr < full && boff ? boff + pc : nullptr);
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

  // Where B's stored rows are: row r at base + r·ld, or at base + off[r] when off != nullptr.
  // (A nested type, so each ISA's instantiation has its own symbols.)
  struct BRows {
    const float* base;
    int64_t ld;
    const int64_t* off;
    const float* row(int64_t r) const { return off ? base + off[r] : base + r * ld; }
  };

  // op(B)[pc:pc+kc, jc:jc+nc] → NR-column panels, panel p at p·NR·kc, element (k, c) at k·NR + c.
  // Both layouts move whole vectors: tb (B stored N×K) loads W rows of W k-values, transposes
  // them in registers (V::transpose: 8×8 AVX2, 16×16 AVX-512, 4×4 NEON) and stores W k-rows;
  // a scalar transpose cost ~2 cycles/element, as much as the multiply at small M.
  static void pack_b(bool tb, BRows B, int64_t pc, int64_t jc, int64_t kc, int64_t nc, float* dst) {
    for (int64_t j0 = 0; j0 < nc; j0 += NR, dst += NR * kc) {
      const int64_t cols = smaller(NR, nc - j0);
      if (tb)
        pack_panel_transposed(B, jc + j0, pc, kc, cols, dst);
      else
        pack_panel(B, pc, jc + j0, kc, cols, dst);
    }
  }

  // B stored K×N: each k (row pc + k) gives `cols` contiguous floats from column j, zero-padded
  // to NR.
  static void pack_panel(BRows B, int64_t pc, int64_t j, int64_t kc, int64_t cols, float* dst) {
    if (cols == NR) {
      for (int64_t k = 0; k < kc; ++k, dst += NR) {
        const float* src = B.row(pc + k) + j;
#pragma GCC unroll 4
        for (int64_t v = 0; v < NV; ++v) V::store(dst + v * W, V::load(src + v * W));
      }
      return;
    }
    for (int64_t k = 0; k < kc; ++k, dst += NR) {
      const float* src = B.row(pc + k) + j;
#pragma GCC unroll 4
      for (int64_t v = 0; v < NV; ++v) {
        const int64_t n = cols - v * W;  // lanes of this vector that exist
        V::store(dst + v * W, n >= W  ? V::load(src + v * W)
                              : n > 0 ? V::load_partial(src + v * W, n, 0.0f)
                                      : V::zero());
      }
    }
  }

  // B stored N×K (stored row j + c = column j + c of op(B), contiguous in k, read from k = pc):
  // W×W blocks are transposed in registers; missing columns are zero vectors, a k tail uses
  // partial loads and stores only the k-rows that exist.
  static void pack_panel_transposed(BRows B, int64_t j, int64_t pc, int64_t kc, int64_t cols,
                                    float* dst) {
    const float* src[NR];
    for (int64_t c = 0; c < NR; ++c) src[c] = B.row(j + (c < cols ? c : cols - 1)) + pc;
    for (int64_t k0 = 0; k0 < kc; k0 += W) {
      const int64_t kw = smaller(W, kc - k0);
#pragma GCC unroll 4
      for (int64_t v = 0; v < NV; ++v) {
        Reg r[W];
        const float* const* s = src + v * W;
        const int64_t rows = cols - v * W;  // columns of op(B) in this block
        if (kw == W && rows >= W) {
#pragma GCC unroll 16
          for (int64_t i = 0; i < W; ++i) r[i] = V::load(s[i] + k0);
        } else {
#pragma GCC unroll 16
          for (int64_t i = 0; i < W; ++i)
            r[i] = i < rows ? V::load_partial(s[i] + k0, kw, 0.0f) : V::zero();
        }
        V::transpose(r);
        float* d = dst + k0 * NR + v * W;
        if (kw == W) {
#pragma GCC unroll 16
          for (int64_t i = 0; i < W; ++i) V::store(d + i * NR, r[i]);
        } else {
#pragma GCC unroll 16
          for (int64_t i = 0; i < W; ++i)
            if (i < kw) V::store(d + i * NR, r[i]);
        }
      }
    }
  }

  // op(A)[0:mc, 0:kc] (element (r, k) at a[r·rs_a + k·cs_a]) → MR-row panels, panel p at p·MR·kc,
  // element (r, k) at k·MR + r. Rows past mc in the last panel are not written: the
  // micro-kernel re-reads row mr − 1 for them.
  static void pack_a_block(const float* a, int64_t rs_a, int64_t cs_a, int64_t mc, int64_t kc,
                           float* dst) {
    for (int64_t i0 = 0; i0 < mc; i0 += MR, dst += MR * kc) {
      const int64_t rows = smaller(MR, mc - i0);
      const float* src = a + i0 * rs_a;
      if (rs_a == 1 && rows == MR) {
        for (int64_t k = 0; k < kc; ++k)
#pragma GCC unroll 16
          for (int64_t r = 0; r < MR; ++r) dst[k * MR + r] = src[k * cs_a + r];
      } else {
        for (int64_t k = 0; k < kc; ++k)
          for (int64_t r = 0; r < rows; ++r) dst[k * MR + r] = src[r * rs_a + k * cs_a];
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
  static float* a_packing_buffer(int64_t floats) {
    thread_local PackingBuffer buffer;
    return buffer.reserve(floats);
  }
};

}  // namespace mercury::kernels
