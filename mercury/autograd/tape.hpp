// mercury/autograd/tape.hpp — reverse-mode automatic differentiation on a flat tape.
//
// Contract
// - Ops (mercury/autograd/ops_*.hpp) append Nodes in execution order; the tape is therefore a
//   topological order and backward() is one reverse sweep. Each Node holds its forward value,
//   its gradient (allocated lazily from the tape's arena: zeroed, or written whole by the first
//   rule that feeds it — grad(v, &acc)) and a plain function pointer for its backward rule
//   plus a few saved tensors and scalars — no std::function, no heap.
// - Leaves wrap parameters: their `grad` points into the gradient slab, so backward ACCUMULATES
//   straight into the slab (zero it between steps; micro-batches accumulate for free).
// - When grad is disabled (NoGradGuard, or score mode) ops record nothing they would need for
//   backward; scoring thus costs one forward pass.
// - reset() recycles nodes and the arena: a step of the same shapes allocates nothing.
// - backward() may take a SweepObserver, told after each node of the reverse sweep that every
//   node from that tape position on has run its backward rule: a leaf created at position L has
//   its final gradient once position L + 1 is reported (its consumers come after it), which is
//   how a distributed step ships a layer's gradient while backward is still running (TicTac).
// - Memory (see "Planned steps" below): a step opened with reset() bump-allocates from the arena
//   and frees everything at the next reset. A step opened with begin_step(key) is planned: the
//   first step with a key is recorded (each tensor is its own allocation, freed as soon as it is
//   known dead), and end_step() turns the record into a plan — every tensor's lifetime in events
//   (node creations and backward visits) and its offset in one block, placed so tensors alive at
//   the same time never overlap (memory_plan.hpp). Later steps with the key replay the plan: no
//   allocation, and the block is the plan's peak rather than the sum of every tensor.
// - Not thread-safe: one Tape per thread of work.
//
// Planned steps: what an op must declare
// - Tensors an op keeps for its backward rule come from saved(), not scratch(): scratch() is dead
//   when the op (or the backward rule) that asked for it returns.
// - op()'s `reads` mask says which input values (bit s: in[s]) and whether its own value
//   (kReadSelf) the backward rule reads; the default, every one, is always correct. A value no
//   backward rule reads is dead after its last consumer's forward.
// - release(v) promises that no op created later consumes v (Sequential releases every node a
//   layer made except its output, and the previous layer's output once consumed); consuming a
//   released node throws. pin(v) keeps v's value readable until the next step (the engine pins
//   what it reads after the sweep). Nodes nothing consumed are kept to the end of the step.
#pragma once

#include <cstdint>
#include <cstring>
#if defined(__unix__)
#include <sys/mman.h>
#endif
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kernels/kernels.hpp"
#include "mercury/tensor/arena.hpp"
#include "mercury/tensor/memory_plan.hpp"

namespace mercury {

class Tape;
struct Node;
using Var = Node*;
using BackwardFn = void (*)(Node& node, Tape& tape);

// Progress of a backward sweep: swept(k) means every node at tape position >= k is done.
class SweepObserver {
 public:
  virtual void swept(std::size_t k) = 0;

 protected:
  ~SweepObserver() = default;
};

// Backward-read masks for Tape::op (bit s: the rule reads in[s]->value; kReadSelf: its own value).
inline constexpr uint8_t kReadIn0 = 1, kReadIn1 = 2, kReadIn2 = 4, kReadIn3 = 8, kReadSelf = 16;
inline constexpr uint8_t kReadsNone = 0, kReadsAll = 31;

// What a tape allocation is for (planned steps).
enum class Use : uint8_t { value, saved, scratch, grad, input };

inline const char* use_name(Use u) {
  switch (u) {
    case Use::value:
      return "value";
    case Use::saved:
      return "saved";
    case Use::scratch:
      return "scratch";
    case Use::grad:
      return "grad";
    case Use::input:
      return "input";
  }
  return "?";
}

struct Node {
  Tensor value;
  Tensor grad;  // undefined until something flows into it
  BackwardFn backward = nullptr;
  Node* in[4] = {nullptr, nullptr, nullptr, nullptr};
  bool requires_grad = false;
  // Saved state for backward: tensors, scalars, and a pointer to op attributes that outlive the
  // tape (a module's config, say).
  Tensor saved[4];
  float f[4] = {0, 0, 0, 0};
  int64_t i[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const void* ctx = nullptr;
  // Bookkeeping for planned steps (set by the tape).
  uint8_t reads = kReadsAll;  // what this node's backward rule reads, see kReadIn0..kReadSelf
  bool leaf = false, released = false, pinned = false, done = false;
  int32_t pos = 0;        // tape position
  int32_t mem = -1;       // record: the allocation holding value (own, or the aliased node's)
  int32_t grad_mem = -1;  // record: the allocation holding grad
  int32_t readers = 0;    // backward rules still to run that read this value
  int64_t t_made = 0, t_swept = -1;  // events: creation, backward visit (-1: not visited)

  const Shape& shape() const { return value.shape; }
  int64_t numel() const { return value.numel(); }
};

// One recorded tensor's memory. Large ones come straight from mmap, so freeing one hands its pages
// back at once: malloc may keep freed heap memory (with glibc's thresholds pinned high, as for
// PyTorch, anything under 64 MiB), and the replay block would then come on top of it.
class RecordBuffer {
 public:
  RecordBuffer() = default;
  explicit RecordBuffer(int64_t floats) : size_(floats) {
    bytes_ = static_cast<std::size_t>(floats) * sizeof(float);
#if defined(__unix__)
    if (bytes_ >= kMapBytes) {
      void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      p_ = static_cast<float*>(p);
      mapped_ = true;
      return;
    }
#endif
    heap_.resize(floats, /*zero=*/false);
    p_ = heap_.data();
  }
  RecordBuffer(RecordBuffer&& o) noexcept {
    *this = std::move(o);
  }
  RecordBuffer& operator=(RecordBuffer&& o) noexcept {
    if (this != &o) {
      unmap();
      heap_ = std::move(o.heap_);
      p_ = std::exchange(o.p_, nullptr);
      size_ = std::exchange(o.size_, 0);
      bytes_ = std::exchange(o.bytes_, 0);
      mapped_ = std::exchange(o.mapped_, false);
    }
    return *this;
  }
  RecordBuffer(const RecordBuffer&) = delete;
  RecordBuffer& operator=(const RecordBuffer&) = delete;
  ~RecordBuffer() {
    unmap();
  }
  float* data() const {
    return p_;
  }
  int64_t size() const {
    return size_;
  }

 private:
  static constexpr std::size_t kMapBytes = std::size_t{1} << 20;
  void unmap() {
#if defined(__unix__)
    if (mapped_) ::munmap(p_, bytes_);
#endif
    mapped_ = false;
  }
  AlignedBuffer heap_;
  float* p_ = nullptr;
  int64_t size_ = 0;
  std::size_t bytes_ = 0;
  bool mapped_ = false;
};

// One planned step's memory: every tensor in allocation order, its lifetime and its offset.
struct StepPlan {
  struct Entry {
    int64_t floats = 0;
    Use use = Use::scratch;
    int32_t owner = -1;  // tape position of the node it belongs to (-1: scratch)
    int64_t first = 0, last = 0;
    int64_t offset = 0;  // floats from the block's start
  };
  std::vector<Entry> tensors;
  int64_t block_floats = 0;      // what the placement needs
  int64_t live_floats = 0;       // the most alive at one event (a lower bound for any placement)
  int64_t total_floats = 0;      // every tensor side by side: what a bump arena takes
  int64_t record_floats = 0;     // the recording step's own peak (tensors freed as found dead)
  std::vector<int32_t> by_last;  // tensor ids ordered by `last` (poisoning)
};

class Tape {
 public:
  explicit Tape(int64_t arena_floats = 0) : arena_(arena_floats) {}
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  bool grad_enabled() const { return grad_enabled_; }
  void set_grad_enabled(bool on) { grad_enabled_ = on; }
  Arena& arena() { return arena_; }

  // A leaf: `value` (and `grad`, if given) are views into memory the caller owns.
  Var leaf(Tensor value, Tensor grad = {}, bool requires_grad = false) {
    Node& n = new_node();
    n.leaf = true;
    n.value = value;
    n.grad = grad;
    n.requires_grad = requires_grad && grad_enabled_;
    return &n;
  }
  // A constant input copied into the arena (e.g. a batch of samples); kept for the whole step.
  Var input(Shape s, bool requires_grad = false) {
    Node& n = new_node();
    n.leaf = true;
    n.pinned = true;
    n.value = Tensor(allocate(s.numel(), Use::input, n.pos, &n.mem), s);
    if (n.mem >= 0) holders_[n.mem] = 1;
    n.requires_grad = requires_grad && grad_enabled_;
    return &n;
  }

  // An op's output node. It needs grad if grad is enabled and any input needs it; only then is
  // `fn` recorded. `reads`: which values the rule reads (see the contract).
  Var op(Shape out_shape, BackwardFn fn, std::initializer_list<Var> inputs,
         uint8_t reads = kReadsAll) {
    Node& n = new_node();
    int k = 0;
    bool rg = false;
    for (Var v : inputs) {
      if (k == 4) throw std::logic_error("Tape::op: at most 4 inputs");
      if (v && v->released) consumed_after_release(*v);
      n.in[k++] = v;
      rg = rg || (v && v->requires_grad);
    }
    n.requires_grad = rg && grad_enabled_;
    n.backward = n.requires_grad ? fn : nullptr;
    n.reads = reads;
    if (n.backward) {
      for (int s = 0; s < 4; ++s)
        if (n.in[s] && (reads >> s & 1)) ++n.in[s]->readers;
      if (reads & kReadSelf) ++n.readers;
    }
    n.value = Tensor(allocate(out_shape.numel(), Use::value, n.pos, &n.mem), out_shape);
    if (n.mem >= 0) holders_[n.mem] = 1;
    return &n;
  }
  // Same as op() but the output aliases an existing tensor (reshape/flatten views); the rule
  // reads no value.
  Var alias(Tensor value, BackwardFn fn, Var input) {
    if (input->released) consumed_after_release(*input);
    Node& n = new_node();
    n.value = value;
    n.in[0] = input;
    n.reads = kReadsNone;
    n.mem = input->mem;
    if (n.mem >= 0) ++holders_[n.mem];
    n.requires_grad = input->requires_grad && grad_enabled_;
    n.backward = n.requires_grad ? fn : nullptr;
    return &n;
  }

  // The gradient buffer of v, allocated and zeroed on first use.
  Tensor& grad(Var v) {
    bool acc = false;
    Tensor& g = grad(v, &acc);
    if (!acc) g.zero();
    return g;
  }
  // The gradient buffer of v for a rule that can either write or accumulate: *acc tells which.
  // false: nothing has flowed into v yet and the buffer is NOT zeroed, so the rule must write
  // every element (the kernels' `acc` flag); this saves a memset and a read per gradient.
  Tensor& grad(Var v, bool* acc) {
    *acc = v->grad.defined();
    if (!*acc)
      v->grad = Tensor(allocate(v->numel(), Use::grad, v->pos, &v->grad_mem), v->value.shape);
    return v->grad;
  }
  // d(v) += g (g has v's size): a copy when it is the first contribution.
  void copy_or_add(const float* g, Var v) {
    bool acc = false;
    Tensor& d = grad(v, &acc);
    if (acc) {
      kernels::table().axpy(d.numel(), 1.0f, g, d.data);
    } else {
      std::memcpy(d.data, g, static_cast<std::size_t>(d.numel()) * sizeof(float));
    }
  }
  // Scratch memory, dead once the op or backward rule that asked for it returns.
  Tensor scratch(Shape s) { return Tensor(allocate(s.numel(), Use::scratch, -1, nullptr), s); }
  Tensor scratch_zeros(Shape s) {
    Tensor t = scratch(s);
    t.zero();
    return t;
  }
  // Memory the newest node keeps for its backward rule (its saved[] tensors).
  Tensor saved(Shape s) {
    if (used_ == 0) throw std::logic_error("Tape::saved: no node to save for");
    const int32_t owner = static_cast<int32_t>(used_ - 1);
    const int32_t before = static_cast<int32_t>(rec_.size());
    Tensor t(allocate(s.numel(), Use::saved, owner, nullptr), s);
    if (mode_ == Mode::record) {
      node_saved_.resize(used_);
      node_saved_[static_cast<std::size_t>(owner)].push_back(before);
    }
    return t;
  }

  // No op created from now on consumes v (see the contract).
  void release(Var v) {
    if (v->released) return;
    v->released = true;
    if (v->readers == 0) value_done(*v);
  }
  // release() for every node from tape position `start` on except `keep`.
  void release_made_since(std::size_t start, Var keep) {
    for (std::size_t k = start; k < used_; ++k)
      if (&at(k) != keep) release(&at(k));
  }
  // Keeps v's value (and what it aliases) readable until the next step.
  void pin(Var v) { v->pinned = true; }
  // Tape position of v.
  std::size_t position(Var v) const { return static_cast<std::size_t>(v->pos); }

  // Seeds d(root) = seed (same shape as root) and sweeps the tape backwards.
  void backward(Var root, const Tensor& seed, SweepObserver* observer = nullptr) {
    if (!root->requires_grad) {
      throw std::logic_error(
          "Tape::backward: the root does not depend on any parameter "
          "that requires grad (was it built under NoGradGuard?)");
    }
    if (seed.numel() != root->numel()) {
      throw std::invalid_argument("Tape::backward: seed has " + std::to_string(seed.numel()) +
                                  " elements, root " + root->value.shape.str());
    }
    copy_or_add(seed.data, root);
    sweep(root, observer);
  }
  // Seeds d(root) = 1 for a scalar root.
  void backward(Var root) {
    if (root->numel() != 1) {
      throw std::invalid_argument("Tape::backward(root): root must be a scalar, got " +
                                  root->value.shape.str());
    }
    float one = 1.0f;
    backward(root, Tensor(&one, Shape{1}));
  }

  // Forgets every node and frees the arena for the next step (unplanned).
  void reset() {
    close_step();
    mode_ = Mode::bump;
    arena_.reset();
  }
  // Opens a planned step. `key` must name everything that changes the step's tensor sizes or
  // their order (the engine hashes the mode, batch size and options): a step that does not
  // follow its key's plan throws std::logic_error.
  void begin_step(uint64_t key) {
    close_step();
    key_ = key;
    const auto it = plans_.find(key);
    if (it == plans_.end()) {
      mode_ = Mode::record;
      return;
    }
    mode_ = Mode::replay;
    plan_ = &it->second;
    if (block_.size() < plan_->block_floats) block_.resize(plan_->block_floats, /*zero=*/false);
  }
  // Closes a planned step: a recorded step becomes its key's plan (its tensors stay readable
  // until the next step); a replayed one is checked to have made every planned allocation.
  void end_step() {
    if (mode_ == Mode::replay && next_ != plan_->tensors.size()) {
      throw std::logic_error("Tape: step with plan key " + std::to_string(key_) + " made " +
                             std::to_string(next_) + " allocations, its plan has " +
                             std::to_string(plan_->tensors.size()));
    }
    if (mode_ == Mode::record && !recorded_) {
      if (plans_.size() >= kMaxPlans) {  // forget the oldest kind of step
        plans_.erase(plan_order_.front());
        plan_order_.erase(plan_order_.begin());
      }
      plans_[key_] = make_plan();
      plan_order_.push_back(key_);
      recorded_ = true;
    }
  }
  const StepPlan* plan(uint64_t key) const {
    const auto it = plans_.find(key);
    return it == plans_.end() ? nullptr : &it->second;
  }
  // The plan of the last planned step's key (null before one was recorded).
  const StepPlan* last_plan() const { return plan(key_); }
  // The block planned steps replay in, in bytes (the largest plan's).
  int64_t planned_bytes() const { return block_.size() * static_cast<int64_t>(sizeof(float)); }
  // Tests: fill every tensor with NaN as soon as it is dead, so a read after death shows.
  void set_poison(bool on) { poison_ = on; }

  std::size_t size() const { return used_; }

 private:
  static constexpr std::size_t kChunk = 256;
  // Plans kept per tape (one per kind of step: mode, batch size, options); a caller cycling
  // through more batch sizes than this records some again.
  static constexpr std::size_t kMaxPlans = 32;
  enum class Mode { bump, record, replay };

  Node& new_node() {
    tick();
    const std::size_t chunk = used_ / kChunk, slot = used_ % kChunk;
    if (chunk == chunks_.size()) chunks_.push_back(std::make_unique<Node[]>(kChunk));
    Node& n = chunks_[chunk][slot];
    n = Node{};
    n.pos = static_cast<int32_t>(used_);
    n.t_made = now_;
    ++used_;
    return n;
  }
  Node& at(std::size_t k) { return chunks_[k / kChunk][k % kChunk]; }

  // One event ends and the next starts: what died in the last one is freed (record) or
  // poisoned (replay, when asked).
  void tick() {
    if (mode_ == Mode::record) {
      for (int32_t id : scratch_) free_alloc(id);
      scratch_.clear();
      if (used_ > 0 && node_saved_.size() >= used_ && !at(used_ - 1).backward)
        for (int32_t id : node_saved_[used_ - 1]) free_alloc(id);
    }
    ++now_;
    if (mode_ == Mode::replay && poison_) {
      const auto& t = plan_->tensors;
      for (; dead_ < plan_->by_last.size() && t[plan_->by_last[dead_]].last < now_; ++dead_) {
        const auto id = static_cast<std::size_t>(plan_->by_last[dead_]);
        if (id < next_) fill_nan(block_.data() + t[id].offset, t[id].floats);
      }
    }
  }

  float* allocate(int64_t floats, Use use, int32_t owner, int32_t* id_out) {
    if (mode_ == Mode::bump) return arena_.alloc(floats);
    if (mode_ == Mode::replay) {
      const auto& t = plan_->tensors;
      if (next_ >= t.size() || t[next_].floats != floats || t[next_].use != use) {
        throw std::logic_error("Tape: allocation " + std::to_string(next_) + " (" +
                               std::to_string(floats) + " floats, " + use_name(use) +
                               ") does not follow plan key " + std::to_string(key_) +
                               (next_ < t.size() ? " (planned " + std::to_string(t[next_].floats) +
                                                       " floats, " + use_name(t[next_].use) + ")"
                                                 : " (the plan has no more)") +
                               ": the key must capture everything that changes the step's shapes");
      }
      return block_.data() + t[next_++].offset;
    }
    const auto id = static_cast<int32_t>(rec_.size());
    rec_.push_back({floats, use, owner, now_, now_, 0});
    bufs_.emplace_back(align_floats(floats > 0 ? floats : 1));
    holders_.push_back(0);
    live_ += align_floats(floats);
    record_peak_ = std::max(record_peak_, live_);
    if (use == Use::scratch) scratch_.push_back(id);
    if (id_out) *id_out = id;
    return bufs_.back().data();
  }
  void free_alloc(int32_t id) {
    RecordBuffer& b = bufs_[static_cast<std::size_t>(id)];
    if (!b.data()) return;
    if (poison_) fill_nan(b.data(), b.size());
    live_ -= b.size();
    b = RecordBuffer();
  }
  static void fill_nan(float* p, int64_t n) {
    std::fill(p, p + n, std::numeric_limits<float>::quiet_NaN());
  }
  // v's value will not be read again: drop its hold on the allocation (record mode).
  void value_done(Node& v) {
    if (v.done || v.pinned) return;
    v.done = true;
    if (mode_ == Mode::record && v.mem >= 0 && --holders_[v.mem] == 0) free_alloc(v.mem);
  }
  [[noreturn]] void consumed_after_release(const Node& v) const {
    throw std::logic_error("Tape: node " + std::to_string(v.pos) + " " + v.value.shape.str() +
                           " is consumed after release() promised it would not be");
  }

  void sweep(Var root, SweepObserver* observer) {
    // Nodes after root cannot contribute to it; start there and walk to the beginning.
    std::size_t k = used_;
    while (k > 0 && &at(k - 1) != root) --k;
    for (; k > 0; --k) {
      Node& n = at(k - 1);
      tick();
      n.t_swept = now_;
      if (n.backward && n.grad.defined()) n.backward(n, *this);
      if (n.backward) {  // what the rule read is read no more
        for (int s = 0; s < 4; ++s)
          if (n.in[s] && (n.reads >> s & 1) && --n.in[s]->readers == 0 && n.in[s]->released)
            value_done(*n.in[s]);
      }
      value_done(n);  // every consumer (later on the tape) and n's own rule have run
      if (mode_ == Mode::record) {
        if (n.grad_mem >= 0 && !n.leaf) free_alloc(n.grad_mem);
        if (node_saved_.size() > static_cast<std::size_t>(n.pos))
          for (int32_t id : node_saved_[n.pos]) free_alloc(id);
      }
      if (observer) observer->swept(k - 1);
    }
  }

  // Exact lifetimes of the recorded step's tensors, and their placement.
  StepPlan make_plan() {
    const int64_t end = now_ + 1;
    std::vector<int64_t> last_use(used_);
    for (std::size_t k = 0; k < used_; ++k) last_use[k] = at(k).t_made;
    std::vector<bool> consumed(used_, false);
    for (std::size_t j = 0; j < used_; ++j) {
      const Node& n = at(j);
      const bool rule = n.backward && n.t_swept >= 0;
      for (int s = 0; s < 4; ++s) {
        if (!n.in[s]) continue;
        const auto k = static_cast<std::size_t>(n.in[s]->pos);
        consumed[k] = true;
        last_use[k] = std::max(last_use[k], n.t_made);
        if (rule && (n.reads >> s & 1)) last_use[k] = std::max(last_use[k], n.t_swept);
      }
      if (rule && (n.reads & kReadSelf)) last_use[j] = std::max(last_use[j], n.t_swept);
    }
    StepPlan p;
    p.tensors = rec_;  // `last` is filled in here, `offset` by the placement
    for (auto& t : p.tensors) {
      const Node* o = t.owner >= 0 ? &at(static_cast<std::size_t>(t.owner)) : nullptr;
      switch (t.use) {
        case Use::scratch:
          t.last = t.first;
          break;
        case Use::input:
          t.last = end;
          break;
        case Use::grad:
          t.last = (o->leaf || o->t_swept < 0) ? end : o->t_swept;
          break;
        case Use::saved:
          t.last = (o->backward && o->t_swept >= 0) ? o->t_swept : t.first;
          break;
        case Use::value:
          t.last = t.first;
          break;  // from its holders, below
      }
    }
    for (std::size_t k = 0; k < used_; ++k) {
      const Node& n = at(k);
      if (n.mem < 0 || rec_[n.mem].use != Use::value) continue;
      const int64_t last = (n.pinned || !consumed[k]) ? end : last_use[k];
      p.tensors[n.mem].last = std::max(p.tensors[n.mem].last, last);
    }
    std::vector<Interval> iv(p.tensors.size());
    for (std::size_t a = 0; a < iv.size(); ++a) {
      iv[a] = {p.tensors[a].floats > 0 ? p.tensors[a].floats : 1, p.tensors[a].first,
               p.tensors[a].last};
      p.total_floats += align_floats(iv[a].floats);
    }
    const Placement pl = plan_offsets(iv);
    for (std::size_t a = 0; a < iv.size(); ++a) p.tensors[a].offset = pl.offsets[a];
    p.block_floats = pl.block_floats;
    p.live_floats = live_peak_floats(iv);
    p.record_floats = record_peak_;
    p.by_last.resize(iv.size());
    for (std::size_t a = 0; a < iv.size(); ++a) p.by_last[a] = static_cast<int32_t>(a);
    std::stable_sort(p.by_last.begin(), p.by_last.end(),
                     [&](int32_t x, int32_t y) { return p.tensors[x].last < p.tensors[y].last; });
    return p;
  }

  // Drops the previous step's nodes and (recorded) tensors.
  void close_step() {
    used_ = 0;
    now_ = 0;
    next_ = 0;
    dead_ = 0;
    rec_.clear();
    bufs_.clear();
    holders_.clear();
    scratch_.clear();
    node_saved_.clear();
    live_ = record_peak_ = 0;
    recorded_ = false;
  }

  Arena arena_;
  std::vector<std::unique_ptr<Node[]>> chunks_;
  std::size_t used_ = 0;
  bool grad_enabled_ = true;
  // Planned steps.
  Mode mode_ = Mode::bump;
  uint64_t key_ = 0;
  int64_t now_ = 0;
  bool poison_ = false;
  std::unordered_map<uint64_t, StepPlan> plans_;
  std::vector<uint64_t> plan_order_;  // keys, oldest first
  AlignedBuffer block_;
  const StepPlan* plan_ = nullptr;    // replay: the plan followed
  std::size_t next_ = 0;              // replay: the next planned allocation
  std::size_t dead_ = 0;              // replay: by_last entries poisoned so far
  std::vector<StepPlan::Entry> rec_;  // record: every allocation so far
  std::vector<RecordBuffer> bufs_;    // record: their memory (empty once freed)
  std::vector<int32_t> holders_;      // record: nodes still reading an allocation's value
  std::vector<int32_t> scratch_;      // record: scratch of the current event
  std::vector<std::vector<int32_t>> node_saved_;  // record: saved() allocations per node
  int64_t live_ = 0, record_peak_ = 0;
  bool recorded_ = false;
};

// Disables gradient recording on one tape for its scope (score mode).
class NoGradGuard {
 public:
  explicit NoGradGuard(Tape& t) : tape_(t), prev_(t.grad_enabled()) { t.set_grad_enabled(false); }
  ~NoGradGuard() { tape_.set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  Tape& tape_;
  bool prev_;
};

// Accumulates g into the gradient of v if v needs one (the common tail of backward rules).
inline void accumulate_grad(Tape& tape, Var v, const float* g) {
  if (v && v->requires_grad) tape.copy_or_add(g, v);
}

}  // namespace mercury
