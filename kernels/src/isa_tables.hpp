// kernels/src/isa_tables.hpp — the one function each ISA translation unit exports.
//
// Each is defined in a TU compiled with that ISA's -m flags (avx2.cpp, avx512.cpp, neon.cpp)
// and may only be called after CPUID confirmed the ISA. It overrides the entries the ISA
// implements in a table that already holds the ref kernels.
#pragma once

#include "kernels/kernels.hpp"

namespace mercury::kernels::detail {

void fill_avx2_table(KernelTable& t);
void fill_avx512_table(KernelTable& t);
void fill_neon_table(KernelTable& t);

}  // namespace mercury::kernels::detail
