// kernels/header_only.hpp — inline definitions of kernels.hpp's functions for -I-only use
// (MERCURY_KERNELS_COMPILED not defined; included at the end of kernels.hpp).
//
// The ISAs are the ones the compiler flags enable for every TU of the program (__AVX2__ and
// __FMA__, __AVX512F__ family, __ARM_NEON on AArch64, or with VFPv4's FMA on 32-bit ARM:
// -mfpu=neon-vfpv4), plus ref; the best one not above the MERCURY_MAX_ISA caps is chosen. There
// is no CPUID check: building with -mavx512f asserts the target has it. For run-time dispatch
// link mercury::kernels instead.
#pragma once

#include "kernels/kernels.hpp"

#if defined(__AVX2__) && defined(__FMA__)
#include "kernels/x86/avx2.hpp"
#define MERCURY_KERNELS_INLINE_AVX2 1
#endif
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && \
    defined(__AVX512VL__) && defined(__FMA__)
#include "kernels/x86/avx512.hpp"
#define MERCURY_KERNELS_INLINE_AVX512 1
#endif
#if defined(__ARM_NEON) && (defined(__aarch64__) || defined(__ARM_FEATURE_FMA))
#include "kernels/arm/neon.hpp"
#define MERCURY_KERNELS_INLINE_NEON 1
#endif

#define MERCURY_KERNELS_API inline
#include "kernels/dispatch.hpp"

namespace mercury::kernels::detail {

inline bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::ref:
      return true;
#if defined(MERCURY_KERNELS_INLINE_AVX2)
    case Isa::avx2:
      return true;
#endif
#if defined(MERCURY_KERNELS_INLINE_AVX512)
    case Isa::avx512:
      return true;
#endif
#if defined(MERCURY_KERNELS_INLINE_NEON)
    case Isa::neon:
      return true;
#endif
    default:
      return false;
  }
}

inline void fill_isa_table(Isa isa, [[maybe_unused]] KernelTable& t) {
  switch (isa) {
#if defined(MERCURY_KERNELS_INLINE_AVX2)
    case Isa::avx2:
      avx2::fill_table(t);
      break;
#endif
#if defined(MERCURY_KERNELS_INLINE_AVX512)
    case Isa::avx512:
      avx512::fill_table(t);
      break;
#endif
#if defined(MERCURY_KERNELS_INLINE_NEON)
    case Isa::neon:
      neon::fill_table(t);
      break;
#endif
    default:
      break;
  }
}

}  // namespace mercury::kernels::detail

#undef MERCURY_KERNELS_API
