// models/registry.hpp — build a model by name (the CLI's --model).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "models/cnn.hpp"

namespace mercury::models {

inline std::vector<std::string> model_names() { return {"cnn", "mlp"}; }

inline std::unique_ptr<nn::Model> make_model(const std::string& name, Shape sample,
                                             int64_t classes, uint64_t seed) {
  if (name == "cnn") return make_cnn(sample, classes, seed);
  if (name == "mlp") return make_mlp(sample, classes, seed);
  std::string known;
  for (const auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  throw std::invalid_argument("unknown model '" + name + "' (expected one of: " + known + ")");
}

}  // namespace mercury::models
