// net/env.hpp — what a process learns from its environment about the cluster it belongs to.
//
// Contract
// - cluster_env_from(getenv_fn) reads torchrun's conventions and Mercury's knobs through
//   getenv_fn (so tests pass a map; cluster_env() uses ::getenv) and returns one ClusterEnv, the
//   single place these knobs live. A variable set to the empty string counts as unset.
// - Distributed iff RANK or WORLD_SIZE is set. Then RANK, WORLD_SIZE, MASTER_ADDR and
//   MASTER_PORT are all required (the error names every missing one and says that
//   `mercury launch` sets them); LOCAL_RANK is optional and defaults to RANK. With neither RANK
//   nor WORLD_SIZE set the run is single-process (distributed=false, rank 0 of 1) and the other
//   torchrun variables are ignored, as torch does.
// - Every MERCURY_* knob is validated whether or not the run is distributed; units: seconds
//   (decimal, > 0) and bytes (an integer with an optional KiB/MiB/GiB suffix).
// - Security rule (distributed runs of 2+ ranks, as net::Mesh enforces it): a non-loopback
//   MERCURY_BIND or MASTER_ADDR without MERCURY_SECRET_FILE is refused unless MERCURY_INSECURE=1
//   (net/address.hpp decides what is loopback and what a valid MERCURY_RUN_ID is).
//   The secret file is not opened here (this parser is a pure function of the variables);
//   net/auth.hpp's load_secret_file reads it.
// - Every error is an EnvError whose what() names the variable, the value found and what was
//   expected, e.g. "MASTER_PORT='http': expected an integer in 1..65535".
// - Thread-safe (cluster_env() is as thread-safe as ::getenv).
#pragma once

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "net/address.hpp"
#include "net/frame.hpp"

namespace mercury::net {

// Returns the value of an environment variable or nullptr (the shape of ::getenv).
using GetenvFn = std::function<const char*(const char*)>;

// Every variable name, in one place (the launcher sets them by these names).
namespace env_var {
inline constexpr char rank[] = "RANK";
inline constexpr char world_size[] = "WORLD_SIZE";
inline constexpr char local_rank[] = "LOCAL_RANK";
inline constexpr char master_addr[] = "MASTER_ADDR";
inline constexpr char master_port[] = "MASTER_PORT";
inline constexpr char secret_file[] = "MERCURY_SECRET_FILE";
inline constexpr char run_id[] = "MERCURY_RUN_ID";
inline constexpr char connect_timeout[] = "MERCURY_CONNECT_TIMEOUT";
inline constexpr char op_timeout[] = "MERCURY_OP_TIMEOUT";
inline constexpr char heartbeat_interval[] = "MERCURY_HEARTBEAT_INTERVAL";
inline constexpr char heartbeat_timeout[] = "MERCURY_HEARTBEAT_TIMEOUT";
inline constexpr char max_frame[] = "MERCURY_MAX_FRAME";
inline constexpr char chunk[] = "MERCURY_CHUNK";
inline constexpr char bind[] = "MERCURY_BIND";
inline constexpr char insecure[] = "MERCURY_INSECURE";
}  // namespace env_var

inline constexpr int kMaxWorldSize = 65535;
inline constexpr uint64_t kKiB = uint64_t{1} << 10, kMiB = uint64_t{1} << 20,
                          kGiB = uint64_t{1} << 30;

struct ClusterEnv {
  bool distributed = false;  // RANK/WORLD_SIZE set: this process is one rank of a cluster
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr;  // rank 0's host, where the others rendezvous ("" if !distributed)
  uint16_t master_port = 0;
  std::string secret_file;  // file holding the cluster secret ("" = none)
  std::string run_id;       // checked at handshake so two runs never cross ("" = none)
  double connect_timeout_s = 30;
  double op_timeout_s = 60;
  double heartbeat_interval_s = 1;
  double heartbeat_timeout_s = 10;                     // a peer silent this long is declared dead
  uint64_t max_frame_bytes = kDefaultMaxMessageBytes;  // largest message a peer may announce
  uint32_t chunk_bytes = kDefaultChunkBytes;           // messages travel in chunks of at most this
  std::string bind_address = "127.0.0.1";              // address this rank listens on
  bool insecure = false;  // allow non-loopback addresses without a secret
};

class EnvError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace detail {

inline std::string quoted(std::string_view name, std::string_view text) {
  return std::string(name) + "='" + std::string(text) + "'";
}

// A decimal integer (optional '-', no spaces, no '+'), or nullopt.
inline std::optional<int64_t> to_integer(std::string_view text) {
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return v;
}

// An integer in lo..hi; `name` and `text` go into the message.
inline int64_t parse_integer(std::string_view name, std::string_view text, int64_t lo, int64_t hi) {
  const auto v = to_integer(text);
  if (!v || *v < lo || *v > hi) {
    throw EnvError(quoted(name, text) + ": expected an integer in " + std::to_string(lo) + ".." +
                   std::to_string(hi));
  }
  return *v;
}

// A finite decimal number of seconds in (0, max_seconds].
inline double parse_seconds(std::string_view name, std::string_view text,
                            double max_seconds = 1e6) {
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || !std::isfinite(v) ||
      v <= 0 || v > max_seconds) {
    char limit[32];
    std::snprintf(limit, sizeof limit, "%g", max_seconds);
    throw EnvError(quoted(name, text) + ": expected a number of seconds, 0 < s <= " + limit +
                   " (e.g. 30 or 2.5)");
  }
  return v;
}

// "4MiB" when exact, else the byte count.
inline std::string format_bytes(uint64_t bytes) {
  for (const auto& [unit, size] : {std::pair{"GiB", kGiB}, {"MiB", kMiB}, {"KiB", kKiB}}) {
    if (bytes >= size && bytes % size == 0) return std::to_string(bytes / size) + unit;
  }
  return std::to_string(bytes);
}

inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

// An integer byte count with an optional B/KiB/MiB/GiB suffix (one space allowed before it), in
// lo..hi.
inline uint64_t parse_bytes(std::string_view name, std::string_view text, uint64_t lo,
                            uint64_t hi) {
  const std::string range = format_bytes(lo) + ".." + format_bytes(hi);
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  std::string_view suffix = text.substr(digits);
  if (!suffix.empty() && suffix.front() == ' ') suffix.remove_prefix(1);
  uint64_t unit = 0;
  if (suffix.empty() || iequals(suffix, "B")) unit = 1;
  for (const auto& [s, size] : {std::pair{"KiB", kKiB}, {"MiB", kMiB}, {"GiB", kGiB}}) {
    if (iequals(suffix, s)) unit = size;
  }
  for (const char* decimal : {"K", "KB", "M", "MB", "G", "GB"}) {
    if (digits > 0 && iequals(suffix, decimal)) {
      throw EnvError(quoted(name, text) + ": '" + std::string(suffix) +
                     "' is ambiguous; use KiB, MiB or GiB (expected " + range + ")");
    }
  }
  uint64_t count = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + digits, count);
  if (digits == 0 || unit == 0 || ec != std::errc{} || end != text.data() + digits) {
    throw EnvError(quoted(name, text) + ": expected a byte count with an optional KiB, MiB or " +
                   "GiB suffix, in " + range);
  }
  if (count > hi / unit || count * unit < lo) {
    throw EnvError(quoted(name, text) + ": expected " + range);
  }
  return count * unit;
}

}  // namespace detail

// Throws EnvError on any bad, partial or insecure setting (see the contract above).
inline ClusterEnv cluster_env_from(const GetenvFn& getenv_fn) {
  using namespace detail;
  const auto get = [&](const char* name) -> std::optional<std::string_view> {
    const char* v = getenv_fn(name);
    if (v == nullptr || *v == '\0') return std::nullopt;
    return std::string_view(v);
  };
  ClusterEnv env;

  // Torchrun's variables.
  const auto rank = get(env_var::rank), world = get(env_var::world_size);
  const auto local = get(env_var::local_rank), addr = get(env_var::master_addr),
             port = get(env_var::master_port);
  if (rank || world) {
    std::vector<std::string> set, missing;
    for (const auto& [name, value] : {std::pair{env_var::rank, rank},
                                      {env_var::world_size, world},
                                      {env_var::master_addr, addr},
                                      {env_var::master_port, port}}) {
      (value ? set : missing).push_back(name);
    }
    if (!missing.empty()) {
      const auto list = [](const std::vector<std::string>& names) {
        std::string out;
        for (size_t i = 0; i < names.size(); ++i)
          out += (i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + names[i];
        return out;
      };
      throw EnvError(list(set) + (set.size() == 1 ? " is" : " are") + " set but " + list(missing) +
                     (missing.size() == 1 ? " is" : " are") +
                     " not: a distributed run needs RANK, WORLD_SIZE, MASTER_ADDR and "
                     "MASTER_PORT (`mercury launch -n N -- <command>` sets them all; unset "
                     "RANK and WORLD_SIZE for a single-process run)");
    }
    env.distributed = true;
    env.world_size = static_cast<int>(parse_integer(env_var::world_size, *world, 1, kMaxWorldSize));
    const auto check_rank = [&](const char* name, std::string_view text) {
      const auto v = to_integer(text);
      if (!v) throw EnvError(quoted(name, text) + ": expected an integer in 0..WORLD_SIZE-1");
      if (*v < 0 || *v >= env.world_size) {
        throw EnvError(std::string(name) + "=" + std::string(text) +
                       " but WORLD_SIZE=" + std::to_string(env.world_size) +
                       ": expected 0 <= " + name + " < WORLD_SIZE");
      }
      return static_cast<int>(*v);
    };
    env.rank = check_rank(env_var::rank, *rank);
    env.local_rank = local ? check_rank(env_var::local_rank, *local) : env.rank;
    env.master_addr = std::string(*addr);
    const bool printable = std::all_of(addr->begin(), addr->end(), [](char c) {
      return static_cast<unsigned char>(c) > ' ' && c != 0x7f;
    });
    if (!printable || addr->size() > 255) {
      throw EnvError(quoted(env_var::master_addr, *addr) +
                     ": expected a host name or IP address (no spaces, at most 255 bytes)");
    }
    env.master_port = static_cast<uint16_t>(parse_integer(env_var::master_port, *port, 1, 65535));
  }

  // Mercury's knobs.
  if (const auto v = get(env_var::secret_file)) env.secret_file = std::string(*v);
  if (const auto v = get(env_var::run_id)) {
    if (!valid_run_id(*v)) {
      throw EnvError(quoted(env_var::run_id, *v) +
                     ": expected 1..64 characters from A-Z a-z 0-9 . _ -");
    }
    env.run_id = std::string(*v);
  }
  if (const auto v = get(env_var::connect_timeout))
    env.connect_timeout_s = parse_seconds(env_var::connect_timeout, *v);
  if (const auto v = get(env_var::op_timeout))
    env.op_timeout_s = parse_seconds(env_var::op_timeout, *v);
  if (const auto v = get(env_var::heartbeat_interval))
    env.heartbeat_interval_s = parse_seconds(env_var::heartbeat_interval, *v);
  if (const auto v = get(env_var::heartbeat_timeout))
    env.heartbeat_timeout_s = parse_seconds(env_var::heartbeat_timeout, *v);
  if (env.heartbeat_timeout_s <= env.heartbeat_interval_s) {
    char text[160];
    std::snprintf(text, sizeof text,
                  "%s=%g is not greater than %s=%g: a peer would be declared dead between two "
                  "heartbeats",
                  env_var::heartbeat_timeout, env.heartbeat_timeout_s, env_var::heartbeat_interval,
                  env.heartbeat_interval_s);
    throw EnvError(text);
  }
  if (const auto v = get(env_var::max_frame))
    env.max_frame_bytes = parse_bytes(env_var::max_frame, *v, kKiB, 16 * kGiB);
  if (const auto v = get(env_var::chunk))
    env.chunk_bytes =
        static_cast<uint32_t>(parse_bytes(env_var::chunk, *v, kMinChunkBytes, kMaxChunkBytes));
  if (const auto v = get(env_var::bind)) {
    if (!is_ip_address(*v)) {
      throw EnvError(quoted(env_var::bind, *v) +
                     ": expected an IPv4 or IPv6 address to listen on (e.g. 127.0.0.1, 0.0.0.0, "
                     "::1)");
    }
    env.bind_address = std::string(*v);
  }
  if (const auto v = get(env_var::insecure)) {
    if (*v != "0" && *v != "1") throw EnvError(quoted(env_var::insecure, *v) + ": expected 0 or 1");
    env.insecure = *v == "1";
  }
  if (env.distributed && env.world_size > 1 && env.secret_file.empty() && !env.insecure) {
    for (const auto& [name, address] : {std::pair{env_var::bind, env.bind_address},
                                        std::pair{env_var::master_addr, env.master_addr}}) {
      if (is_loopback_address(address)) continue;
      throw EnvError(std::string(name) + "=" + address +
                     " is not a loopback address and MERCURY_SECRET_FILE is not set: anyone who "
                     "can reach the ranks could join the run; set MERCURY_SECRET_FILE to a file "
                     "holding the cluster secret (the same on every device), or "
                     "MERCURY_INSECURE=1 to accept the risk");
    }
  }
  return env;
}

// The ClusterEnv of this process (::getenv).
inline ClusterEnv cluster_env() {
  return cluster_env_from([](const char* name) -> const char* { return std::getenv(name); });
}

// One line for logs: "rank 1/4 (local 1), master 127.0.0.1:29500, bind 127.0.0.1, ...".
inline std::string describe(const ClusterEnv& env) {
  if (!env.distributed) return "single process (RANK/WORLD_SIZE not set)";
  return "rank " + std::to_string(env.rank) + "/" + std::to_string(env.world_size) + " (local " +
         std::to_string(env.local_rank) + "), master " + env.master_addr + ":" +
         std::to_string(env.master_port) + ", bind " + env.bind_address + ", run id " +
         (env.run_id.empty() ? "(none)" : env.run_id) + ", " +
         (!env.secret_file.empty() ? "secret " + env.secret_file
          : env.insecure           ? std::string("INSECURE (no secret)")
                                   : std::string("no secret (loopback)"));
}

}  // namespace mercury::net
