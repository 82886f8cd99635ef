// mercury/dist/tictac.hpp — the TicTac baseline (Hashemi et al., "TicTac: Accelerating
// Distributed Deep Learning with Communication Scheduling", MLSys 2019) on the BSP engine:
// parameters travel layer by layer in forward-consumption (TIC) order, the next forward starts
// on a layer as soon as its parameters are in, and gradients are pushed per layer as backward
// produces them. The arithmetic is sync SGD's; only the schedule differs.
//
// Contract
// - TicTac(bsp, params): the slab is cut into pieces at every layer boundary (a layer = the
//   parameters whose names agree up to the last '.', e.g. conv1.weight and conv1.bias) and at
//   every shard boundary of bsp.plan(); a piece belongs to the rank serving its shard. The cuts
//   fall on parameter offsets, so the alignment padding between parameters travels with the
//   piece before it, as in BspSync.
// - One step, called on every rank with the same arguments:
//     micro_batch(it, last) before each Engine::grad of step `it`, which gets this object as its
//       nn::StepHooks;
//     the forward's parameter reads (before_param) wait for the pieces of the previous step's
//       update still in flight (kTicParams, key = piece), each wait bounded by op_timeout;
//     the last micro-batch's backward sends piece p's gradient to its owner (kTicGrad, key = p)
//       as soon as the sweep has passed the first use of p's parameters, i.e. when p's gradient
//       is final (autograd/tape.hpp, SweepObserver);
//     finish(lr, it), after backward (or alone, for a step whose batch was empty), sends what
//       is left, reduces this rank's shard piece by piece in backward order as contributions
//       arrive (ShardServer::reduce on a part: bitwise the whole reduction), steps the shard's
//       optimizer once, and sends its pieces to every rank in forward order. It does not wait
//       for the other shards: the next forward does, layer by layer, or settle().
// - settle() waits for every piece still in flight: call it before anything but the next
//   forward reads the weights (evaluation, checkpoint, replica check, a sampler that scores).
//   After settle() the weights are bitwise those BspSync::step would give for the same
//   gradients.
// - Timing goes through bsp.record() (BspSync's split): a step's record holds finish()'s split
//   plus its forward's waits (idle estimated as BspSync does, the rest comm); settle()'s waits are
//   recorded on their own (steps 0). forward_wait_s() is the last step's blocked time inside the
//   forward, which the trainer takes out of compute.
// - Message types kTicGrad (27) and kTicParams (28). Errors are BspSync's (type, peer, rank,
//   iteration, phase and the --op-timeout knob in the message).
// - Not thread-safe: the rank's training thread only.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "mercury/dist/bsp.hpp"
#include "mercury/nn/module.hpp"

namespace mercury::dist {

inline constexpr uint8_t kTicGrad = net::kFirstAppType + 11;    // 27: a layer's gradient
inline constexpr uint8_t kTicParams = net::kFirstAppType + 12;  // 28: a layer's new values

class TicTac final : public nn::StepHooks {
 public:
  struct Piece {
    int64_t begin = 0, end = 0;  // floats of the slab
    int owner = 0;               // the rank serving it
    int64_t size() const { return end - begin; }
  };

  TicTac(BspSync& bsp, nn::ParamStore& params)
      : bsp_(bsp), params_(params), pieces_(cut(bsp.plan(), params)) {
    const std::size_t n = pieces_.size();
    first_leaf_.assign(n, kUnused);
    pushed_.assign(n, 0);
    pending_.assign(n, 0);
    order_.reserve(n);
    for (std::size_t p = 0; p < n; ++p) {
      if (pieces_[p].owner == bsp_.rank_) mine_.push_back(p);
      begins_.push_back(pieces_[p].begin);
    }
  }

  const std::vector<Piece>& pieces() const { return pieces_; }
  // Blocked time inside the last step's forward (waiting for parameters).
  double forward_wait_s() const { return wait_s_; }
  // Pieces of the last update not yet received.
  int64_t in_flight() const {
    return static_cast<int64_t>(std::count(pending_.begin(), pending_.end(), 1));
  }

  void micro_batch(int64_t it, bool last) {
    if (it != it_) {  // a new step
      it_ = it;
      step_ = SyncTiming{};
      wait_s_ = 0;
      std::fill(pushed_.begin(), pushed_.end(), 0);
    }
    std::fill(first_leaf_.begin(), first_leaf_.end(), kUnused);
    pushing_ = last;
    sorted_ = false;
  }

  void before_param(int64_t offset, int64_t numel, std::size_t leaf) override {
    if (numel <= 0) return;
    const auto first = std::upper_bound(begins_.begin(), begins_.end(), offset);
    for (std::size_t p = static_cast<std::size_t>(first - begins_.begin()) - 1;
         p < pieces_.size() && pieces_[p].begin < offset + numel; ++p) {
      first_leaf_[p] = std::min(first_leaf_[p], leaf);
      if (pending_[p]) wait_s_ += receive_values(p, step_);
    }
  }

  void swept(std::size_t k) override {
    if (!pushing_) return;
    if (!sorted_) {  // backward order: the latest first use first; unused pieces last
      order_.clear();
      for (std::size_t p = 0; p < pieces_.size(); ++p)
        if (first_leaf_[p] != kUnused) order_.push_back(p);
      std::sort(order_.begin(), order_.end(),
                [&](std::size_t a, std::size_t b) { return first_leaf_[a] > first_leaf_[b]; });
      next_ = 0;
      sorted_ = true;
    }
    while (next_ < order_.size() && first_leaf_[order_[next_]] + 1 >= k) push(order_[next_++]);
  }

  void finish(float lr, int64_t it) {
    if (it != it_) micro_batch(it, true);  // no forward ran (an empty batch): zero gradients
    net::Transport& t = bsp_.t_;
    const double t0 = t.now();
    const uint64_t iu = bsp_.checked_iteration(it);
    for (std::size_t p = 0; p < pieces_.size(); ++p)
      if (!pushed_[p]) push(p);  // parameters the forward did not read: zero gradients
    double update = 0, idle = 0;
    float* values = params_.values();
    const float* grads = params_.grads();
    const int world = bsp_.world_, me = bsp_.rank_;
    if (!mine_.empty()) {
      const int64_t base = bsp_.plan_.begin(me);
      const auto deadline = net::deadline_in(bsp_.op_timeout_s_);
      for (auto q = mine_.rbegin(); q != mine_.rend(); ++q) {  // backward order
        const Piece& pc = pieces_[*q];
        for (int r = 0; r < world; ++r) {
          if (r == me) {
            bsp_.contributions_[r] = grads + pc.begin;
            continue;
          }
          bsp_.inbox_[r] = bsp_.recv(r, kTicGrad, *q, iu, deadline, "layer gradient reduce",
                                     pc.size() * 4, idle);
          bsp_.contributions_[r] = reinterpret_cast<const float*>(bsp_.inbox_[r].payload.data());
          step_.bytes_received += bsp_.inbox_[r].payload.size();
        }
        const double tu = t.now();
        bsp_.server_.reduce(bsp_.contributions_, pc.begin - base, pc.size());
        update += t.now() - tu;
        for (auto& m : bsp_.inbox_) m.payload = {};
      }
      const double tu = t.now();
      bsp_.server_.step(values + base, lr);
      update += t.now() - tu;
      for (std::size_t p : mine_) {  // TIC order: the first layer first
        const Piece& pc = pieces_[p];
        const net::SharedPayload shared =
            world > 2 ? bsp_.share(values + pc.begin, pc.size()) : nullptr;
        for (int k = 1; k < world; ++k) {
          const int j = (me + k) % world;
          if (shared) {
            bsp_.guarded("layer parameter broadcast", it,
                         [&] { t.send(j, kTicParams, p, iu, shared); });
          } else {
            bsp_.send(j, kTicParams, p, iu, values + pc.begin, pc.size(),
                      "layer parameter broadcast");
          }
          step_.bytes_sent += static_cast<uint64_t>(pc.size()) * sizeof(float);
        }
      }
    }
    for (std::size_t p = 0; p < pieces_.size(); ++p)
      pending_[p] = pieces_[p].owner != me && pieces_[p].size() > 0;
    pending_it_ = iu;
    step_.steps = 1;
    step_.update_s = update;
    step_.idle_s += idle;
    step_.comm_s += std::max(0.0, t.now() - t0 - update - idle);
    bsp_.record(step_);
  }

  void settle() {
    SyncTiming s;
    s.steps = 0;
    for (std::size_t p = 0; p < pieces_.size(); ++p)
      if (pending_[p]) receive_values(p, s);
    if (s.bytes_received) bsp_.record(s);
  }

 private:
  static constexpr std::size_t kUnused = std::numeric_limits<std::size_t>::max();

  // Cuts at every layer start and every shard boundary.
  static std::vector<Piece> cut(const ShardPlan& plan, const nn::ParamStore& params) {
    std::vector<int64_t> cuts;
    std::string layer;
    for (std::size_t i = 0; i < params.params().size(); ++i) {
      const nn::ParamSpec& s = params.params()[i];
      const std::string name = s.name.substr(0, s.name.rfind('.'));
      if (i > 0 && name != layer) cuts.push_back(s.offset);
      layer = name;
    }
    for (int r = 1; r < plan.world(); ++r) cuts.push_back(plan.begin(r));
    cuts.push_back(0);
    cuts.push_back(params.size());
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    std::vector<Piece> out;
    for (std::size_t k = 0; k + 1 < cuts.size(); ++k) {
      int owner = 0;
      while (owner + 1 < plan.world() && !(cuts[k] < plan.range(owner).end)) ++owner;
      out.push_back({cuts[k], cuts[k + 1], owner});
    }
    return out;
  }

  void push(std::size_t p) {
    pushed_[p] = 1;
    const Piece& pc = pieces_[p];
    if (pc.owner == bsp_.rank_ || pc.size() == 0) return;
    bsp_.send(pc.owner, kTicGrad, p, bsp_.checked_iteration(it_), params_.grads() + pc.begin,
              pc.size(), "layer gradient push");
    step_.bytes_sent += static_cast<uint64_t>(pc.size()) * sizeof(float);
  }

  // Receives piece p of the last update into the slab; returns the seconds it took.
  double receive_values(std::size_t p, SyncTiming& into) {
    const Piece& pc = pieces_[p];
    net::Transport& t = bsp_.t_;
    const double t0 = t.now();
    double idle = 0;
    const net::Message m =
        bsp_.recv(pc.owner, kTicParams, p, pending_it_, net::deadline_in(bsp_.op_timeout_s_),
                  "layer parameter gather", pc.size() * 4, idle);
    std::memcpy(params_.values() + pc.begin, m.payload.data(), m.payload.size());
    pending_[p] = 0;
    const double took = t.now() - t0;
    into.bytes_received += m.payload.size();
    into.idle_s += idle;
    into.comm_s += std::max(0.0, took - idle);
    return took;
  }

  BspSync& bsp_;
  nn::ParamStore& params_;
  std::vector<Piece> pieces_;
  std::vector<int64_t> begins_;
  std::vector<std::size_t> mine_;  // ascending = forward order
  std::vector<std::size_t> first_leaf_;
  std::vector<char> pushed_, pending_;
  std::vector<std::size_t> order_;
  std::size_t next_ = 0;
  bool sorted_ = false, pushing_ = false;
  int64_t it_ = -1;
  uint64_t pending_it_ = 0;
  SyncTiming step_;
  double wait_s_ = 0;
};

}  // namespace mercury::dist
