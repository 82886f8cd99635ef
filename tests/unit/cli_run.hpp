// Running the real `mercury` binary from a test: its combined output and exit code.
#pragma once

#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

namespace mercury::testing {

// Through qemu in cross builds (MERCURY_EMULATOR is empty otherwise).
inline const std::string kMercury =
    std::string(MERCURY_EMULATOR) + " " + std::string(MERCURY_BINARY_DIR) + "/tools/mercury";

// The same as an argv prefix (emulator words, then the binary), for spawn().
inline std::vector<std::string> mercury_command() {
  std::vector<std::string> argv;
  std::istringstream emulator(MERCURY_EMULATOR);
  for (std::string word; emulator >> word;) argv.push_back(word);
  argv.push_back(std::string(MERCURY_BINARY_DIR) + "/tools/mercury");
  return argv;
}

struct CliResult {
  int code;
  std::string output;  // stdout + stderr
};

// `mercury ARGS` through the shell; code 128 when it did not exit normally.
inline CliResult run_mercury(const std::string& args) {
  const std::string cmd = kMercury + " " + args + " 2>&1";
  CliResult r{-1, ""};
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  return r;
}

}  // namespace mercury::testing
