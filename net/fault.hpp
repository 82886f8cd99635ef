// net/fault.hpp — scheduled fault injection for tests: MERCURY_FAULT.
//
// Contract
// - Syntax: MERCURY_FAULT=rank=R,iter=I,action=A[,seconds=S][,code=C], keys in any order, each
//   once, no spaces. A is one of
//     kill     raise(SIGKILL): the process vanishes without a word (a crashed device)
//     exit     flush stdio, then std::_Exit(C) (C in 0..255, default 3): a rank that gives up
//     stall    raise(SIGSTOP): the whole process freezes, heartbeats stop (a hung device);
//              with seconds=S a helper process sends SIGCONT after S seconds
//     delay    the calling thread sleeps S seconds (seconds= required); other threads run on
//     drop     transport-level: the mesh drops its connections (net/mesh.hpp hook)
//     corrupt  transport-level: the mesh corrupts the next frame it sends (net/mesh.hpp hook)
//   seconds= is accepted only with delay and stall, code= only with exit.
// - parse_fault() is strict: unknown or repeated keys, missing rank/iter/action, bad numbers and
//   parameters that do not apply are FaultSpecError naming the key, the value and what was
//   expected. fault_from_env() returns nullopt when MERCURY_FAULT is unset or empty, and, given
//   the world size, refuses a rank outside it.
// - FaultSpec::fires(rank, iteration) is a pure predicate (exactly that rank and iteration); the
//   caller checks it once per iteration, at the point in the step where the fault belongs.
// - execute_process_fault() carries out the process-level actions (kill, exit, stall, delay) and
//   returns true; for drop and corrupt it does nothing and returns false: the caller hands those
//   to the transport. It announces the fault on stderr first, so test logs show the cause.
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "net/env.hpp"

namespace mercury::net {

inline constexpr char kFaultVar[] = "MERCURY_FAULT";

enum class FaultAction { kill, exit, stall, delay, drop, corrupt };

inline constexpr std::pair<FaultAction, const char*> kFaultActions[] = {
    {FaultAction::kill, "kill"},   {FaultAction::exit, "exit"}, {FaultAction::stall, "stall"},
    {FaultAction::delay, "delay"}, {FaultAction::drop, "drop"}, {FaultAction::corrupt, "corrupt"}};

inline const char* to_string(FaultAction action) {
  for (const auto& [a, name] : kFaultActions)
    if (a == action) return name;
  return "?";
}

struct FaultSpec {
  int rank = 0;
  uint64_t iteration = 0;
  FaultAction action = FaultAction::kill;
  double seconds = 0;  // delay: how long; stall: 0 = forever, else resumed after this long
  int code = 3;        // exit: the exit code

  bool fires(int at_rank, uint64_t at_iteration) const {
    return at_rank == rank && at_iteration == iteration;
  }
};

class FaultSpecError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// `source` names where the text came from in messages ("MERCURY_FAULT='...': ...").
inline FaultSpec parse_fault(std::string_view text, std::string_view source = kFaultVar) {
  const std::string where = std::string(source) + "='" + std::string(text) + "': ";
  const auto fail = [&](const std::string& why) { throw FaultSpecError(where + why); };
  const auto number = [&](std::string_view key, std::string_view value, int64_t lo, int64_t hi) {
    const auto v = detail::to_integer(value);
    if (!v || *v < lo || *v > hi) {
      fail(std::string(key) + "='" + std::string(value) + "': expected an integer in " +
           std::to_string(lo) + ".." + std::to_string(hi));
    }
    return *v;
  };
  if (text.empty()) fail("empty; expected rank=R,iter=I,action=kill|exit|stall|delay|drop|corrupt");
  FaultSpec spec;
  std::optional<std::string_view> rank, iter, action, seconds, code;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string_view item = text.substr(start, comma - start);
    start = comma + 1;
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      fail("expected key=value, found '" + std::string(item) + "'");
    }
    const std::string_view key = item.substr(0, eq), value = item.substr(eq + 1);
    std::optional<std::string_view>* slot = key == "rank"      ? &rank
                                            : key == "iter"    ? &iter
                                            : key == "action"  ? &action
                                            : key == "seconds" ? &seconds
                                            : key == "code"    ? &code
                                                               : nullptr;
    if (slot == nullptr) {
      fail("unknown key '" + std::string(key) + "' (expected rank, iter, action, seconds, code)");
    }
    if (slot->has_value()) fail("key '" + std::string(key) + "' given twice");
    *slot = value;
  }
  std::string missing;
  for (const auto& [name, value] : {std::pair{"rank=R", rank},
                                    {"iter=I", iter},
                                    {"action=kill|exit|stall|delay|drop|corrupt", action}}) {
    if (!value) missing += (missing.empty() ? "" : ", ") + std::string(name);
  }
  if (!missing.empty()) fail("missing " + missing);
  spec.rank = static_cast<int>(number("rank", *rank, 0, kMaxWorldSize - 1));
  spec.iteration = static_cast<uint64_t>(number("iter", *iter, 0, INT64_MAX));
  bool known = false;
  for (const auto& [a, name] : kFaultActions) {
    if (*action == name) {
      spec.action = a;
      known = true;
    }
  }
  if (!known) {
    fail("action='" + std::string(*action) +
         "': expected kill, exit, stall, delay, drop or corrupt");
  }
  const bool takes_seconds = spec.action == FaultAction::delay || spec.action == FaultAction::stall;
  if (seconds && !takes_seconds) {
    fail(std::string("seconds= applies only to action=delay and action=stall, not action=") +
         to_string(spec.action));
  }
  if (code && spec.action != FaultAction::exit) {
    fail(std::string("code= applies only to action=exit, not action=") + to_string(spec.action));
  }
  if (spec.action == FaultAction::delay && !seconds) fail("action=delay needs seconds=S");
  if (seconds) {
    try {
      spec.seconds = detail::parse_seconds("seconds", *seconds);
    } catch (const EnvError& e) {
      fail(e.what());
    }
  }
  if (code) spec.code = static_cast<int>(number("code", *code, 0, 255));
  return spec;
}

// MERCURY_FAULT through getenv_fn; with world_size > 0, a rank >= world_size is an error.
inline std::optional<FaultSpec> fault_from_env(const GetenvFn& getenv_fn, int world_size = 0) {
  const char* text = getenv_fn(kFaultVar);
  if (text == nullptr || *text == '\0') return std::nullopt;
  FaultSpec spec = parse_fault(text);
  if (world_size > 0 && spec.rank >= world_size) {
    throw FaultSpecError(
        std::string(kFaultVar) + "='" + text + "': rank=" + std::to_string(spec.rank) +
        " but WORLD_SIZE=" + std::to_string(world_size) + ": the fault would never fire");
  }
  return spec;
}

inline std::optional<FaultSpec> fault_from_env() {
  return fault_from_env([](const char* name) -> const char* { return std::getenv(name); });
}

// Carries out kill/exit/stall/delay (see the contract); returns false for drop and corrupt.
inline bool execute_process_fault(const FaultSpec& spec) {
  if (spec.action == FaultAction::drop || spec.action == FaultAction::corrupt) return false;
  std::fprintf(stderr, "[fault] rank %d iteration %llu: injecting action=%s\n", spec.rank,
               static_cast<unsigned long long>(spec.iteration), to_string(spec.action));
  std::fflush(nullptr);
  switch (spec.action) {
    case FaultAction::kill:
      ::raise(SIGKILL);
      break;
    case FaultAction::exit:
      std::_Exit(spec.code);
    case FaultAction::stall:
      if (spec.seconds > 0) {
        // The resumer: sleeps, then continues us; dies with us if we are killed meanwhile.
        const pid_t self = ::getpid();
        const pid_t helper = ::fork();
        if (helper == 0) {
          ::prctl(PR_SET_PDEATHSIG, SIGKILL);
          if (::getppid() != self) std::_Exit(0);
          const auto ns = static_cast<long long>(spec.seconds * 1e9);
          timespec t{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
          while (::nanosleep(&t, &t) != 0) {
          }
          ::kill(self, SIGCONT);
          std::_Exit(0);
        }
        ::raise(SIGSTOP);
        if (helper > 0) {  // resumed (by the helper or anyone else): the helper is done
          ::kill(helper, SIGKILL);
          while (::waitpid(helper, nullptr, 0) < 0 && errno == EINTR) {
          }
        }
      } else {
        ::raise(SIGSTOP);
      }
      break;
    case FaultAction::delay:
      std::this_thread::sleep_for(std::chrono::duration<double>(spec.seconds));
      break;
    default:
      break;
  }
  return true;
}

}  // namespace mercury::net
