// mercury/nn/sequence.hpp — sequence layers as Modules: Embedding, (Bi)LSTM, AttentionPool.
//
// Contract
// - Parameter names and shapes follow PyTorch's state dicts, so checkpoints map one to one:
//     Embedding      name.weight [vocab, dim]                                  N(0, 1)
//     LSTM           name.weight_ih_l{k}[_reverse] [4H, in_k], name.weight_hh_l{k}[_reverse]
//                    [4H, H], name.bias_ih_l{k}[_reverse] [4H], name.bias_hh_l{k}[_reverse] [4H]
//                    U(-1/sqrt(H), 1/sqrt(H)); declared layer by layer, forward direction first
//                    (torch.nn.LSTM's order); in_0 = input, in_k = H·dirs
//     AttentionPool  name.proj.weight [A, D], name.proj.bias [A], name.v.weight [1, A], the
//                    torch module {proj = Linear(D, A); v = Linear(A, 1, bias=False)}, default
//                    Linear init (U(±1/sqrt(fan_in))).
// - Shapes: Embedding takes float token ids [B, T] → [B, T, dim]; LSTM takes [B, T, input]
//   (batch_first) → [B, T, H·dirs], both directions concatenated on the last dim (forward
//   first), zero initial state; AttentionPool takes [B, T, D] → [B, D]. A wrong input shape
//   throws std::invalid_argument naming the module and both shapes.
// - Embedding's padding_idx (-1 = none) embeds to zeros and never gets a gradient (ops_embedding).
#pragma once

#include <string>
#include <vector>

#include "mercury/autograd/ops_attention.hpp"
#include "mercury/autograd/ops_basic.hpp"
#include "mercury/autograd/ops_embedding.hpp"
#include "mercury/autograd/ops_lstm.hpp"
#include "mercury/nn/module.hpp"

namespace mercury::nn {

namespace detail {
inline void require_positive(const std::string& module, const char* what, int64_t v) {
  if (v < 1) {
    throw std::invalid_argument(module + ": " + what + " must be >= 1, got " + std::to_string(v));
  }
}
// x must be [B, T, features].
inline void require_sequence(const std::string& module, Var x, int64_t features) {
  const Shape& s = x->shape();
  if (s.rank != 3 || s[2] != features) {
    throw std::invalid_argument(module + ": expected input [B, T, " + std::to_string(features) +
                                "], got " + s.str());
  }
}
}  // namespace detail

class Embedding : public Module {
 public:
  Embedding(ParamStore& ps, const std::string& name, int64_t vocab, int64_t dim,
            int64_t padding_idx = -1)
      : vocab_(vocab), dim_(dim), pad_(padding_idx) {
    detail::require_positive(name, "vocab", vocab);
    detail::require_positive(name, "dim", dim);
    if (padding_idx < -1 || padding_idx >= vocab) {
      throw std::invalid_argument(name + ": padding_idx " + std::to_string(padding_idx) +
                                  " must be -1 (none) or in [0, " + std::to_string(vocab) + ")");
    }
    w_ = ps.declare(name + ".weight", Shape{vocab, dim}, Init::normal_01);
  }
  // ids: float token ids, [B, T] (any rank up to 4).
  Var forward(Context& ctx, Var ids) override {
    return ops::embedding(ctx.tape, ids, ctx.param(w_), pad_);
  }
  std::string describe() const override {
    return "Embedding(" + std::to_string(vocab_) + ", " + std::to_string(dim_) +
           (pad_ >= 0 ? ", padding_idx=" + std::to_string(pad_) : "") + ")";
  }

 private:
  int64_t vocab_, dim_, pad_;
  ParamId w_;
};

class LSTM : public Module {
 public:
  LSTM(ParamStore& ps, const std::string& name, int64_t input, int64_t hidden, int64_t layers = 1,
       bool bidirectional = false)
      : name_(name), input_(input), hidden_(hidden), layers_(layers), bidir_(bidirectional) {
    detail::require_positive(name, "input size", input);
    detail::require_positive(name, "hidden size", hidden);
    detail::require_positive(name, "layers", layers);
    const int64_t G = 4 * hidden;
    for (int64_t l = 0; l < layers; ++l) {
      const int64_t in = l == 0 ? input : hidden * directions();
      for (int d = 0; d < directions(); ++d) {
        const std::string sfx = "_l" + std::to_string(l) + (d ? "_reverse" : "");
        Cell c;
        c.w_ih = ps.declare(name + ".weight_ih" + sfx, Shape{G, in}, Init::uniform_fan_in, hidden);
        c.w_hh =
            ps.declare(name + ".weight_hh" + sfx, Shape{G, hidden}, Init::uniform_fan_in, hidden);
        c.b_ih = ps.declare(name + ".bias_ih" + sfx, Shape{G}, Init::uniform_fan_in, hidden);
        c.b_hh = ps.declare(name + ".bias_hh" + sfx, Shape{G}, Init::uniform_fan_in, hidden);
        cells_.push_back(c);
      }
    }
  }
  // x [B, T, input] → [B, T, hidden·directions()].
  Var forward(Context& ctx, Var x) override {
    detail::require_sequence(name_, x, input_);
    Tape& t = ctx.tape;
    for (int64_t l = 0; l < layers_; ++l) {
      Var out[2] = {nullptr, nullptr};
      for (int d = 0; d < directions(); ++d) {
        const Cell& c = cells_[static_cast<std::size_t>(l * directions() + d)];
        out[d] = ops::lstm(t, x, ctx.param(c.w_ih), ctx.param(c.w_hh), ctx.param(c.b_ih),
                           ctx.param(c.b_hh), d == 1);
      }
      x = bidir_ ? ops::concat(t, out[0], out[1], 2) : out[0];
    }
    return x;
  }
  std::string describe() const override {
    return "LSTM(" + std::to_string(input_) + "->" + std::to_string(hidden_) +
           (layers_ > 1 ? ", layers=" + std::to_string(layers_) : "") +
           (bidir_ ? ", bidirectional" : "") + ")";
  }
  int directions() const { return bidir_ ? 2 : 1; }
  int64_t output_size() const { return hidden_ * directions(); }

 private:
  struct Cell {
    ParamId w_ih, w_hh, b_ih, b_hh;
  };
  std::string name_;
  int64_t input_, hidden_, layers_;
  bool bidir_;
  std::vector<Cell> cells_;  // layer-major, forward direction first
};

class AttentionPool : public Module {
 public:
  AttentionPool(ParamStore& ps, const std::string& name, int64_t dim, int64_t attn_dim)
      : name_(name), dim_(dim), attn_(attn_dim) {
    detail::require_positive(name, "dim", dim);
    detail::require_positive(name, "attn_dim", attn_dim);
    w_ = ps.declare(name + ".proj.weight", Shape{attn_dim, dim}, Init::uniform_fan_in, dim);
    b_ = ps.declare(name + ".proj.bias", Shape{attn_dim}, Init::uniform_fan_in, dim);
    v_ = ps.declare(name + ".v.weight", Shape{1, attn_dim}, Init::uniform_fan_in, attn_dim);
  }
  // x [B, T, dim] → [B, dim].
  Var forward(Context& ctx, Var x) override {
    detail::require_sequence(name_, x, dim_);
    if (x->shape()[1] < 1) throw std::invalid_argument(name_ + ": empty sequence (T = 0)");
    return ops::attention_pool(ctx.tape, x, ctx.param(w_), ctx.param(b_), ctx.param(v_));
  }
  std::string describe() const override {
    return "AttentionPool(" + std::to_string(dim_) + ", attn=" + std::to_string(attn_) + ")";
  }

 private:
  std::string name_;
  int64_t dim_, attn_;
  ParamId w_, b_, v_;
};

}  // namespace mercury::nn
