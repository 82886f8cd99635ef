// kernels/src/avx2.cpp — the avx2 kernel table, compiled with -mavx2 -mfma.
// Includes nothing but the avx2 header (ODR/SIGILL trap: see kernels/x86/avx2.hpp).
#include "kernels/x86/avx2.hpp"
#include "kernels/src/isa_tables.hpp"

namespace mercury::kernels::detail {

void fill_avx2_table(KernelTable& t) {
  avx2::fill_table(t);
}

}  // namespace mercury::kernels::detail
