// models/blocks.hpp — the composite blocks of the model zoo, as Modules built from nn/ layers.
//
// Contract
// - ConvBnAct: conv (no bias, Kaiming-normal fan-out) → BatchNorm → optional activation. The conv
//   and BN names are given separately so each model can keep its PyTorch state-dict names.
// - BasicBlock (ResNet-18/20 family, expansion 1) and Bottleneck (ResNet-50, expansion 4, the
//   stride on the 3×3 conv as torchvision's "v1.5"): y = act(F(x) + S(x)) where S is the identity
//   when shape is preserved and otherwise a 1×1 conv (stride s) + BN projection ("option B" of He
//   et al. 2016). Names follow torchvision: conv1/bn1, conv2/bn2[, conv3/bn3], downsample.0/.1.
// - InvertedResidual (MobileNetV2, Sandler et al. 2018): [1×1 expand (t·in) + BN + ReLU6 when
//   t != 1] → 3×3 depthwise (groups = channels, stride s) + BN + ReLU6 → 1×1 linear projection +
//   BN; the input is added back iff stride == 1 and in == out. Names follow torchvision
//   (name.conv.0.0 / .0.1 / .1.0 / .1.1 / .2 / .3 with expansion, .0.0 / .0.1 / .1 / .2 without).
// - DepthwiseSeparable (DS-CNN, MobileNet v1): 3×3 depthwise + BN + act, 1×1 pointwise + BN + act.
// - The activation is a constructor argument (ReLU / ReLU6 by default) so the finite-difference
//   checks can run a block with a smooth activation: ReLU kinks make central differences
//   meaningless (see gradcheck.hpp), its own backward rule is gradchecked in test_autograd.
// - All shapes are NCHW; a block keeps H, W when stride is 1 and gives ceil(H/s) otherwise.
// - new_model()/finish_model(): the scaffolding every zoo model shares (name, input contract,
//   network, slab finalisation from the seed); require_image()/require_tokens() check a sample
//   shape and throw std::invalid_argument naming the model and the shape.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "mercury/autograd/ops_basic.hpp"
#include "mercury/nn/layers.hpp"
#include "mercury/nn/model.hpp"

namespace mercury::models {

// Conv options for the zoo's convolutions: "same" padding k/2, no bias (a BN follows), Kaiming
// normal fan-out init (He et al. 2015, torchvision's ResNet/MobileNetV2 init).
inline nn::Conv2dOptions conv_options(int64_t kernel, int64_t stride = 1, int64_t groups = 1) {
  return nn::Conv2dOptions{.kernel = kernel,
                           .stride = stride,
                           .padding = kernel / 2,
                           .groups = groups,
                           .bias = false,
                           .init = nn::Init::kaiming_normal_fan_out};
}

class ConvBnAct : public nn::Module {
 public:
  ConvBnAct(nn::ParamStore& ps, const std::string& conv_name, const std::string& bn_name,
            int64_t in, int64_t out, const nn::Conv2dOptions& o, std::optional<nn::Activation> act)
      : conv_(ps, conv_name, in, out, o), bn_(ps, bn_name, out), act_(act) {}
  // Each inner result is released once consumed (tape.hpp), so the first step of a kind frees
  // it as early as the plan will.
  Var forward(nn::Context& ctx, Var x) override {
    Var c = conv_.forward(ctx, x);
    // Score and eval steps: BN and ReLU/ReLU6 in one pass. With gradients the two ops stay
    // apart, so c is released before the activation's output exists.
    if (!ctx.tape.grad_enabled() &&
        (act_ == nn::Activation::relu || act_ == nn::Activation::relu6)) {
      Var z = bn_.forward_act(
          ctx, c, act_ == nn::Activation::relu ? ops::NormAct::relu : ops::NormAct::relu6);
      ctx.tape.release(c);
      return z;
    }
    Var y = bn_.forward(ctx, c);
    ctx.tape.release(c);
    if (!act_) return y;
    Var z = nn::activate(ctx.tape, y, *act_);
    ctx.tape.release(y);
    return z;
  }
  std::string describe() const override {
    return conv_.describe() + "+" + bn_.describe() +
           (act_ ? "+" + nn::Act(*act_).describe() : std::string());
  }

 private:
  nn::Conv2d conv_;
  nn::BatchNorm bn_;
  std::optional<nn::Activation> act_;
};

namespace detail {
// The projection shortcut of a residual block, or null when the identity fits.
inline std::unique_ptr<ConvBnAct> projection(nn::ParamStore& ps, const std::string& name,
                                             int64_t in, int64_t out, int64_t stride) {
  if (stride == 1 && in == out) return nullptr;
  return std::make_unique<ConvBnAct>(ps, name + ".downsample.0", name + ".downsample.1", in, out,
                                     conv_options(1, stride), std::nullopt);
}
inline Var residual(nn::Context& ctx, Var body, Var x, ConvBnAct* shortcut,
                    std::optional<nn::Activation> act) {
  Var s = shortcut ? shortcut->forward(ctx, x) : x;
  Var y = ops::add(ctx.tape, body, s);
  ctx.tape.release(body);
  if (s != x) ctx.tape.release(s);
  if (!act) return y;
  Var z = nn::activate(ctx.tape, y, *act);
  ctx.tape.release(y);
  return z;
}
}  // namespace detail

// 3×3 → 3×3, in → planes channels.
class BasicBlock : public nn::Module {
 public:
  static constexpr int64_t kExpansion = 1;
  BasicBlock(nn::ParamStore& ps, const std::string& name, int64_t in, int64_t planes,
             int64_t stride, nn::Activation act = nn::Activation::relu)
      : c1_(ps, name + ".conv1", name + ".bn1", in, planes, conv_options(3, stride), act),
        c2_(ps, name + ".conv2", name + ".bn2", planes, planes, conv_options(3), std::nullopt),
        shortcut_(detail::projection(ps, name, in, planes, stride)),
        act_(act),
        desc_("BasicBlock(" + std::to_string(in) + "->" + std::to_string(planes) + ", s" +
              std::to_string(stride) + (shortcut_ ? ", proj" : "") + ")") {}
  Var forward(nn::Context& ctx, Var x) override {
    Var h = c1_.forward(ctx, x);
    Var body = c2_.forward(ctx, h);
    ctx.tape.release(h);
    return detail::residual(ctx, body, x, shortcut_.get(), act_);
  }
  std::string describe() const override { return desc_; }

 private:
  ConvBnAct c1_, c2_;
  std::unique_ptr<ConvBnAct> shortcut_;
  nn::Activation act_;
  std::string desc_;
};

// 1×1 (in → planes) → 3×3 stride s (planes → planes) → 1×1 (planes → 4·planes).
class Bottleneck : public nn::Module {
 public:
  static constexpr int64_t kExpansion = 4;
  Bottleneck(nn::ParamStore& ps, const std::string& name, int64_t in, int64_t planes,
             int64_t stride, nn::Activation act = nn::Activation::relu)
      : c1_(ps, name + ".conv1", name + ".bn1", in, planes, conv_options(1), act),
        c2_(ps, name + ".conv2", name + ".bn2", planes, planes, conv_options(3, stride), act),
        c3_(ps, name + ".conv3", name + ".bn3", planes, planes * kExpansion, conv_options(1),
            std::nullopt),
        shortcut_(detail::projection(ps, name, in, planes * kExpansion, stride)),
        act_(act),
        desc_("Bottleneck(" + std::to_string(in) + "->" + std::to_string(planes) + "->" +
              std::to_string(planes * kExpansion) + ", s" + std::to_string(stride) +
              (shortcut_ ? ", proj" : "") + ")") {}
  Var forward(nn::Context& ctx, Var x) override {
    Var h1 = c1_.forward(ctx, x);
    Var h2 = c2_.forward(ctx, h1);
    ctx.tape.release(h1);
    Var body = c3_.forward(ctx, h2);
    ctx.tape.release(h2);
    return detail::residual(ctx, body, x, shortcut_.get(), act_);
  }
  std::string describe() const override { return desc_; }

 private:
  ConvBnAct c1_, c2_, c3_;
  std::unique_ptr<ConvBnAct> shortcut_;
  nn::Activation act_;
  std::string desc_;
};

class InvertedResidual : public nn::Module {
 public:
  InvertedResidual(nn::ParamStore& ps, const std::string& name, int64_t in, int64_t out,
                   int64_t stride, int64_t expand_ratio, nn::Activation act = nn::Activation::relu6)
      : residual_(stride == 1 && in == out),
        desc_("InvertedResidual(" + std::to_string(in) + "->" + std::to_string(out) + ", t" +
              std::to_string(expand_ratio) + ", s" + std::to_string(stride) +
              (stride == 1 && in == out ? ", res" : "") + ")") {
    if (expand_ratio < 1 || stride < 1) {
      throw std::invalid_argument(name + ": expand_ratio and stride must be >= 1");
    }
    const int64_t hidden = in * expand_ratio;
    const std::string p = name + ".conv.";
    int k = 0;  // torchvision's index inside `conv`
    if (expand_ratio != 1) {
      expand_ =
          std::make_unique<ConvBnAct>(ps, p + "0.0", p + "0.1", in, hidden, conv_options(1), act);
      ++k;
    }
    const std::string dw = p + std::to_string(k);
    depthwise_ = std::make_unique<ConvBnAct>(ps, dw + ".0", dw + ".1", hidden, hidden,
                                             conv_options(3, stride, hidden), act);
    project_ = std::make_unique<ConvBnAct>(ps, p + std::to_string(k + 1), p + std::to_string(k + 2),
                                           hidden, out, conv_options(1), std::nullopt);
  }
  Var forward(nn::Context& ctx, Var x) override {
    Var h = expand_ ? expand_->forward(ctx, x) : x;
    Var d = depthwise_->forward(ctx, h);
    if (h != x) ctx.tape.release(h);
    Var y = project_->forward(ctx, d);
    ctx.tape.release(d);
    if (!residual_) return y;
    Var z = ops::add(ctx.tape, y, x);
    ctx.tape.release(y);
    return z;
  }
  std::string describe() const override { return desc_; }

 private:
  bool residual_;
  std::string desc_;
  std::unique_ptr<ConvBnAct> expand_, depthwise_, project_;
};

// Depthwise 3×3 (stride s) + BN + act, then pointwise 1×1 (in → out) + BN + act.
class DepthwiseSeparable : public nn::Module {
 public:
  DepthwiseSeparable(nn::ParamStore& ps, const std::string& name, int64_t in, int64_t out,
                     int64_t stride, nn::Activation act = nn::Activation::relu)
      : dw_(ps, name + ".dw", name + ".dw_bn", in, in, conv_options(3, stride, in), act),
        pw_(ps, name + ".pw", name + ".pw_bn", in, out, conv_options(1), act),
        desc_("DepthwiseSeparable(" + std::to_string(in) + "->" + std::to_string(out) + ", s" +
              std::to_string(stride) + ")") {}
  Var forward(nn::Context& ctx, Var x) override {
    Var h = dw_.forward(ctx, x);
    Var y = pw_.forward(ctx, h);
    ctx.tape.release(h);
    return y;
  }
  std::string describe() const override { return desc_; }

 private:
  ConvBnAct dw_, pw_;
  std::string desc_;
};

inline std::unique_ptr<nn::Model> new_model(std::string name, Shape sample, int64_t classes) {
  if (classes < 1) {
    throw std::invalid_argument(name + ": classes must be >= 1, got " + std::to_string(classes));
  }
  auto m = std::make_unique<nn::Model>();
  m->name = std::move(name);
  m->sample_shape = sample;
  m->num_classes = classes;
  return m;
}
inline std::unique_ptr<nn::Model> finish_model(std::unique_ptr<nn::Model> m, nn::ModulePtr net,
                                               uint64_t seed) {
  m->net = std::move(net);
  m->params.finalize(seed);
  return m;
}
// Image models take [C, H, W] with every dimension >= 1.
inline void require_image(const std::string& model, Shape sample, int64_t min_hw = 1) {
  if (sample.rank != 3 || sample[0] < 1 || sample[1] < min_hw || sample[2] < min_hw) {
    throw std::invalid_argument(model + ": expects [C, H, W] inputs with H, W >= " +
                                std::to_string(min_hw) + ", got " + sample.str());
  }
}

// Text models take [T] float token ids, T >= min_len.
inline void require_tokens(const std::string& model, Shape sample, int64_t min_len = 1) {
  if (sample.rank != 1 || sample[0] < min_len) {
    throw std::invalid_argument(model + ": expects [T] token-id inputs with T >= " +
                                std::to_string(min_len) + ", got " + sample.str());
  }
}

}  // namespace mercury::models
