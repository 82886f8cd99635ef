// Transport cost on loopback TCP: net::Mesh goodput against a raw blocking-socket probe, and the
// per-iteration overhead of BSP data-parallel training (dist::BspSync over a Mesh) for the
// reference CNN. Every ratio's baseline is measured in the same run:
//
//   BM_mesh_goodput/<chunk KiB>   rank 0 sends 16 MiB messages back to back to rank 1 (two Mesh
//       objects of this process, MeshConfig::chunk_bytes = chunk, unshaped). 16 MiB stands for
//       one rank's gradient push of a mid-size model (ResNet-18's 11.2 M floats are 45 MB: at
//       world 2 each rank pushes ~22 MB, at world 3 ~15 MB); 64 KiB / 1 MiB / 4 MiB chunks give
//       256 / 16 / 4 frames per message. The sender keeps at most kWindow messages queued
//       (polling Transport::stats().messages_sent every 0.5 ms: a message takes ~8 ms on
//       loopback, so the queue never runs dry), so memory stays bounded; goodput counts
//       payload bytes from the first send() to the receiver's last recv() returning, and so
//       includes both CRC32C passes (sender and receiver, every byte of every message),
//       framing, chunking and reassembly. Two sender APIs, each a fresh pair of meshes:
//         mesh       send(SharedPayload): one immutable 16 MiB buffer queued again and again
//                    without a copy — what the raw probe does with its one buffer, and what
//                    dist::BspSync uses for its parameter broadcast and initial parameters;
//         mesh_copy  send(span) from one plain buffer: every send copies the bytes into a pooled
//                    buffer (hashing each piece as it copies) — BspSync's gradient push, whose
//                    bytes it does not own.
//       The receiver drops each Message, which returns its buffer to the mesh's pool, as
//       BspSync does after reducing or copying it out.
//       Baseline: the raw probe — a plain blocking Asio TCP connection on loopback (TCP_NODELAY),
//       one writer thread write()-ing the same 16 MiB messages in the same chunk sizes from one
//       buffer, one reader thread read()-ing each chunk into a 16 MiB buffer. The probe runs
//       first for >= 1 s of whole messages; the mesh then moves exactly as many bytes.
//       Counters: raw_goodput_MBps, mesh_goodput_MBps, mesh_over_raw (target >= 0.80),
//       mesh_copy_goodput_MBps, mesh_copy_over_raw, MB moved, and raw/mesh/mesh_copy
//       _cpu_s_per_GB: process CPU seconds (all threads) per GB moved, which the load on a shared
//       machine inflates far less than wall time.
//       Three repetitions (fresh sockets and meshes each); read the _median rows.
//   BM_crc32c                     io::crc32c throughput on 1 MiB, single thread: the mesh
//       checksums every payload byte twice (sender, receiver), so this bounds its goodput.
//   BM_bsp_overhead/<local batch> the reference CNN ("cnn", 1x28x28, 10 classes, Adam, synthetic
//       data, threads = 1) at a per-rank batch of <local batch> (32: the Trainer's split of the
//       default global batch 64 over 2 ranks):
//       (a) single device: kSteps of zero_grad + Engine::grad + Optimizer::step;
//       (b) two ranks as threads, each its own model, Engine and Mesh (loopback, unshaped,
//           default 1 MiB chunks), kSteps of zero_grad + Engine::grad + BspSync::step.
//       Per step, averaged over both ranks (after kWarmup steps, which are not counted):
//         step_ms     wall time of one loop iteration of (b)
//         compute_ms  zero_grad + forward + backward, timed in (b)'s own loop (so contention
//                     between the two ranks on the shared cores is not billed to the runtime)
//         update_ms, comm_ms, idle_ms   BspSync::timing() deltas (see mercury/dist/bsp.hpp)
//         wire_ms     payload bytes this rank received per step / the raw probe's goodput for
//                     messages of one shard's size (measured in the same iteration, >= 1 s)
//         overhead_ms = step_ms - compute_ms - update_ms - wire_ms  (= comm + idle - wire, plus
//                     loop residue): what the runtime costs beyond the math and the bytes
//         overhead_idle_free_ms = overhead_ms - idle_ms: the same without time spent waiting
//                     for the peer to produce its data (BSP skew between the ranks)
//         single_step_ms, single_compute_ms, single_optim_ms  (a)'s figures, and
//         overhead_over_single = overhead_ms / single_step_ms.
// Runs in ~60 s: every case is a single timed iteration.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "loopback_link.hpp"
#include "mercury/base/clock.hpp"
#include "mercury/mercury.hpp"
#include "net/mesh.hpp"

namespace {

using namespace mercury;
using Clock = std::chrono::steady_clock;
using asio::ip::tcp;

constexpr std::size_t kMessageBytes = std::size_t{16} << 20;
constexpr double kMinSeconds = 1.0;
constexpr uint64_t kWindow = 4;  // mesh messages queued at most by the goodput sender
constexpr uint8_t kData = net::kFirstAppType;
constexpr int kWarmup = 5, kSteps = 100;

using mercury::base::seconds_between;

std::vector<std::byte> pattern(std::size_t n) {
  std::vector<std::byte> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = std::byte((i * 131 + (i >> 11)) & 0xFF);
  return out;
}

using mercury::bench::LoopbackLink;

struct Transfer {
  uint64_t messages = 0;
  uint64_t bytes = 0;
  double seconds = 0;
  double cpu_s = 0;  // process CPU time (all threads) spent on the transfer
  double mbps() const { return seconds > 0 ? static_cast<double>(bytes) / seconds / 1e6 : 0; }
  double cpu_s_per_gb() const { return bytes ? cpu_s / (static_cast<double>(bytes) / 1e9) : 0; }
};

// Raw probe: one writer thread writes `message_bytes` messages in `chunk_bytes` writes until
// `min_seconds` have passed (whole messages); one reader thread reads them chunk by chunk.
// Timed from the first write to the reader's last byte.
Transfer raw_probe(std::size_t message_bytes, std::size_t chunk_bytes, double min_seconds) {
  LoopbackLink link;
  const std::vector<std::byte> src = pattern(message_bytes);
  std::vector<std::byte> dst(message_bytes);
  Transfer t;
  Clock::time_point start, last;
  uint64_t received = 0;
  const double cpu0 = train::process_cpu_seconds();
  std::thread reader([&] {
    asio::error_code ec;
    for (;;) {
      for (std::size_t off = 0; off < message_bytes;) {
        const std::size_t n = std::min(chunk_bytes, message_bytes - off);
        asio::read(link.in, asio::buffer(dst.data() + off, n), ec);
        if (ec) return;  // EOF once the writer is done
        off += n;
      }
      last = Clock::now();
      ++received;
    }
  });
  std::thread writer([&] {
    start = Clock::now();
    do {
      for (std::size_t off = 0; off < message_bytes;) {
        const std::size_t n = std::min(chunk_bytes, message_bytes - off);
        asio::write(link.out, asio::buffer(src.data() + off, n));
        off += n;
      }
      ++t.messages;
    } while (seconds_between(start, Clock::now()) < min_seconds);
    link.out.shutdown(tcp::socket::shutdown_send);
  });
  writer.join();
  reader.join();
  t.cpu_s = train::process_cpu_seconds() - cpu0;
  if (received != t.messages) throw std::runtime_error("raw probe: lost messages");
  t.bytes = t.messages * message_bytes;
  t.seconds = seconds_between(start, last);
  return t;
}

net::MeshConfig mesh_config(int rank, uint16_t master_port, uint32_t chunk_bytes) {
  net::MeshConfig c;
  c.rank = rank;
  c.world = 2;
  c.master_port = master_port;
  c.run_id = "bench-net";
  c.chunk_bytes = chunk_bytes;
  c.connect_timeout_s = 20;
  c.op_timeout_s = 30;
  return c;
}

// Runs body(r) on one thread per rank; rethrows the first exception.
void on_both_ranks(const std::function<void(int)>& body) {
  std::array<std::exception_ptr, 2> errors;
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      try {
        body(r);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// Two started meshes on loopback (rank 0 on a free port).
std::array<std::unique_ptr<net::Mesh>, 2> connected_pair(uint32_t chunk_bytes, uint64_t plan_hash,
                                                         uint64_t layout_hash) {
  std::array<std::unique_ptr<net::Mesh>, 2> m;
  for (int r = 0; r < 2; ++r) {
    net::MeshConfig c = mesh_config(r, r == 0 ? 0 : m[0]->port(), chunk_bytes);
    c.plan_hash = plan_hash;
    c.layout_hash = layout_hash;
    m[r] = std::make_unique<net::Mesh>(std::move(c));
  }
  on_both_ranks([&](int r) { m[r]->start(); });
  return m;
}

void close_pair(std::array<std::unique_ptr<net::Mesh>, 2>& m) {
  on_both_ranks([&](int r) { m[r]->close(net::deadline_in(30)); });
}

enum class SendApi { shared, copy };

// Rank 0 sends `messages` messages of `message_bytes` to rank 1 over a fresh mesh.
Transfer mesh_transfer(std::size_t message_bytes, uint32_t chunk_bytes, uint64_t messages,
                       SendApi api) {
  auto m = connected_pair(chunk_bytes, 0, 0);
  const std::vector<std::byte> payload = pattern(message_bytes);
  const net::SharedPayload shared =
      std::make_shared<const net::Payload>(net::Payload::copy_of(payload));
  Clock::time_point start, last;
  const double cpu0 = train::process_cpu_seconds();
  on_both_ranks([&](int r) {
    if (r == 0) {
      start = Clock::now();
      for (uint64_t i = 0; i < messages; ++i) {
        while (i - m[0]->stats(1).messages_sent >= kWindow)
          std::this_thread::sleep_for(std::chrono::microseconds(500));
        if (api == SendApi::shared) {
          m[0]->send(1, kData, 0, i, shared);
        } else {
          m[0]->send(1, kData, 0, i, payload);
        }
      }
      m[0]->flush(net::deadline_in(60));
    } else {
      for (uint64_t i = 0; i < messages; ++i) {
        const net::Message msg = m[1]->recv(0, kData, 0, i, net::deadline_in(60));
        if (msg.payload.size() != message_bytes ||
            msg.payload[message_bytes / 2] != payload[message_bytes / 2])
          throw std::runtime_error("mesh: wrong message");
      }
      last = Clock::now();
    }
  });
  const double cpu_s = train::process_cpu_seconds() - cpu0;
  close_pair(m);
  Transfer t;
  t.cpu_s = cpu_s;
  t.messages = messages;
  t.bytes = messages * message_bytes;
  t.seconds = seconds_between(start, last);
  return t;
}

void BM_mesh_goodput(benchmark::State& state) {
  const auto chunk = static_cast<uint32_t>(state.range(0)) << 10;
  Transfer raw, mesh, copy;
  for (auto _ : state) {
    try {
      raw = raw_probe(kMessageBytes, chunk, kMinSeconds);
      mesh = mesh_transfer(kMessageBytes, chunk, raw.messages, SendApi::shared);
      copy = mesh_transfer(kMessageBytes, chunk, raw.messages, SendApi::copy);
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      return;
    }
  }
  state.counters["raw_goodput_MBps"] = raw.mbps();
  state.counters["mesh_goodput_MBps"] = mesh.mbps();
  state.counters["mesh_over_raw"] = mesh.mbps() / raw.mbps();
  state.counters["mesh_copy_goodput_MBps"] = copy.mbps();
  state.counters["mesh_copy_over_raw"] = copy.mbps() / raw.mbps();
  state.counters["MB_moved"] = static_cast<double>(raw.bytes) / 1e6;
  state.counters["mesh_s"] = mesh.seconds;
  state.counters["raw_cpu_s_per_GB"] = raw.cpu_s_per_gb();
  state.counters["mesh_cpu_s_per_GB"] = mesh.cpu_s_per_gb();
  state.counters["mesh_copy_cpu_s_per_GB"] = copy.cpu_s_per_gb();
}

void BM_crc32c(benchmark::State& state) {
  const std::vector<std::byte> buffer = pattern(std::size_t{1} << 20);
  for (auto _ : state) benchmark::DoNotOptimize(io::crc32c(buffer.data(), buffer.size()));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(buffer.size()));
}

// One model replica with its synthetic batch.
struct Replica {
  std::unique_ptr<nn::Model> model;
  std::unique_ptr<nn::Engine> engine;
  std::vector<float> x;
  std::vector<int32_t> y;
  Replica(int64_t batch, uint64_t data_seed) {
    model = models::make_model("cnn", Shape{1, 28, 28}, 10, 1);
    engine = std::make_unique<nn::Engine>(*model, data_seed);
    x.resize(static_cast<std::size_t>(batch * 784));
    y.resize(static_cast<std::size_t>(batch));
    std::mt19937 rng(static_cast<uint32_t>(data_seed));
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (float& v : x) v = n(rng);
    for (int64_t i = 0; i < batch; ++i) y[i] = static_cast<int32_t>((i + data_seed) % 10);
  }
  void compute(int64_t batch) {
    model->params.zero_grad();
    benchmark::DoNotOptimize(engine->grad(x.data(), y.data(), nullptr, batch));
  }
};

struct SingleFigures {
  double step_ms = 0, compute_ms = 0, optim_ms = 0;
};

SingleFigures single_device(int64_t batch) {
  Replica rep(batch, 1);
  optim::Optimizer adam(optim::OptimizerConfig{}, rep.model->params.size());
  double compute = 0, optim = 0;
  const auto step = [&] {
    const auto t0 = Clock::now();
    rep.compute(batch);
    const auto t1 = Clock::now();
    adam.step(rep.model->params.values(), rep.model->params.grads(), 1e-3f);
    const auto t2 = Clock::now();
    compute += seconds_between(t0, t1);
    optim += seconds_between(t1, t2);
  };
  for (int i = 0; i < kWarmup; ++i) step();
  compute = optim = 0;
  const auto start = Clock::now();
  for (int i = 0; i < kSteps; ++i) step();
  const double wall = seconds_between(start, Clock::now());
  return {wall / kSteps * 1e3, compute / kSteps * 1e3, optim / kSteps * 1e3};
}

struct RankFigures {
  double step_s = 0, compute_s = 0;
  dist::SyncTiming sync;  // over the timed steps
};

void BM_bsp_overhead(benchmark::State& state) {
  thread_pool().set_threads(1);
  const int64_t batch = state.range(0);
  SingleFigures single;
  std::array<RankFigures, 2> ranks;
  Transfer probe;
  for (auto _ : state) {
    try {
      single = single_device(batch);
      std::array<std::unique_ptr<Replica>, 2> reps;
      for (int r = 0; r < 2; ++r) reps[r] = std::make_unique<Replica>(batch, 1 + r);
      const dist::ShardPlan plan(reps[0]->model->params.size(), 2);
      // Wire baseline: raw messages of one shard's size, one write each (it fits a 1 MiB chunk).
      const auto shard_bytes = static_cast<std::size_t>(plan.max_size()) * sizeof(float);
      probe = raw_probe(shard_bytes, net::kDefaultChunkBytes, kMinSeconds);
      auto m = connected_pair(net::kDefaultChunkBytes, plan.hash(),
                              reps[0]->model->params.layout_hash());
      on_both_ranks([&](int r) {
        Replica& rep = *reps[r];
        dist::BspSync bsp(*m[r], plan, rep.model->params, optim::OptimizerConfig{}, 30);
        bsp.broadcast_initial_params(0);
        int64_t it = 1;
        for (int i = 0; i < kWarmup; ++i, ++it) {
          rep.compute(batch);
          bsp.step(1e-3f, it);
        }
        const dist::SyncTiming before = bsp.timing();
        double compute = 0;
        const auto start = Clock::now();
        for (int i = 0; i < kSteps; ++i, ++it) {
          const auto t0 = Clock::now();
          rep.compute(batch);
          compute += seconds_between(t0, Clock::now());
          bsp.step(1e-3f, it);
        }
        RankFigures& f = ranks[r];
        f.step_s = seconds_between(start, Clock::now()) / kSteps;
        f.compute_s = compute / kSteps;
        const dist::SyncTiming& after = bsp.timing();
        f.sync.steps = after.steps - before.steps;
        f.sync.comm_s = (after.comm_s - before.comm_s) / kSteps;
        f.sync.idle_s = (after.idle_s - before.idle_s) / kSteps;
        f.sync.update_s = (after.update_s - before.update_s) / kSteps;
        f.sync.bytes_sent = (after.bytes_sent - before.bytes_sent) / kSteps;
        f.sync.bytes_received = (after.bytes_received - before.bytes_received) / kSteps;
        bsp.check_replicas(it);  // the replicas must agree bit for bit
      });
      close_pair(m);
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      return;
    }
  }
  const auto mean = [&](auto field) { return 1e3 * (field(ranks[0]) + field(ranks[1])) / 2; };
  const double step = mean([](const RankFigures& f) { return f.step_s; });
  const double compute = mean([](const RankFigures& f) { return f.compute_s; });
  const double update = mean([](const RankFigures& f) { return f.sync.update_s; });
  const double comm = mean([](const RankFigures& f) { return f.sync.comm_s; });
  const double idle = mean([](const RankFigures& f) { return f.sync.idle_s; });
  const double received =
      (static_cast<double>(ranks[0].sync.bytes_received + ranks[1].sync.bytes_received)) / 2;
  const double wire = received / (probe.mbps() * 1e6) * 1e3;
  const double overhead = step - compute - update - wire;
  state.counters["single_step_ms"] = single.step_ms;
  state.counters["single_compute_ms"] = single.compute_ms;
  state.counters["single_optim_ms"] = single.optim_ms;
  state.counters["step_ms"] = step;
  state.counters["compute_ms"] = compute;
  state.counters["update_ms"] = update;
  state.counters["comm_ms"] = comm;
  state.counters["idle_ms"] = idle;
  state.counters["KB_recv_per_step"] = received / 1e3;
  state.counters["raw_probe_MBps"] = probe.mbps();
  state.counters["wire_ms"] = wire;
  state.counters["overhead_ms"] = overhead;
  state.counters["overhead_idle_free_ms"] = overhead - idle;
  state.counters["overhead_over_single"] = overhead / single.step_ms;
}

}  // namespace

BENCHMARK(BM_mesh_goodput)
    ->Arg(64)
    ->Arg(1024)
    ->Arg(4096)
    ->Iterations(1)
    ->Repetitions(3)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_crc32c)->MinTime(0.3)->UseRealTime();
BENCHMARK(BM_bsp_overhead)->Arg(32)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
