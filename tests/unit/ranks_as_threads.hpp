// Ranks as threads for the distributed tests: run a function per rank on its own thread and
// collect what each threw.
#pragma once

#include <doctest/doctest.h>

#include <exception>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace mercury::testing {

// Runs fn(rank) on `world` threads; returns each rank's exception (null if it returned).
inline std::vector<std::exception_ptr> run_ranks(int world, const std::function<void(int)>& fn) {
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        fn(r);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

// The message of a rank's exception ("(no error)" if it returned).
inline std::string error_message(const std::exception_ptr& e) {
  if (!e) return "(no error)";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "(a non-standard exception)";
  }
}

// Fails the test naming every rank that threw.
inline void require_no_errors(const std::vector<std::exception_ptr>& errors) {
  for (std::size_t r = 0; r < errors.size(); ++r)
    if (errors[r]) FAIL("rank " << r << " threw: " << error_message(errors[r]));
}

}  // namespace mercury::testing
