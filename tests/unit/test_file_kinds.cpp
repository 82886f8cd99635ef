// Hardening (issue 13, items 2-3): every input path refuses what is not a regular file instead
// of blocking on it (a FIFO without a writer, a device, a socket, a directory), and every
// output refuses to replace what is not a regular file (a device, a FIFO, a directory, a link
// to a device) before the work that produces it; a crashed writer's stale temp files go.
// The inputs are generated in a temp dir: each reader is tried on each kind of non-file, under
// a watchdog (a hang fails the suite instead of stalling CI).
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>

#include "file_test_support.hpp"
#include "mercury/mercury.hpp"
#include "net/auth.hpp"
#include "net/file_kind.hpp"
#include "net/shaper.hpp"
#include "synthetic_data.hpp"

using namespace mercury;
using mercury::testing::check_mentions;
using mercury::testing::TempDir;

namespace {

// Runs fn; if it has not returned within `seconds`, the process exits (a hang is a failure the
// suite must report, not wait out).
void within(double seconds, const std::string& what, const std::function<void()>& fn) {
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  std::thread watchdog([&] {
    std::unique_lock<std::mutex> lock(m);
    if (!cv.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return done; })) {
      std::fprintf(stderr, "HANG: %s did not return within %.0f s\n", what.c_str(), seconds);
      std::_Exit(3);
    }
  });
  try {
    fn();
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(m);
      done = true;
    }
    cv.notify_all();
    watchdog.join();
    throw;
  }
  {
    std::lock_guard<std::mutex> lock(m);
    done = true;
  }
  cv.notify_all();
  watchdog.join();
}

// The message of what fn throws (any std::exception), "" if it returns.
std::string thrown(const std::string& what, const std::function<void()>& fn) {
  std::string message;
  within(20, what, [&] {
    try {
      fn();
    } catch (const std::exception& e) {
      message = e.what();
    }
  });
  return message;
}

// Non-regular files of every kind a user (or an attacker) can point a path at.
struct Specials {
  TempDir dir;
  std::vector<std::pair<std::string, std::string>> paths;  // path, the kind a message names
  Specials() {
    const std::string fifo = dir.file("fifo");
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    paths.push_back({fifo, "a FIFO"});
    const std::string sub = dir.file("subdir");
    std::filesystem::create_directory(sub);
    paths.push_back({sub, "a directory"});
    const std::string link = dir.file("link-to-null");
    std::filesystem::create_symlink("/dev/null", link);
    paths.push_back({link, "a character device"});
    paths.push_back({"/dev/zero", "a character device"});
    const std::string sock = dir.file("sock");
    const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
    REQUIRE(s >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock.c_str());
    if (::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0)
      paths.push_back({sock, "a socket"});
    ::close(s);
  }
};

}  // namespace

TEST_CASE("file kinds are named; inputs that are not regular files are refused at once") {
  Specials sp;
  CHECK(net::file_kind(sp.dir.file("nothing")) == "missing");
  const std::string regular = sp.dir.file("plain");
  mercury::testing::write_bytes(regular, {1, 2, 3});
  CHECK(net::file_kind(regular) == "a regular file");
  CHECK(net::read_regular_file(regular, "test") == std::string("\x01\x02\x03", 3));
  int tried = 0;
  for (const auto& [path, kind] : sp.paths) {
    CAPTURE(path);
    CHECK(net::file_kind(path) == kind);
    const std::vector<std::pair<std::string, std::function<void()>>> readers = {
        {"read_regular_file", [&] { (void)net::read_regular_file(path, "input"); }},
        {"io::InputFile", [&] { io::InputFile f(path); }},
        {"IDX loader", [&] { (void)data::read_idx(path); }},
        {"checkpoint", [&] { (void)io::SafetensorsFile::load(path); }},
        {"cluster secret", [&] { (void)net::load_secret_file(path); }},
        {"bandwidth trace", [&] { (void)net::BandwidthTrace::load(path); }},
        {"text CSV", [&] { (void)data::read_text_csv(path); }},
        {"WAV", [&] { (void)data::read_wav_pcm16(path); }},
        {"replay group sizes", [&] { (void)train::read_group_sizes(path); }},
    };
    for (const auto& [name, read] : readers) {
      CAPTURE(name);
      const std::string m = thrown(name + " on " + kind, read);
      CHECK_MESSAGE(!m.empty(), name << " accepted " << kind);
      CHECK_MESSAGE(m.find(path) != std::string::npos, m);
      const bool named = m.find(kind) != std::string::npos ||
                         m.find("another kind of file") != std::string::npos ||
                         m.find("Is a directory") != std::string::npos;
      CHECK_MESSAGE(named, m);
      ++tried;
    }
  }
  CHECK(tried >= 36);
  CHECK(net::file_kind("/dev/null") == "a character device");  // untouched by all of this
}

TEST_CASE("outputs never replace a device, FIFO or directory, and a bad place fails first") {
  Specials sp;
  for (const auto& [path, kind] : sp.paths) {
    if (path == "/dev/zero") continue;  // never aim a writer at a real device, even to test
    CAPTURE(path);
    const std::string m = thrown("AtomicFileWriter", [&] {
      io::AtomicFileWriter out(path);
      out.write("x", 1);
      out.commit();
    });
    check_mentions(m, {path, "found " + kind, "refusing to replace it"});
    CHECK(net::file_kind(path) == kind);  // still what it was
    const std::string mm = thrown("metrics", [&] { io::MetricsWriter w(path); });
    check_mentions(mm, {path, "found " + kind});
    CHECK(net::file_kind(path) == kind);
  }
  CHECK(net::file_kind("/dev/null") == "a character device");
  check_mentions(
      thrown("missing dir", [&] { io::write_file_atomically(sp.dir.file("no/x"), "y"); }),
      {"expected its directory", "to exist, found missing"});
  // The trainer checks its checkpoint path before training, not at the first save.
  const auto train = mercury::testing::synthetic_images(32, 1);
  auto model = models::make_model("mlp", Shape{1, 28, 28}, 10, 1);
  train::TrainConfig cfg;
  cfg.model = "mlp";
  cfg.batch = 16;  // at most the 32 samples
  cfg.threads = 1;
  cfg.progress = false;
  for (const std::string bad :
       {sp.paths[0].first, sp.dir.file("subdir"), sp.dir.file("no-such-dir/ckpt.safetensors")}) {
    CAPTURE(bad);
    cfg.checkpoint = bad;
    std::ostringstream log;
    const std::string m =
        thrown("trainer", [&] { train::Trainer t(cfg, *model, train, train, log); });
    check_mentions(m, {"checkpoint '" + bad + "'", "expected"});
  }
}

TEST_CASE("a crashed writer's stale temp files are removed; a live writer's are kept") {
  TempDir d;
  const std::string target = d.file("ckpt.safetensors");
  const pid_t child = ::fork();
  if (child == 0) std::_Exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);  // a pid that no longer runs
  const std::string dead = target + ".tmp." + std::to_string(child);
  const std::string live = target + ".tmp.1";  // init: always alive
  const std::string other = d.file("other.safetensors.tmp." + std::to_string(child));
  for (const auto& p : {dead, live, other}) mercury::testing::write_bytes(p, {7});
  io::write_file_atomically(target, "new");
  CHECK(net::file_kind(dead) == "missing");
  CHECK(net::file_kind(live) == "a regular file");
  CHECK(net::file_kind(other) == "a regular file");  // another target's: not ours to remove
  CHECK(net::file_kind(target) == "a regular file");
}
