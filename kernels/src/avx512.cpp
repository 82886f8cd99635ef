// kernels/src/avx512.cpp — the avx512 kernel table, compiled with -mavx512f -mavx512bw -mavx512dq
// -mavx512vl -mfma. Includes nothing but the avx512 header (ODR/SIGILL trap: see
// kernels/x86/avx512.hpp).
#include "kernels/x86/avx512.hpp"
#include "kernels/src/isa_tables.hpp"

namespace mercury::kernels::detail {

void fill_avx512_table(KernelTable& t) {
  avx512::fill_table(t);
}

}  // namespace mercury::kernels::detail
