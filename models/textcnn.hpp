// models/textcnn.hpp — Kim (2014) CNN for sentence classification (the "CNN-rand/static" shape).
//
// Definition (input [T] float token ids, T >= the largest kernel; the paper's sequences are [100])
//   Embedding(vocab, E, padding_idx) → [B, T, E] → reshaped to [B, 1, T, E]
//   for each kernel size k in {3, 4, 5}: Conv2d(1 → filters, k × E) → [B, filters, T−k+1, 1]
//     → ReLU → max over time (global max pool) → [B, filters]
//   concat → [B, 3·filters] → Dropout(0.5) → Linear(3·filters → classes)
// Defaults: vocab 20,000, E = 300 (Kim's word2vec width), 100 filters per size, padding_idx 0.
// Parameters: vocab·E + Σ_k filters·(k·E + 1) + 3·filters·K + K
//   defaults, K = 4: 6,000,000 + 360,300 + 1,204 = 6,361,504.
// State-dict names: embedding.weight, convs.{0,1,2}.{weight,bias}, fc.{weight,bias} (the usual
// PyTorch port: nn.ModuleList of Conv2d(1, filters, (k, E))).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "mercury/autograd/ops_pool.hpp"
#include "mercury/nn/sequence.hpp"
#include "models/blocks.hpp"

namespace mercury::models {

struct TextCnnOptions {
  int64_t vocab = 20000;
  int64_t embed_dim = 300;
  int64_t filters = 100;
  std::vector<int64_t> kernel_sizes = {3, 4, 5};
  float dropout = 0.5f;
  int64_t padding_idx = 0;  // -1: no padding id
};

// The whole TextCNN: parallel branches do not fit a Sequential.
class TextCnn : public nn::Module {
 public:
  TextCnn(nn::ParamStore& ps, int64_t seq_len, int64_t classes, const TextCnnOptions& o)
      : embed_(ps, "embedding", o.vocab, o.embed_dim, o.padding_idx),
        dropout_(o.dropout),
        embed_dim_(o.embed_dim) {
    if (o.kernel_sizes.empty() || o.filters < 1) {
      throw std::invalid_argument("textcnn: needs at least one kernel size and filters >= 1");
    }
    for (std::size_t k = 0; k < o.kernel_sizes.size(); ++k) {
      const int64_t ks = o.kernel_sizes[k];
      if (ks < 1 || ks > seq_len) {
        throw std::invalid_argument("textcnn: kernel size " + std::to_string(ks) +
                                    " must be in [1, T = " + std::to_string(seq_len) + "]");
      }
      convs_.push_back(
          std::make_unique<nn::Conv2d>(ps, "convs." + std::to_string(k), 1, o.filters,
                                       nn::Conv2dOptions{.kernel_h = ks, .kernel_w = o.embed_dim}));
    }
    fc_ = std::make_unique<nn::Linear>(ps, "fc", o.filters * static_cast<int64_t>(convs_.size()),
                                       classes);
  }
  // ids [B, T] → logits [B, classes].
  Var forward(nn::Context& ctx, Var ids) override {
    Tape& t = ctx.tape;
    Var e = embed_.forward(ctx, ids);  // [B, T, E]
    e = ops::reshape(t, e, Shape{e->shape()[0], 1, e->shape()[1], embed_dim_});
    Var features = nullptr;
    for (auto& conv : convs_) {
      Var f = ops::global_max_pool(t, ops::relu(t, conv->forward(ctx, e)));  // [B, filters]
      features = features ? ops::concat(t, features, f, 1) : f;
    }
    return fc_->forward(ctx, dropout_.forward(ctx, features));
  }
  std::string describe() const override {
    std::string s = "TextCnn(" + embed_.describe();
    for (const auto& c : convs_) s += ", " + c->describe();
    return s + ", max-over-time, " + dropout_.describe() + ", " + fc_->describe() + ")";
  }

 private:
  nn::Embedding embed_;
  std::vector<std::unique_ptr<nn::Conv2d>> convs_;
  nn::Dropout dropout_;
  std::unique_ptr<nn::Linear> fc_;
  int64_t embed_dim_;
};

inline std::unique_ptr<nn::Model> make_textcnn(Shape sample, int64_t classes, uint64_t seed,
                                               const TextCnnOptions& o = {}) {
  require_tokens("textcnn", sample);
  auto m = new_model("textcnn", sample, classes);
  auto net = std::make_unique<TextCnn>(m->params, sample[0], classes, o);
  return finish_model(std::move(m), std::move(net), seed);
}

}  // namespace mercury::models
