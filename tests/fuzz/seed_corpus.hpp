// Seed-corpus writers of the fuzz targets (built with MERCURY_FUZZ_WRITE_SEEDS): each target's
// seeds program takes the corpus directory as its one argument and writes seed-<i> files there.
#pragma once

#include <cstddef>
#include <cstdio>
#include <span>
#include <string>

namespace mercury::fuzzing {

// The corpus directory from argv, or "" after printing the usage.
inline std::string corpus_dir(int argc, char** argv) {
  if (argc == 2) return argv[1];
  std::fprintf(stderr, "usage: %s <corpus-dir>\n", argc > 0 ? argv[0] : "seeds");
  return {};
}

// The path of seed `i` in `dir`.
inline std::string seed_path(const std::string& dir, std::size_t i) {
  return dir + "/seed-" + std::to_string(i);
}

// Writes `bytes` as seed `i`; false (after saying why) when it cannot.
inline bool write_seed(const std::string& dir, std::size_t i, std::span<const std::byte> bytes) {
  const std::string path = seed_path(dir, i);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  const bool ok = f && std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  if (f) std::fclose(f);
  if (!ok) std::fprintf(stderr, "cannot write %s\n", path.c_str());
  return ok;
}

}  // namespace mercury::fuzzing
