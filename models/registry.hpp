// models/registry.hpp — build a model by name (the CLI's --model).
//
// Contract: make_model(name, sample, classes, seed[, options]) returns a finalized model whose
// parameters are initialised deterministically from `seed`; model_names() lists every name it
// accepts. Per-model knobs live in ModelOptions, one struct per model (defaults documented in
// each model's header); a model ignores the others' options. An unknown name throws
// std::invalid_argument listing the known ones; a sample shape a model cannot take throws too.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "models/cnn.hpp"
#include "models/ds_cnn.hpp"
#include "models/lstm_attention.hpp"
#include "models/mobilenetv2.hpp"
#include "models/resnet.hpp"
#include "models/textcnn.hpp"
#include "models/vgg.hpp"

namespace mercury::models {

struct ModelOptions {
  MobileNetV2Options mobilenetv2;
  LstmAttentionOptions lstm_attention;
  TextCnnOptions textcnn;
  DsCnnOptions ds_cnn;
};

inline std::vector<std::string> model_names() {
  return {"cnn",         "mlp",   "resnet8",        "resnet20", "resnet18", "resnet50",
          "mobilenetv2", "vgg13", "lstm_attention", "textcnn",  "ds_cnn"};
}

inline std::unique_ptr<nn::Model> make_model(const std::string& name, Shape sample, int64_t classes,
                                             uint64_t seed, const ModelOptions& o = {}) {
  if (name == "cnn") return make_cnn(sample, classes, seed);
  if (name == "mlp") return make_mlp(sample, classes, seed);
  if (name == "resnet8") return make_resnet8(sample, classes, seed);
  if (name == "resnet20") return make_resnet20(sample, classes, seed);
  if (name == "resnet18") return make_resnet18(sample, classes, seed);
  if (name == "resnet50") return make_resnet50(sample, classes, seed);
  if (name == "mobilenetv2") return make_mobilenetv2(sample, classes, seed, o.mobilenetv2);
  if (name == "vgg13") return make_vgg13(sample, classes, seed);
  if (name == "lstm_attention") return make_lstm_attention(sample, classes, seed, o.lstm_attention);
  if (name == "textcnn") return make_textcnn(sample, classes, seed, o.textcnn);
  if (name == "ds_cnn") return make_ds_cnn(sample, classes, seed, o.ds_cnn);
  std::string known;
  for (const auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown model '" + name + "' (expected one of: " + known + ")");
}

}  // namespace mercury::models
