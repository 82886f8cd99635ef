// models/lstm_attention.hpp — the paper's AG News model: 2-layer bidirectional LSTM with additive
// attention pooling.
//
// Definition (input [T] float token ids, T >= 1; the paper's sequences are [100])
//   Embedding(vocab, embed_dim, padding_idx) → LSTM(embed_dim → hidden, layers, bidirectional)
//   → AttentionPool(2·hidden, attn_dim) → Linear(2·hidden → classes)
// Defaults: vocab 20,000, embed_dim 128, hidden 128, 2 layers, attn_dim 128, padding_idx 0 (id 0
// is padding: it embeds to zeros and never trains). Parameters (H = hidden, E = embed_dim,
// A = attn_dim, K = classes), all as torch.nn.{Embedding, LSTM, Linear}:
//   vocab·E + 2·(4H·(E + H) + 8H) + 2·(4H·(2H + H) + 8H) + (A·2H + A + A) + 2H·K + K
//   defaults, K = 4: 2,560,000 + 264,192 + 395,264 + 33,024 + 1,028 = 3,253,508.
// State-dict names: embedding.weight, lstm.*_l{0,1}[_reverse], attention.{proj,v}.*, fc.*.
#pragma once

#include <memory>

#include "mercury/nn/sequence.hpp"
#include "models/blocks.hpp"

namespace mercury::models {

struct LstmAttentionOptions {
  int64_t vocab = 20000;
  int64_t embed_dim = 128;
  int64_t hidden = 128;
  int64_t layers = 2;
  int64_t attn_dim = 128;
  int64_t padding_idx = 0;  // -1: no padding id
};

inline std::unique_ptr<nn::Model> make_lstm_attention(Shape sample, int64_t classes, uint64_t seed,
                                                      const LstmAttentionOptions& o = {}) {
  using namespace nn;
  require_tokens("lstm_attention", sample);
  auto m = new_model("lstm_attention", sample, classes);
  ParamStore& ps = m->params;
  auto net = std::make_unique<Sequential>();
  net->add<Embedding>(ps, "embedding", o.vocab, o.embed_dim, o.padding_idx);
  auto& lstm = net->add<LSTM>(ps, "lstm", o.embed_dim, o.hidden, o.layers, true);
  net->add<AttentionPool>(ps, "attention", lstm.output_size(), o.attn_dim);
  net->add<Linear>(ps, "fc", lstm.output_size(), classes);
  return finish_model(std::move(m), std::move(net), seed);
}

}  // namespace mercury::models
