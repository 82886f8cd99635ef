// mercury/nn/layers.hpp — the standard layers as Modules over mercury::ops.
//
// Contract: each constructor takes the ParamStore and a name prefix ("conv1" → "conv1.weight",
// "conv1.bias", PyTorch's state-dict names, so checkpoints map onto torch modules one to one).
// Shapes follow PyTorch: Linear weight [out, in]; Conv2d weight [out, in/groups, kh, kw].
#pragma once

#include <string>

#include "mercury/autograd/ops_basic.hpp"
#include "mercury/autograd/ops_conv.hpp"
#include "mercury/autograd/ops_linear.hpp"
#include "mercury/autograd/ops_norm.hpp"
#include "mercury/autograd/ops_pool.hpp"
#include "mercury/nn/module.hpp"

namespace mercury::nn {

class Linear : public Module {
 public:
  Linear(ParamStore& ps, const std::string& name, int64_t in, int64_t out, bool bias = true)
      : in_(in), out_(out) {
    w_ = ps.declare(name + ".weight", Shape{out, in}, Init::uniform_fan_in, in);
    if (bias) b_ = ps.declare(name + ".bias", Shape{out}, Init::uniform_fan_in, in);
  }
  Var forward(Context& ctx, Var x) override {
    return ops::linear(ctx.tape, x, ctx.param(w_), b_ >= 0 ? ctx.param(b_) : nullptr);
  }
  std::string describe() const override {
    return "Linear(" + std::to_string(in_) + "->" + std::to_string(out_) + ")";
  }

 private:
  int64_t in_, out_;
  ParamId w_ = -1, b_ = -1;
};

// Square kernels, strides and paddings use `kernel`, `stride`, `padding`; the per-axis fields
// (appended last, so designated initialisers in declaration order keep working) override them
// when >= 0 — e.g. TextCNN's {.kernel_h = 3, .kernel_w = 300} or DS-CNN's stride (2, 1).
struct Conv2dOptions {
  int64_t kernel = 3, stride = 1, padding = 0, dilation = 1, groups = 1;
  bool bias = true;
  Init init = Init::uniform_fan_in;
  int64_t kernel_h = -1, kernel_w = -1, stride_h = -1, stride_w = -1, pad_h = -1, pad_w = -1;
};

class Conv2d : public Module {
 public:
  Conv2d(ParamStore& ps, const std::string& name, int64_t in, int64_t out, Conv2dOptions o)
      : in_(in),
        out_(out),
        kh_(o.kernel_h >= 0 ? o.kernel_h : o.kernel),
        kw_(o.kernel_w >= 0 ? o.kernel_w : o.kernel) {
    if (o.groups < 1 || in % o.groups || out % o.groups) {
      throw std::invalid_argument(name + ": channels " + std::to_string(in) + "->" +
                                  std::to_string(out) + " not divisible by groups " +
                                  std::to_string(o.groups));
    }
    if (kh_ < 1 || kw_ < 1) {
      throw std::invalid_argument(name + ": kernel must be >= 1, got " + std::to_string(kh_) + "x" +
                                  std::to_string(kw_));
    }
    p_ = ops::Conv2dParams{o.stride_h >= 0 ? o.stride_h : o.stride,
                           o.stride_w >= 0 ? o.stride_w : o.stride,
                           o.pad_h >= 0 ? o.pad_h : o.padding,
                           o.pad_w >= 0 ? o.pad_w : o.padding,
                           o.dilation,
                           o.dilation,
                           o.groups};
    const int64_t fan_in = in / o.groups * kh_ * kw_;
    const int64_t fan =
        o.init == Init::kaiming_normal_fan_out ? out / o.groups * kh_ * kw_ : fan_in;
    w_ = ps.declare(name + ".weight", Shape{out, in / o.groups, kh_, kw_}, o.init, fan);
    if (o.bias) b_ = ps.declare(name + ".bias", Shape{out}, Init::uniform_fan_in, fan_in);
  }
  Var forward(Context& ctx, Var x) override {
    return ops::conv2d(ctx.tape, x, ctx.param(w_), b_ >= 0 ? ctx.param(b_) : nullptr, p_);
  }
  std::string describe() const override {
    const auto pair = [](int64_t a, int64_t b) {
      return a == b ? std::to_string(a) : std::to_string(a) + "x" + std::to_string(b);
    };
    return "Conv2d(" + std::to_string(in_) + "->" + std::to_string(out_) + ", k" + pair(kh_, kw_) +
           ", s" + pair(p_.stride_h, p_.stride_w) + ", p" + pair(p_.pad_h, p_.pad_w) +
           (p_.groups > 1 ? ", g" + std::to_string(p_.groups) : "") + ")";
  }

 private:
  int64_t in_, out_, kh_, kw_;
  ops::Conv2dParams p_;
  ParamId w_ = -1, b_ = -1;
};

// BatchNorm over channel dim 1 of [N, C] or [N, C, H, W].
class BatchNorm : public Module {
 public:
  BatchNorm(ParamStore& ps, const std::string& name, int64_t channels, float momentum = 0.1f,
            float eps = 1e-5f)
      : c_(channels), momentum_(momentum), eps_(eps) {
    g_ = ps.declare(name + ".weight", Shape{channels}, Init::ones);
    b_ = ps.declare(name + ".bias", Shape{channels}, Init::zeros);
    rm_ = ps.declare_buffer(name + ".running_mean", Shape{channels}, Init::zeros);
    rv_ = ps.declare_buffer(name + ".running_var", Shape{channels}, Init::ones);
  }
  Var forward(Context& ctx, Var x) override {
    ops::BatchNormState st{ctx.buffer(rm_).data, ctx.buffer(rv_).data, momentum_, eps_};
    return ops::batch_norm(ctx.tape, x, ctx.param(g_), ctx.param(b_), st, ctx.training);
  }
  // relu / relu6 of forward(x), fused into the normalising pass (ops::batch_norm_act).
  Var forward_act(Context& ctx, Var x, ops::NormAct act) {
    ops::BatchNormState st{ctx.buffer(rm_).data, ctx.buffer(rv_).data, momentum_, eps_};
    return ops::batch_norm_act(ctx.tape, x, ctx.param(g_), ctx.param(b_), st, ctx.training, act);
  }
  std::string describe() const override { return "BatchNorm(" + std::to_string(c_) + ")"; }

 private:
  int64_t c_;
  float momentum_, eps_;
  ParamId g_, b_, rm_, rv_;
};

enum class Activation { relu, relu6, sigmoid, tanh, gelu };

inline Var activate(Tape& t, Var x, Activation a) {
  switch (a) {
    case Activation::relu:
      return ops::relu(t, x);
    case Activation::relu6:
      return ops::relu6(t, x);
    case Activation::sigmoid:
      return ops::sigmoid(t, x);
    case Activation::tanh:
      return ops::tanh(t, x);
    case Activation::gelu:
      return ops::gelu(t, x);
  }
  return x;
}

class Act : public Module {
 public:
  explicit Act(Activation a) : a_(a) {}
  Var forward(Context& ctx, Var x) override { return activate(ctx.tape, x, a_); }
  std::string describe() const override {
    static const char* names[] = {"ReLU", "ReLU6", "Sigmoid", "Tanh", "GELU"};
    return names[static_cast<int>(a_)];
  }

 private:
  Activation a_;
};

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(int64_t kernel, int64_t stride = -1, int64_t padding = 0)
      : p_{kernel,  kernel, stride < 0 ? kernel : stride, stride < 0 ? kernel : stride,
           padding, padding} {}
  Var forward(Context& ctx, Var x) override { return ops::max_pool2d(ctx.tape, x, p_); }
  std::string describe() const override { return "MaxPool2d(" + std::to_string(p_.kernel_h) + ")"; }

 private:
  ops::Pool2dParams p_;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(int64_t kernel, int64_t stride = -1, int64_t padding = 0)
      : p_{kernel,  kernel, stride < 0 ? kernel : stride, stride < 0 ? kernel : stride,
           padding, padding} {}
  Var forward(Context& ctx, Var x) override { return ops::avg_pool2d(ctx.tape, x, p_); }
  std::string describe() const override { return "AvgPool2d(" + std::to_string(p_.kernel_h) + ")"; }

 private:
  ops::Pool2dParams p_;
};

class GlobalAvgPool : public Module {
 public:
  Var forward(Context& ctx, Var x) override { return ops::global_avg_pool(ctx.tape, x); }
  std::string describe() const override { return "GlobalAvgPool"; }
};

class Flatten : public Module {
 public:
  Var forward(Context& ctx, Var x) override { return ops::flatten(ctx.tape, x); }
  std::string describe() const override { return "Flatten"; }
};

class Dropout : public Module {
 public:
  explicit Dropout(float p) : p_(p) {
    if (!(p >= 0.0f && p < 1.0f)) {
      throw std::invalid_argument("Dropout: p must be in [0, 1), got " + std::to_string(p));
    }
  }
  Var forward(Context& ctx, Var x) override {
    if (ctx.training && p_ > 0.0f && !ctx.rng) {
      throw std::logic_error("Dropout: training needs Context::rng");
    }
    if (!ctx.training || p_ == 0.0f) return x;
    return ops::dropout(ctx.tape, x, p_, true, *ctx.rng);
  }
  std::string describe() const override { return "Dropout(" + std::to_string(p_) + ")"; }

 private:
  float p_;
};

}  // namespace mercury::nn
