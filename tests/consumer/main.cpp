// A program outside Mercury's build: compiled against the repo root with nothing but -I flags
// (header-only kernels chosen by the compiler flags), against an installed tree through
// find_package(mercury) or pkg-config (compiled kernels, run-time dispatch); see
// tests/CMakeLists.txt and tests/consumer/install_test.sh. Trains the mlp for a few steps on a
// synthetic separable problem and fails unless the loss drops; touches the transport's HMAC so
// libcrypto must link. With --expect FLAVOUR ISA it also fails unless those are the kernels in
// use (FLAVOUR: header-only or compiled; ISA: ref, neon, avx2, avx512).
#include <mercury/mercury.hpp>
#include <net/auth.hpp>

#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

int main(int argc, char** argv) {
  using namespace mercury;
  const char* expect_flavour = nullptr;
  const char* expect_isa = nullptr;
  if (argc == 4 && std::strcmp(argv[1], "--expect") == 0) {
    expect_flavour = argv[2];
    expect_isa = argv[3];
  } else if (argc != 1) {
    std::fprintf(stderr, "usage: %s [--expect header-only|compiled ref|neon|avx2|avx512]\n",
                 argv[0]);
    return 2;
  }
#if defined(MERCURY_KERNELS_COMPILED)
  const char* flavour = "compiled";
#else
  const char* flavour = "header-only";
#endif
  const char* isa = kernels::isa_name(kernels::table().isa);

  auto model = models::make_model("mlp", Shape{1, 28, 28}, 10, 1);
  nn::Engine engine(*model);
  optim::Optimizer adam(optim::OptimizerConfig{}, model->params.size());
  const int64_t B = 32;
  std::vector<float> x(static_cast<std::size_t>(B * 784));
  std::vector<int32_t> y(static_cast<std::size_t>(B));
  std::mt19937_64 rng(7);
  for (int64_t i = 0; i < B; ++i) {
    y[i] = static_cast<int32_t>(i % 10);
    for (int64_t p = 0; p < 784; ++p)
      x[i * 784 + p] =
          (p % 10 == y[i] ? 1.0f : 0.0f) + 0.1f * static_cast<float>(rng() % 100) / 100;
  }
  float first = 0, last = 0;
  for (int step = 0; step < 20; ++step) {
    model->params.zero_grad();
    last = engine.grad(x.data(), y.data(), nullptr, B);
    if (step == 0) first = last;
    adam.step(model->params.values(), model->params.grads(), 1e-3f);
  }
  // RFC 4231 test case 2: HMAC-SHA256(key "Jefe", "what do ya want for nothing?").
  const char key[] = "Jefe";
  const char msg[] = "what do ya want for nothing?";
  const auto mac = net::hmac_sha256(std::as_bytes(std::span(key, 4)),
                                    std::as_bytes(std::span(msg, sizeof msg - 1)));
  const bool mac_ok =
      static_cast<unsigned>(mac[0]) == 0x5b && static_cast<unsigned>(mac[31]) == 0x43;

  std::printf("consumer (%s kernels, %s): loss %.4f -> %.4f, HMAC %s\n", flavour, isa, first, last,
              mac_ok ? "ok" : "WRONG");
  bool ok = last < 0.5f * first && mac_ok;
  if (expect_flavour &&
      (std::strcmp(expect_flavour, flavour) != 0 || std::strcmp(expect_isa, isa) != 0)) {
    std::fprintf(stderr, "consumer: expected %s %s kernels, found %s %s\n", expect_flavour,
                 expect_isa, flavour, isa);
    ok = false;
  }
  return ok ? 0 : 1;
}
