// kernels/src/neon.cpp — the neon kernel table: no extra flags on AArch64 (its baseline), and
// -mfpu=neon-vfpv4 on 32-bit ARM (used there only when HWCAP reports NEON and VFPv4).
// Includes nothing but the neon header (ODR/SIGILL trap: see kernels/arm/neon.hpp).
#include "kernels/arm/neon.hpp"
#include "kernels/src/isa_tables.hpp"

namespace mercury::kernels::detail {

void fill_neon_table(KernelTable& t) {
  neon::fill_table(t);
}

}  // namespace mercury::kernels::detail
