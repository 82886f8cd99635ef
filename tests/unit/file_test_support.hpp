// Helpers for tests that create files: a self-cleaning temp directory, whole-file read/write, and
// capturing an expected exception's message so tests can check that it names the key facts, and
// reading a metrics file's events.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mercury::testing {

// A fresh directory under the system temp dir, removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("mercury-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }

  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(path_)) {
      names.push_back(entry.path().filename().string());
    }
    return names;
  }

 private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Runs `action`, requires it to throw `Error`, and returns the message ("" if it did not throw).
template <typename Error, typename Action>
std::string error_message(Action&& action) {
  try {
    action();
  } catch (const Error& error) {
    return error.what();
  }
  FAIL("expected an exception, none was thrown");
  return "";
}

// Checks that `message` contains every fragment, reporting the whole message on failure.
inline void check_mentions(const std::string& message,
                           std::initializer_list<std::string> fragments) {
  for (const std::string& fragment : fragments) {
    CHECK_MESSAGE(message.find(fragment) != std::string::npos,
                  "message lacks \"" << fragment << "\": " << message);
  }
}

// The events of one kind in a JSON-lines metrics file, in order.
inline std::vector<nlohmann::json> metrics_events(const std::string& path, const char* kind) {
  std::vector<nlohmann::json> v;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["event"] == kind) v.push_back(j);
  }
  return v;
}

// A case that needs something from the machine (a Debian package's files or program) calls this
// when it is missing, then returns. Under tools/test, which sets MERCURY_REQUIRE_TEST_DEPS=1
// because tools/setup installs every such package, the case fails naming what to install;
// elsewhere (a bare ctest on a minimal machine) it prints that it skipped and why.
inline void missing_dependency(const std::string& what, const std::string& install) {
  const char* required = std::getenv("MERCURY_REQUIRE_TEST_DEPS");
  if (required != nullptr && std::string(required) == "1") {
    FAIL_CHECK(what << " is missing (" << install
                    << "; tools/setup installs it), and MERCURY_REQUIRE_TEST_DEPS=1");
  } else {
    MESSAGE("SKIPPED: " << what << " is missing (" << install
                        << "); MERCURY_REQUIRE_TEST_DEPS=1 makes this a failure");
  }
}

}  // namespace mercury::testing
