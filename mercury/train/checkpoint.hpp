// mercury/train/checkpoint.hpp — save/restore the complete training state.
//
// Layout: a safetensors file (mercury/io/safetensors.hpp). Tensors: every parameter and buffer
// under its PyTorch-style name (F32, so torch's safetensors reader loads the weights), plus the
// optimizer moments as flat slabs "mercury.optimizer.<m|v>". Metadata (strings): format tag,
// model name, layout hash, the training cursor (epoch, step in epoch, global step, optimizer
// steps), the dropout RNG state and the config that produced the run. Written atomically
// (temp file + fsync + rename); verified on load by a CRC32C over header and data, which must be
// present unless the caller passes io::Checksum::optional (`--resume-unchecked`).
#pragma once

#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "mercury/io/safetensors.hpp"
#include "mercury/nn/model.hpp"
#include "mercury/optim/optimizer.hpp"

namespace mercury::train {

inline constexpr const char* kCheckpointFormat = "mercury-checkpoint-v1";

struct Cursor {
  int64_t epoch = 0;          // epoch to run next
  int64_t step_in_epoch = 0;  // first batch of that epoch still to run
  int64_t global_step = 0;    // optimizer steps done
};

inline std::vector<int64_t> dims_of(const Shape& s) {
  return {s.dims, s.dims + s.rank};
}

inline void save_checkpoint(const std::string& path, const nn::Model& model,
                            const optim::Optimizer& opt, const Cursor& cur,
                            const std::string& rng_state, const std::string& config_json,
                            const std::map<std::string, std::string>& extra = {},
                            const std::vector<io::TensorRef>& extra_tensors = {}) {
  const auto& ps = model.params;
  std::vector<io::TensorRef> tensors;
  for (const auto& p : ps.params())
    tensors.push_back({p.name, "F32", dims_of(p.shape), ps.values() + p.offset});
  for (const auto& b : ps.buffer_specs())
    tensors.push_back({b.name, "F32", dims_of(b.shape), ps.buffers() + b.offset});
  for (const auto& [name, t] : opt.state())
    tensors.push_back({"mercury.optimizer." + name, "F32", {t.numel()}, t.data});
  std::map<std::string, std::string> meta = {
      {"format", "pt"},  // what torch's safetensors helpers expect
      {"mercury.format", kCheckpointFormat},
      {"mercury.model", model.name},
      {"mercury.layout_hash", std::to_string(ps.layout_hash())},
      {"mercury.epoch", std::to_string(cur.epoch)},
      {"mercury.step_in_epoch", std::to_string(cur.step_in_epoch)},
      {"mercury.global_step", std::to_string(cur.global_step)},
      {"mercury.optimizer", optim::kind_name(opt.config().kind)},
      {"mercury.optimizer_steps", std::to_string(opt.steps())},
      {"mercury.rng", rng_state},
      {"mercury.config", config_json},
  };
  for (const auto& [k, v] : extra) meta[k] = v;
  tensors.insert(tensors.end(), extra_tensors.begin(), extra_tensors.end());
  io::write_safetensors(path, tensors, meta);
}

// The importance sampler's state (mercury/importance/policy.hpp) as one U8 tensor.
inline constexpr const char* kSamplerStateTensor = "mercury.sampler.state";

// A distributed run's checkpoint holds each rank's own state (RNGs, sampler) as one U8 tensor
// per rank; the optimizer moments of every shard are gathered into the usual full slabs.
inline std::string rank_state_tensor(int rank) {
  return "mercury.rank" + std::to_string(rank) + ".state";
}

struct LoadedState {
  Cursor cursor;
  std::string rng_state;
  std::string config_json;
  bool has_sampler_state = false;
  std::vector<std::byte> sampler_state;
  std::vector<std::vector<std::byte>> rank_states;  // rank_state_tensor(0), (1), ... while present
  int64_t dist_world = 0;  // metadata mercury.dist.world (0: a single-device checkpoint)
  std::map<std::string, std::string> metadata;  // all of it (e.g. the text vocabulary)
};

inline std::string where(const io::SafetensorsFile& f) {
  return "checkpoint '" + f.source() + "': ";
}

inline int64_t meta_int(const io::SafetensorsFile& f, const std::string& key) {
  auto it = f.metadata().find(key);
  if (it == f.metadata().end()) {
    throw io::CheckpointError(where(f) + "metadata key '" + key + "' missing");
  }
  try {
    std::size_t used = 0;
    const long long v = std::stoll(it->second, &used);
    if (used != it->second.size() || v < 0) throw std::invalid_argument("");
    return v;
  } catch (const std::exception&) {
    throw io::CheckpointError(where(f) + "metadata '" + key +
                              "': expected a non-negative integer, found '" + it->second + "'");
  }
}

inline std::string meta_str(const io::SafetensorsFile& f, const std::string& key) {
  auto it = f.metadata().find(key);
  if (it == f.metadata().end()) {
    throw io::CheckpointError(where(f) + "metadata key '" + key + "' missing");
  }
  return it->second;
}

// Restores weights, buffers, optimizer moments and steps into an already-built model/optimizer.
// The same from a loaded file (the fuzz target feeds it bytes). Throws io::CheckpointError.
inline LoadedState load_checkpoint(const io::SafetensorsFile& f, nn::Model& model,
                                   optim::Optimizer& opt) {
  if (meta_str(f, "mercury.format") != kCheckpointFormat) {
    throw io::CheckpointError(where(f) + "format: expected '" + kCheckpointFormat + "', found '" +
                              meta_str(f, "mercury.format") + "'");
  }
  if (meta_str(f, "mercury.model") != model.name) {
    throw io::CheckpointError(where(f) + "model: expected '" + model.name + "', found '" +
                              meta_str(f, "mercury.model") + "'");
  }
  const std::string want_hash = std::to_string(model.params.layout_hash());
  if (meta_str(f, "mercury.layout_hash") != want_hash) {
    throw io::CheckpointError(where(f) + "parameter layout hash: expected " + want_hash +
                              " (this model), found " + meta_str(f, "mercury.layout_hash") +
                              " (different architecture or input shape)");
  }
  if (meta_str(f, "mercury.optimizer") != optim::kind_name(opt.config().kind)) {
    throw io::CheckpointError(where(f) + "optimizer: expected '" +
                              optim::kind_name(opt.config().kind) + "', found '" +
                              meta_str(f, "mercury.optimizer") + "'");
  }
  auto copy_into = [&](const std::string& name, const Shape& shape, float* dst) {
    const io::SafetensorsEntry* e = f.find(name);
    if (!e) throw io::CheckpointError(where(f) + "tensor '" + name + "' missing");
    if (e->dtype != "F32" || e->shape != dims_of(shape)) {
      throw io::CheckpointError(where(f) + "tensor '" + name + "': expected F32 " + shape.str() +
                                ", found " + e->dtype + " with " + std::to_string(e->shape.size()) +
                                " dims");
    }
    const auto bytes = f.bytes(*e);
    std::memcpy(dst, bytes.data(), bytes.size());
  };
  const auto& ps = model.params;
  for (const auto& p : ps.params()) copy_into(p.name, p.shape, ps.values() + p.offset);
  for (const auto& b : ps.buffer_specs()) copy_into(b.name, b.shape, ps.buffers() + b.offset);
  for (const auto& [name, t] : opt.state())
    copy_into("mercury.optimizer." + name, Shape{t.numel()}, t.data);
  opt.set_steps(meta_int(f, "mercury.optimizer_steps"));
  LoadedState s;
  s.cursor.epoch = meta_int(f, "mercury.epoch");
  s.cursor.step_in_epoch = meta_int(f, "mercury.step_in_epoch");
  s.cursor.global_step = meta_int(f, "mercury.global_step");
  s.rng_state = meta_str(f, "mercury.rng");
  s.config_json = meta_str(f, "mercury.config");
  s.metadata = f.metadata();
  auto u8 = [&](const std::string& name, std::vector<std::byte>& out) {
    const io::SafetensorsEntry* e = f.find(name);
    if (!e) return false;
    if (e->dtype != "U8" || e->shape.size() != 1) {
      throw io::CheckpointError(where(f) + "tensor '" + name +
                                "': expected a 1-D U8 tensor, found " + e->dtype + " with " +
                                std::to_string(e->shape.size()) + " dims");
    }
    const auto bytes = f.bytes(*e);
    out.resize(bytes.size());
    if (!bytes.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
    return true;
  };
  if (f.metadata().count("mercury.dist.world")) s.dist_world = meta_int(f, "mercury.dist.world");
  s.has_sampler_state = u8(kSamplerStateTensor, s.sampler_state);
  for (std::vector<std::byte> blob;
       u8(rank_state_tensor(static_cast<int>(s.rank_states.size())), blob);)
    s.rank_states.push_back(std::move(blob));
  return s;
}

inline LoadedState load_checkpoint(const std::string& path, nn::Model& model, optim::Optimizer& opt,
                                   io::Checksum checksum = io::Checksum::required) {
  return load_checkpoint(io::SafetensorsFile::load(path, checksum), model, opt);
}

}  // namespace mercury::train
