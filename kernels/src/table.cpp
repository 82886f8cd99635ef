// kernels/src/table.cpp — run-time dispatch for the compiled build (mercury::kernels).
//
// Built without ISA flags. CMake compiles the ISA TUs the target architecture has and defines
// MERCURY_KERNELS_HAVE_<ISA> here; an ISA is used only if it was built and CPUID (x86) or
// HWCAP (32-bit ARM) reports it.
//
// MERCURY_WITH_OPENBLAS: the SIMD tables' sgemm hands problems with M·N·K ≥
// kOpenBlasMinVolume to cblas_sgemm (OpenBLAS pinned to one thread, as the caller owns the
// parallelism), smaller ones to our own kernel. ref never uses OpenBLAS (it is the oracle).
#include <cstdint>

#if defined(MERCURY_KERNELS_HAVE_NEON) && !defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include "kernels/kernels.hpp"
#include "kernels/src/isa_tables.hpp"

#if defined(MERCURY_KERNELS_WITH_OPENBLAS)
#include <cblas.h>
#endif

#define MERCURY_KERNELS_API
#include "kernels/dispatch.hpp"

namespace mercury::kernels::detail {
namespace {

#if defined(MERCURY_KERNELS_WITH_OPENBLAS)
constexpr int64_t kOpenBlasMinVolume = int64_t{256} * 256 * 256;

using SgemmFn = decltype(KernelTable::sgemm);
SgemmFn own_sgemm[kIsaCount] = {};

template <Isa kIsa>
void sgemm_large_via_openblas(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                              const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                              float* C, int64_t ldc) {
  if (M * N * K < kOpenBlasMinVolume) {
    own_sgemm[static_cast<int>(kIsa)](ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(M), static_cast<blasint>(N), static_cast<blasint>(K), alpha, A,
              static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C,
              static_cast<blasint>(ldc));
}

template <Isa kIsa>
void route_large_sgemm_to_openblas(KernelTable& t) {
  openblas_set_num_threads(1);
  own_sgemm[static_cast<int>(kIsa)] = t.sgemm;
  t.sgemm = &sgemm_large_via_openblas<kIsa>;
}
#endif

}  // namespace

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::ref:
      return true;
#if defined(MERCURY_KERNELS_HAVE_AVX2)
    case Isa::avx2:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
#if defined(MERCURY_KERNELS_HAVE_AVX512)
    case Isa::avx512:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("fma");
#endif
#if defined(MERCURY_KERNELS_HAVE_NEON)
    case Isa::neon:
#if defined(__aarch64__)
      return true;  // mandatory on AArch64
#else
    {  // optional on 32-bit ARM; the kernels also need VFPv4's fused multiply-add
      const unsigned long hwcap = getauxval(AT_HWCAP);
      return (hwcap & HWCAP_NEON) != 0 && (hwcap & HWCAP_VFPv4) != 0;
    }
#endif
#endif
    default:
      return false;
  }
}

void fill_isa_table(Isa isa, KernelTable& t) {
  switch (isa) {
#if defined(MERCURY_KERNELS_HAVE_AVX2)
    case Isa::avx2:
      fill_avx2_table(t);
      break;
#endif
#if defined(MERCURY_KERNELS_HAVE_AVX512)
    case Isa::avx512:
      fill_avx512_table(t);
      break;
#endif
#if defined(MERCURY_KERNELS_HAVE_NEON)
    case Isa::neon:
      fill_neon_table(t);
      break;
#endif
    default:
      break;
  }
#if defined(MERCURY_KERNELS_WITH_OPENBLAS)
  switch (isa) {
    case Isa::ref:
      break;
    case Isa::neon:
      route_large_sgemm_to_openblas<Isa::neon>(t);
      break;
    case Isa::avx2:
      route_large_sgemm_to_openblas<Isa::avx2>(t);
      break;
    case Isa::avx512:
      route_large_sgemm_to_openblas<Isa::avx512>(t);
      break;
  }
#endif
}

}  // namespace mercury::kernels::detail
