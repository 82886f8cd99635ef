// kernels/dispatch.hpp — ISA names, the MERCURY_MAX_ISA caps and the per-ISA table registry:
// the one implementation of kernels.hpp's free functions, shared by both build flavours.
//
// Included by exactly one place per flavour, after defining MERCURY_KERNELS_API:
// - kernels/header_only.hpp (MERCURY_KERNELS_API = inline): ISAs chosen by compiler flags;
// - kernels/src/table.cpp (MERCURY_KERNELS_API empty): ISAs chosen by CPUID at run time.
// The includer defines detail::isa_supported and detail::fill_isa_table (declared below).
//
// Caps: the compile-time macro MERCURY_MAX_ISA (an Isa enumerator name, e.g.
// -DMERCURY_MAX_ISA=avx2) removes ISAs from the build's view entirely; the env var
// MERCURY_MAX_ISA only caps table() (see best_isa in kernels.hpp).
#pragma once

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/kernels.hpp"
#include "kernels/ref/ref.hpp"

#if !defined(MERCURY_KERNELS_API)
#error "kernels/dispatch.hpp is included by kernels/header_only.hpp or kernels/src/table.cpp only"
#endif

namespace mercury::kernels {
namespace detail {

// Whether this build and CPU can run `isa` (ref: always).
MERCURY_KERNELS_API bool isa_supported(Isa isa);
// Overrides the entries `isa` implements in `t`, which already holds the ref kernels.
MERCURY_KERNELS_API void fill_isa_table(Isa isa, KernelTable& t);

constexpr Isa kAllIsas[] = {Isa::ref, Isa::neon, Isa::avx2, Isa::avx512};
constexpr int kIsaCount = 4;
#if defined(MERCURY_MAX_ISA)
constexpr Isa kBuildMaxIsa = Isa::MERCURY_MAX_ISA;
#else
constexpr Isa kBuildMaxIsa = Isa::avx512;
#endif

struct TableRegistry {
  KernelTable tables[kIsaCount];
  bool supported[kIsaCount] = {};
};

MERCURY_KERNELS_API const TableRegistry& registry() {
  static const TableRegistry built = [] {
    TableRegistry r;
    for (int i = 0; i < kIsaCount; ++i) {
      const Isa isa = kAllIsas[i];  // kAllIsas[i] has the value i
      r.supported[i] = isa <= kBuildMaxIsa && isa_supported(isa);
      if (!r.supported[i]) continue;
      ref::fill_table(r.tables[i]);
      fill_isa_table(isa, r.tables[i]);
    }
    return r;
  }();
  return built;
}

}  // namespace detail

MERCURY_KERNELS_API const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::ref:
      return "ref";
    case Isa::neon:
      return "neon";
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
  }
  return "unknown";
}

MERCURY_KERNELS_API bool parse_isa(const char* s, Isa* out) {
  if (s == nullptr) return false;
  for (Isa isa : detail::kAllIsas) {
    if (std::strcmp(s, isa_name(isa)) == 0) {
      *out = isa;
      return true;
    }
  }
  return false;
}

MERCURY_KERNELS_API std::vector<Isa> available_isas() {
  std::vector<Isa> isas;
  for (Isa isa : detail::kAllIsas)
    if (detail::registry().supported[static_cast<int>(isa)]) isas.push_back(isa);
  return isas;
}

MERCURY_KERNELS_API const KernelTable& table_for(Isa isa) {
  const int i = static_cast<int>(isa);
  if (i < 0 || i >= detail::kIsaCount || !detail::registry().supported[i]) {
    std::string available;
    for (Isa a : available_isas())
      available += std::string(available.empty() ? "" : " ") + isa_name(a);
    throw std::runtime_error(std::string("mercury::kernels: ISA '") + isa_name(isa) +
                             "' is not available on this CPU/build (available: " + available + ")");
  }
  return detail::registry().tables[i];
}

MERCURY_KERNELS_API Isa best_isa(const char* max_isa) {
  Isa cap = Isa::avx512;
  if (max_isa != nullptr && *max_isa != '\0' && !parse_isa(max_isa, &cap)) {
    throw std::runtime_error(
        std::string(
            "MERCURY_MAX_ISA: expected one of ref, neon, avx2, avx512 (or unset); found '") +
        max_isa + "'");
  }
  Isa best = Isa::ref;
  for (Isa isa : available_isas())
    if (isa <= cap) best = isa;
  return best;
}

MERCURY_KERNELS_API const KernelTable& table() {
  static const KernelTable& chosen = table_for(best_isa(std::getenv("MERCURY_MAX_ISA")));
  return chosen;
}

}  // namespace mercury::kernels
