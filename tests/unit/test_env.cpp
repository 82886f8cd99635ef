// The cluster environment (net/env.hpp) and fault schedules (net/fault.hpp): every variable
// good, bad and missing, the loopback/secret rule, strict MERCURY_FAULT parsing, FaultSpec::fires,
// and the process-level fault actions (run in forked children).
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <string>

#include "file_test_support.hpp"
#include "net/env.hpp"
#include "net/fault.hpp"

namespace {

using mercury::net::ClusterEnv;
using mercury::net::EnvError;
using mercury::net::FaultAction;
using mercury::net::FaultSpec;
using mercury::net::FaultSpecError;
using mercury::testing::check_mentions;
using mercury::testing::error_message;
using Vars = std::map<std::string, std::string>;

ClusterEnv env_of(const Vars& vars) {
  return mercury::net::cluster_env_from([&](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

std::string env_error(const Vars& vars) {
  return error_message<EnvError>([&] { env_of(vars); });
}

// A complete distributed environment, as `mercury launch` sets it.
Vars launched(const Vars& extra = {}) {
  Vars v = {{"RANK", "1"},
            {"WORLD_SIZE", "4"},
            {"LOCAL_RANK", "1"},
            {"MASTER_ADDR", "127.0.0.1"},
            {"MASTER_PORT", "29500"}};
  for (const auto& [k, value] : extra) v[k] = value;
  return v;
}

std::string fault_error(const std::string& text) {
  return error_message<FaultSpecError>([&] { mercury::net::parse_fault(text); });
}

}  // namespace

TEST_CASE("no RANK/WORLD_SIZE is a single-process run with every default") {
  const ClusterEnv env = env_of({});
  CHECK_FALSE(env.distributed);
  CHECK(env.rank == 0);
  CHECK(env.world_size == 1);
  CHECK(env.connect_timeout_s == 30);
  CHECK(env.op_timeout_s == 60);
  CHECK(env.heartbeat_interval_s == 1);
  CHECK(env.heartbeat_timeout_s == 10);
  CHECK(env.max_frame_bytes == 256u << 20);
  CHECK(env.chunk_bytes == 1u << 20);
  CHECK(env.bind_address == "127.0.0.1");
  CHECK_FALSE(env.insecure);
  CHECK(env.secret_file.empty());
  CHECK(env.run_id.empty());
  // Torch ignores stray MASTER_* without RANK/WORLD_SIZE, so do we; empty counts as unset.
  CHECK_FALSE(env_of({{"MASTER_ADDR", "10.0.0.1"}, {"LOCAL_RANK", "3"}}).distributed);
  CHECK_FALSE(env_of({{"RANK", ""}, {"WORLD_SIZE", ""}}).distributed);
  CHECK(mercury::net::describe(env).find("single process") != std::string::npos);
}

TEST_CASE("torchrun's variables make a distributed run") {
  const ClusterEnv env =
      env_of(launched({{"MASTER_ADDR", "node0.local"}, {"MERCURY_SECRET_FILE", "/secret"}}));
  CHECK(env.distributed);
  CHECK(env.rank == 1);
  CHECK(env.world_size == 4);
  CHECK(env.local_rank == 1);
  CHECK(env.master_addr == "node0.local");
  CHECK(env.master_port == 29500);
  CHECK(mercury::net::describe(env).find("rank 1/4") != std::string::npos);
  // LOCAL_RANK defaults to RANK.
  Vars no_local = launched({{"RANK", "3"}});
  no_local.erase("LOCAL_RANK");
  CHECK(env_of(no_local).local_rank == 3);
  // A world of one is still distributed (a mesh of one).
  CHECK(env_of(launched({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"LOCAL_RANK", "0"}})).distributed);
}

TEST_CASE("partially set torchrun variables name every missing one and mercury launch") {
  check_mentions(
      env_error({{"RANK", "0"}}),
      {"RANK is set but WORLD_SIZE, MASTER_ADDR and MASTER_PORT are not", "mercury launch"});
  check_mentions(env_error({{"WORLD_SIZE", "2"}, {"MASTER_ADDR", "x"}, {"MASTER_PORT", "1"}}),
                 {"WORLD_SIZE, MASTER_ADDR and MASTER_PORT are set but RANK is not"});
  Vars no_port = launched();
  no_port.erase("MASTER_PORT");
  check_mentions(env_error(no_port), {"but MASTER_PORT is not", "mercury launch -n N"});
}

TEST_CASE("bad rank, world size, local rank, master address and port") {
  check_mentions(env_error(launched({{"RANK", "4"}})),
                 {"RANK=4 but WORLD_SIZE=4: expected 0 <= RANK < WORLD_SIZE"});
  check_mentions(env_error(launched({{"RANK", "-1"}})), {"RANK=-1 but WORLD_SIZE=4"});
  check_mentions(env_error(launched({{"RANK", "one"}})),
                 {"RANK='one': expected an integer in 0..WORLD_SIZE-1"});
  check_mentions(env_error(launched({{"RANK", " 1"}})), {"RANK=' 1'"});
  check_mentions(env_error(launched({{"WORLD_SIZE", "0"}})),
                 {"WORLD_SIZE='0': expected an integer in 1..65535"});
  check_mentions(env_error(launched({{"WORLD_SIZE", "4x"}})), {"WORLD_SIZE='4x'"});
  check_mentions(env_error(launched({{"WORLD_SIZE", "99999999999999999999"}})),
                 {"expected an integer in 1..65535"});
  check_mentions(env_error(launched({{"LOCAL_RANK", "7"}})),
                 {"LOCAL_RANK=7 but WORLD_SIZE=4: expected 0 <= LOCAL_RANK < WORLD_SIZE"});
  check_mentions(env_error(launched({{"MASTER_PORT", "http"}})),
                 {"MASTER_PORT='http': expected an integer in 1..65535"});
  check_mentions(env_error(launched({{"MASTER_PORT", "0"}})), {"MASTER_PORT='0'"});
  check_mentions(env_error(launched({{"MASTER_PORT", "65536"}})), {"MASTER_PORT='65536'"});
  CHECK(env_of(launched({{"MASTER_PORT", "65535"}})).master_port == 65535);
  check_mentions(env_error(launched({{"MASTER_ADDR", "a b"}})),
                 {"MASTER_ADDR='a b': expected a host name or IP address"});
}

TEST_CASE("timeouts and heartbeats take seconds > 0; the timeout must exceed the interval") {
  const ClusterEnv env = env_of({{"MERCURY_CONNECT_TIMEOUT", "2.5"},
                                 {"MERCURY_OP_TIMEOUT", "120"},
                                 {"MERCURY_HEARTBEAT_INTERVAL", "0.25"},
                                 {"MERCURY_HEARTBEAT_TIMEOUT", "3"}});
  CHECK(env.connect_timeout_s == 2.5);
  CHECK(env.op_timeout_s == 120);
  CHECK(env.heartbeat_interval_s == 0.25);
  CHECK(env.heartbeat_timeout_s == 3);
  for (const char* name : {"MERCURY_CONNECT_TIMEOUT", "MERCURY_OP_TIMEOUT",
                           "MERCURY_HEARTBEAT_INTERVAL", "MERCURY_HEARTBEAT_TIMEOUT"}) {
    for (const char* bad : {"0", "-1", "abc", "1s", "nan", "inf", "1e9"}) {
      CAPTURE(name);
      CAPTURE(bad);
      check_mentions(env_error({{name, bad}}),
                     {std::string(name) + "='" + bad + "'", "expected a number of seconds"});
    }
  }
  check_mentions(
      env_error({{"MERCURY_HEARTBEAT_INTERVAL", "10"}}),
      {"MERCURY_HEARTBEAT_TIMEOUT=10 is not greater than MERCURY_HEARTBEAT_INTERVAL=10"});
}

TEST_CASE("frame and chunk sizes accept KiB/MiB/GiB and are range-checked") {
  CHECK(env_of({{"MERCURY_MAX_FRAME", "64MiB"}}).max_frame_bytes == 64u << 20);
  CHECK(env_of({{"MERCURY_MAX_FRAME", "1 GiB"}}).max_frame_bytes == 1u << 30);
  CHECK(env_of({{"MERCURY_MAX_FRAME", "2048"}}).max_frame_bytes == 2048);
  CHECK(env_of({{"MERCURY_MAX_FRAME", "4096B"}}).max_frame_bytes == 4096);
  CHECK(env_of({{"MERCURY_CHUNK", "64kib"}}).chunk_bytes == 64u << 10);
  CHECK(env_of({{"MERCURY_CHUNK", "4MiB"}}).chunk_bytes == 4u << 20);
  check_mentions(env_error({{"MERCURY_CHUNK", "8MiB"}}),
                 {"MERCURY_CHUNK='8MiB': expected 64KiB..4MiB"});
  check_mentions(env_error({{"MERCURY_CHUNK", "1000"}}), {"expected 64KiB..4MiB"});
  check_mentions(env_error({{"MERCURY_CHUNK", "1MB"}}),
                 {"MERCURY_CHUNK='1MB'", "ambiguous", "KiB, MiB or GiB"});
  check_mentions(env_error({{"MERCURY_MAX_FRAME", "lots"}}),
                 {"MERCURY_MAX_FRAME='lots': expected a byte count"});
  check_mentions(env_error({{"MERCURY_MAX_FRAME", "1.5MiB"}}), {"expected a byte count"});
  check_mentions(env_error({{"MERCURY_MAX_FRAME", "-1"}}), {"expected a byte count"});
  check_mentions(env_error({{"MERCURY_MAX_FRAME", "99999999999GiB"}}), {"expected 1KiB..16GiB"});
}

TEST_CASE("run id, secret file, bind address and insecure flag") {
  const ClusterEnv env = env_of({{"MERCURY_RUN_ID", "run-7.a_b"},
                                 {"MERCURY_SECRET_FILE", "/etc/mercury/secret"},
                                 {"MERCURY_BIND", "::1"},
                                 {"MERCURY_INSECURE", "0"}});
  CHECK(env.run_id == "run-7.a_b");
  CHECK(env.secret_file == "/etc/mercury/secret");
  CHECK(env.bind_address == "::1");
  CHECK_FALSE(env.insecure);
  check_mentions(env_error({{"MERCURY_RUN_ID", "a b"}}),
                 {"MERCURY_RUN_ID='a b': expected 1..64 characters"});
  check_mentions(env_error({{"MERCURY_RUN_ID", std::string(65, 'x')}}), {"1..64 characters"});
  check_mentions(env_error({{"MERCURY_BIND", "eth0"}}),
                 {"MERCURY_BIND='eth0': expected an IPv4 or IPv6 address"});
  check_mentions(env_error({{"MERCURY_BIND", "300.1.1.1"}}), {"MERCURY_BIND='300.1.1.1'"});
  check_mentions(env_error({{"MERCURY_BIND", "localhost"}}), {"expected an IPv4 or IPv6"});
  check_mentions(env_error({{"MERCURY_INSECURE", "yes"}}),
                 {"MERCURY_INSECURE='yes': expected 0 or 1"});
}

TEST_CASE("a non-loopback bind or master needs a secret file or MERCURY_INSECURE=1") {
  for (const char* loopback : {"127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"}) {
    CAPTURE(loopback);
    CHECK(env_of(launched({{"MERCURY_BIND", loopback}})).bind_address == loopback);
    CHECK(env_of(launched({{"MASTER_ADDR", loopback}})).master_addr == loopback);
  }
  CHECK(env_of(launched({{"MASTER_ADDR", "localhost"}})).master_addr == "localhost");
  for (const char* open : {"0.0.0.0", "192.168.1.5", "::", "fe80::1"}) {
    CAPTURE(open);
    check_mentions(env_error(launched({{"MERCURY_BIND", open}})),
                   {std::string("MERCURY_BIND=") + open + " is not a loopback address",
                    "MERCURY_SECRET_FILE", "MERCURY_INSECURE=1"});
  }
  CHECK(
      env_of(launched({{"MERCURY_BIND", "0.0.0.0"}, {"MERCURY_SECRET_FILE", "/s"}})).secret_file ==
      "/s");
  const ClusterEnv insecure =
      env_of(launched({{"MERCURY_BIND", "0.0.0.0"}, {"MERCURY_INSECURE", "1"}}));
  CHECK(insecure.insecure);
  CHECK(mercury::net::describe(insecure).find("INSECURE") != std::string::npos);
  check_mentions(env_error(launched({{"MASTER_ADDR", "10.0.0.1"}})),
                 {"MASTER_ADDR=10.0.0.1 is not a loopback address", "MERCURY_SECRET_FILE",
                  "MERCURY_INSECURE=1"});
  check_mentions(env_error(launched({{"MASTER_ADDR", "node0"}})), {"MASTER_ADDR=node0"});
  CHECK(env_of(launched({{"MASTER_ADDR", "10.0.0.1"}, {"MERCURY_INSECURE", "1"}})).insecure);
  // A single process, or a world of one, talks to nobody: the rule does not apply.
  CHECK(env_of({{"MERCURY_BIND", "0.0.0.0"}}).bind_address == "0.0.0.0");
  CHECK(env_of(launched({{"RANK", "0"},
                         {"WORLD_SIZE", "1"},
                         {"LOCAL_RANK", "0"},
                         {"MERCURY_BIND", "0.0.0.0"},
                         {"MASTER_ADDR", "10.0.0.1"}}))
            .distributed);
}

TEST_CASE("fault specs parse in any key order with defaults") {
  FaultSpec f = mercury::net::parse_fault("rank=2,iter=5,action=kill");
  CHECK(f.rank == 2);
  CHECK(f.iteration == 5);
  CHECK(f.action == FaultAction::kill);
  f = mercury::net::parse_fault("action=exit,iter=0,rank=0");
  CHECK(f.action == FaultAction::exit);
  CHECK(f.code == 3);
  CHECK(mercury::net::parse_fault("rank=1,iter=2,action=exit,code=0").code == 0);
  CHECK(mercury::net::parse_fault("rank=1,iter=2,action=exit,code=255").code == 255);
  f = mercury::net::parse_fault("rank=3,iter=9,action=delay,seconds=0.5");
  CHECK(f.action == FaultAction::delay);
  CHECK(f.seconds == 0.5);
  CHECK(mercury::net::parse_fault("rank=0,iter=1,action=stall").seconds == 0);
  CHECK(mercury::net::parse_fault("rank=0,iter=1,action=stall,seconds=2").seconds == 2);
  CHECK(mercury::net::parse_fault("rank=0,iter=1,action=drop").action == FaultAction::drop);
  CHECK(mercury::net::parse_fault("rank=0,iter=1,action=corrupt").action == FaultAction::corrupt);
  CHECK(mercury::net::parse_fault("rank=0,iter=9223372036854775807,action=kill").iteration ==
        uint64_t{INT64_MAX});
}

TEST_CASE("bad fault specs are refused naming the key and what was expected") {
  check_mentions(fault_error(""), {"MERCURY_FAULT=''", "empty"});
  check_mentions(fault_error("rank=1,iter=2"),
                 {"MERCURY_FAULT='rank=1,iter=2'", "missing action="});
  check_mentions(fault_error("action=kill"), {"missing rank=R, iter=I"});
  check_mentions(fault_error("rank=1,iter=2,action=explode"),
                 {"action='explode': expected kill, exit, stall, delay, drop or corrupt"});
  check_mentions(fault_error("rank=1,iter=2,action=kill,when=now"),
                 {"unknown key 'when'", "rank, iter, action, seconds, code"});
  check_mentions(fault_error("rank=1,rank=2,iter=2,action=kill"), {"key 'rank' given twice"});
  check_mentions(fault_error("rank=1,iter=2,action=kill,"), {"expected key=value, found ''"});
  check_mentions(fault_error("rank=1,iter=2,action"), {"expected key=value, found 'action'"});
  check_mentions(fault_error("rank=-1,iter=2,action=kill"),
                 {"rank='-1': expected an integer in 0..65534"});
  check_mentions(fault_error("rank=1,iter=x,action=kill"), {"iter='x': expected an integer"});
  check_mentions(fault_error("rank=1,iter=18446744073709551615,action=kill"),
                 {"iter='18446744073709551615': expected an integer in 0..9223372036854775807"});
  check_mentions(fault_error("rank=1,iter=2,action=kill,seconds=1"),
                 {"seconds= applies only to action=delay and action=stall, not action=kill"});
  check_mentions(fault_error("rank=1,iter=2,action=delay,code=4"),
                 {"code= applies only to action=exit, not action=delay"});
  check_mentions(fault_error("rank=1,iter=2,action=delay"), {"action=delay needs seconds=S"});
  check_mentions(fault_error("rank=1,iter=2,action=delay,seconds=0"), {"seconds='0'"});
  check_mentions(fault_error("rank=1,iter=2,action=exit,code=256"),
                 {"code='256': expected an integer in 0..255"});
  check_mentions(fault_error("rank=1, iter=2,action=kill"), {"unknown key ' iter'"});
}

TEST_CASE("MERCURY_FAULT: unset or empty is no fault; a rank outside the world is refused") {
  const auto lookup = [](const char* value) {
    return [value](const char* name) -> const char* {
      return std::string(name) == "MERCURY_FAULT" ? value : nullptr;
    };
  };
  CHECK_FALSE(mercury::net::fault_from_env(lookup(nullptr)).has_value());
  CHECK_FALSE(mercury::net::fault_from_env(lookup("")).has_value());
  const auto f = mercury::net::fault_from_env(lookup("rank=3,iter=1,action=drop"), 4);
  REQUIRE(f.has_value());
  CHECK(f->action == FaultAction::drop);
  check_mentions(error_message<FaultSpecError>(
                     [&] { mercury::net::fault_from_env(lookup("rank=4,iter=1,action=drop"), 4); }),
                 {"rank=4 but WORLD_SIZE=4", "never fire"});
  check_mentions(error_message<FaultSpecError>(
                     [&] { mercury::net::fault_from_env(lookup("rank=1,iter=1,action=nope")); }),
                 {"MERCURY_FAULT='rank=1,iter=1,action=nope'"});
}

TEST_CASE("FaultSpec::fires at exactly its rank and iteration") {
  const FaultSpec f = mercury::net::parse_fault("rank=2,iter=5,action=kill");
  CHECK(f.fires(2, 5));
  CHECK_FALSE(f.fires(2, 4));
  CHECK_FALSE(f.fires(2, 6));
  CHECK_FALSE(f.fires(1, 5));
  CHECK_FALSE(f.fires(3, 5));
  CHECK(mercury::net::parse_fault("rank=0,iter=0,action=exit").fires(0, 0));
}

namespace {

// Runs the fault in a forked child and returns its wait status (and how long it took).
int run_fault_in_child(const std::string& spec, double* seconds = nullptr) {
  const FaultSpec f = mercury::net::parse_fault(spec);
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const bool handled = mercury::net::execute_process_fault(f);
    std::_Exit(handled ? 42 : 43);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, WUNTRACED) == pid);
  if (WIFSTOPPED(status)) {  // stall: frozen until someone continues it
    ::kill(pid, SIGCONT);
    REQUIRE(::waitpid(pid, &status, 0) == pid);
  }
  if (seconds) {
    *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  return status;
}

}  // namespace

TEST_CASE(
    "process faults: kill, exit with its code, stall, delay; drop/corrupt are left to the "
    "transport") {
  int status = run_fault_in_child("rank=0,iter=0,action=kill");
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  status = run_fault_in_child("rank=0,iter=0,action=exit");
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 3);
  status = run_fault_in_child("rank=0,iter=0,action=exit,code=9");
  CHECK(WEXITSTATUS(status) == 9);
  status = run_fault_in_child("rank=0,iter=0,action=stall");  // continued by the test
  CHECK(WEXITSTATUS(status) == 42);
  double took = 0;
  status = run_fault_in_child("rank=0,iter=0,action=delay,seconds=0.2", &took);
  CHECK(WEXITSTATUS(status) == 42);
  CHECK(took >= 0.2);
  status = run_fault_in_child("rank=0,iter=0,action=drop");
  CHECK(WEXITSTATUS(status) == 43);
  status = run_fault_in_child("rank=0,iter=0,action=corrupt");
  CHECK(WEXITSTATUS(status) == 43);
}

TEST_CASE("a timed stall resumes by itself") {
  const FaultSpec f = mercury::net::parse_fault("rank=0,iter=0,action=stall,seconds=0.3");
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) std::_Exit(mercury::net::execute_process_fault(f) ? 42 : 43);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, WUNTRACED) == pid);
  CHECK(WIFSTOPPED(status));  // frozen first ...
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(WIFEXITED(status));  // ... then continued by its helper, with nobody's help
  CHECK(WEXITSTATUS(status) == 42);
  CHECK(took >= 0.3);
}
