// kernels/src/neon.cpp — the neon kernel table, compiled with no extra flags (AArch64 baseline).
// Includes nothing but the neon header (ODR/SIGILL trap: see kernels/arm/neon.hpp).
#include "kernels/arm/neon.hpp"
#include "kernels/src/isa_tables.hpp"

namespace mercury::kernels::detail {

void fill_neon_table(KernelTable& t) {
  neon::fill_table(t);
}

}  // namespace mercury::kernels::detail
