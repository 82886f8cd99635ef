// mercury/nn/model.hpp — a classifier: its parameter slabs, its network, its input contract.
#pragma once

#include <memory>
#include <string>

#include "mercury/nn/module.hpp"
#include "mercury/nn/params.hpp"

namespace mercury::nn {

struct Model {
  std::string name;
  ParamStore params;
  ModulePtr net;
  Shape sample_shape;  // one input sample, e.g. [1, 28, 28]
  int64_t num_classes = 0;

  int64_t sample_numel() const { return sample_shape.numel(); }
  // [batch, sample_shape...]
  Shape batch_shape(int64_t batch) const {
    Shape s;
    s.rank = sample_shape.rank + 1;
    s.dims[0] = batch;
    for (int k = 0; k < sample_shape.rank; ++k) s.dims[k + 1] = sample_shape.dims[k];
    return s;
  }
};

}  // namespace mercury::nn
