// kernels/ref/ref.hpp — the scalar reference table: every KernelTable entry, plain loops.
//
// The oracle for the SIMD variants and the fallback on CPUs without them. Never include this
// from a TU built with more -m flags than the rest of the program (these are inline non-template
// functions; an ISA TU could hand the linker an AVX copy of them — the ODR/SIGILL trap).
#pragma once

#include "kernels/kernels.hpp"
#include "kernels/ref/adam.hpp"
#include "kernels/ref/conv.hpp"
#include "kernels/ref/gemm.hpp"
#include "kernels/ref/softmax_xent.hpp"
#include "kernels/ref/vector_ops.hpp"

namespace mercury::kernels::ref {

inline void fill_table(KernelTable& t) {
  t.isa = Isa::ref;
  t.sgemm = &sgemm;
  t.sgemm_rows = &sgemm_rows;
  t.add = &add;
  t.mul = &mul;
  t.axpy = &axpy;
  t.scale = &scale;
  t.dot = &dot;
  t.sum = &sum;
  t.relu_fwd = &relu_fwd;
  t.relu_bwd = &relu_bwd;
  t.relu6_fwd = &relu6_fwd;
  t.relu6_bwd = &relu6_bwd;
  t.sigmoid_fwd = &sigmoid_fwd;
  t.sigmoid_bwd = &sigmoid_bwd;
  t.tanh_fwd = &tanh_fwd;
  t.tanh_bwd = &tanh_bwd;
  t.sum_sq_dev = &sum_sq_dev;
  t.bn_fwd = &bn_fwd;
  t.bn_bwd = &bn_bwd;
  t.add_row_bias = &add_row_bias;
  t.add_channel_bias = &add_channel_bias;
  t.softmax_xent = &softmax_xent;
  t.im2col = &im2col;
  t.col2im = &col2im;
  t.dwconv2d = &dwconv2d;
  t.dwconv2d_bwd = &dwconv2d_bwd;
  t.max_pool_2x2 = &max_pool_2x2;
  t.wino_tile16 = &wino_tile16;
  t.lstm_cell = &lstm_cell;
  t.adam = &adam;
}

}  // namespace mercury::kernels::ref
