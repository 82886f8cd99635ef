// Every kernel of every ISA available here against the ref table, plus the MERCURY_MAX_ISA cap.
// Runs a second time under MERCURY_MAX_ISA=ref (ctest), where table() must be ref while
// table_for() still reaches every variant.
#include <doctest/doctest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__arm__) && !defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include "kernels/kernels.hpp"

namespace mk = mercury::kernels;

namespace {

std::vector<float> random_floats(int64_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<mk::Isa> simd_isas() {
  std::vector<mk::Isa> isas;
  for (mk::Isa isa : mk::available_isas())
    if (isa != mk::Isa::ref) isas.push_back(isa);
  return isas;
}

const mk::KernelTable& ref_table() {
  return mk::table_for(mk::Isa::ref);
}

// |got - want| ≤ rtol·scale + atol for every element.
void check_close(const std::vector<float>& got, const std::vector<float>& want, float rtol,
                 float atol = 1e-6f, const std::vector<float>* scale = nullptr) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const float s = scale != nullptr ? (*scale)[i] : std::fabs(want[i]);
    INFO("index " << i << ": got " << got[i] << ", want " << want[i]);
    CHECK(std::fabs(got[i] - want[i]) <= rtol * s + atol);
  }
}

// A backward kernel's dx when `acc` is false: NaN everywhere, so a kernel that reads it fails.
std::vector<float> unread(int64_t n) {
  return std::vector<float>(static_cast<size_t>(n), std::numeric_limits<float>::quiet_NaN());
}
// The write form (acc false, dx unread) equals the accumulating form on a zeroed dx.
template <class Bwd>
void check_write_is_add_to_zero(int64_t n, Bwd bwd) {
  std::vector<float> written = unread(n), added(static_cast<size_t>(n), 0.0f);
  bwd(written.data(), false);
  bwd(added.data(), true);
  check_close(written, added, 0.0f, 0.0f);
}

// C buffer of M rows with stride ldc: the N used columns hold `fill` values, the padding a
// sentinel that no kernel may touch.
constexpr float kSentinel = 12345.0f;

struct GemmCase {
  int64_t M, N, K;
};

// indirect: t.sgemm_rows reads B's rows through offsets into a buffer where they sit in reverse
// order at uneven gaps; the result must equal ref sgemm on the dense B.
void check_sgemm(const mk::KernelTable& t, bool ta, bool tb, GemmCase s, float alpha, float beta,
                 std::mt19937& rng, bool indirect = false) {
  const int64_t lda = (ta ? s.M : s.K) + 3, ldb = (tb ? s.K : s.N) + 5, ldc = s.N + 7;
  const auto A = random_floats((ta ? s.K : s.M) * lda, rng);
  const int64_t b_rows = tb ? s.N : s.K, b_cols = tb ? s.K : s.N;
  const auto B = random_floats(b_rows * ldb, rng);
  std::vector<int64_t> boff(static_cast<size_t>(b_rows));
  std::vector<float> scattered(static_cast<size_t>(b_rows * (b_cols + 3) + 1), kSentinel);
  for (int64_t r = 0; r < b_rows; ++r) {
    boff[static_cast<size_t>(r)] = (b_rows - 1 - r) * (b_cols + 3) + (r % 3);
    std::copy_n(B.begin() + r * ldb, b_cols, scattered.begin() + boff[static_cast<size_t>(r)]);
  }
  std::vector<float> C0 = random_floats(s.M * ldc, rng);
  for (int64_t i = 0; i < s.M; ++i)
    for (int64_t j = 0; j < ldc; ++j) {
      float& c = C0[static_cast<size_t>(i * ldc + j)];
      if (j >= s.N)
        c = kSentinel;
      else if (beta == 0.0f)
        c = std::numeric_limits<float>::quiet_NaN();  // must not be read
    }
  std::vector<float> got = C0, want = C0;
  if (indirect)
    t.sgemm_rows(ta, tb, s.M, s.N, s.K, alpha, A.data(), lda, scattered.data(), boff.data(), beta,
                 got.data(), ldc);
  else
    t.sgemm(ta, tb, s.M, s.N, s.K, alpha, A.data(), lda, B.data(), ldb, beta, got.data(), ldc);
  ref_table().sgemm(ta, tb, s.M, s.N, s.K, alpha, A.data(), lda, B.data(), ldb, beta, want.data(),
                    ldc);
  // Reassociation bound: each result may differ by ~K·eps of |alpha|·Σ|a||b| + |beta·c|.
  auto abs_all = [](std::vector<float> v) {
    for (float& x : v) x = std::isnan(x) ? 0.0f : std::fabs(x);
    return v;
  };
  std::vector<float> magnitude = abs_all(C0);
  const auto A_abs = abs_all(A), B_abs = abs_all(B);
  ref_table().sgemm(ta, tb, s.M, s.N, s.K, std::fabs(alpha), A_abs.data(), lda, B_abs.data(), ldb,
                    std::fabs(beta), magnitude.data(), ldc);
  const float rtol = 2.0f * static_cast<float>(s.K + 2) * FLT_EPSILON;
  INFO(mk::isa_name(t.isa) << (indirect ? " sgemm_rows" : " sgemm") << " ta=" << ta << " tb=" << tb
                           << " M=" << s.M << " N=" << s.N << " K=" << s.K << " alpha=" << alpha
                           << " beta=" << beta);
  for (int64_t i = 0; i < s.M; ++i)
    for (int64_t j = 0; j < ldc; ++j) {
      const size_t at = static_cast<size_t>(i * ldc + j);
      if (j >= s.N) {
        REQUIRE(got[at] == kSentinel);
      } else {
        INFO("C[" << i << "][" << j << "] got " << got[at] << " want " << want[at]);
        REQUIRE(std::fabs(got[at] - want[at]) <= rtol * magnitude[at] + 1e-30f);
      }
    }
}

void for_each_transpose(const std::function<void(bool, bool)>& f) {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) f(ta, tb);
}

}  // namespace

TEST_CASE("ISA names round-trip and unknown names are rejected") {
  for (mk::Isa isa : {mk::Isa::ref, mk::Isa::neon, mk::Isa::avx2, mk::Isa::avx512}) {
    mk::Isa parsed{};
    REQUIRE(mk::parse_isa(mk::isa_name(isa), &parsed));
    CHECK(parsed == isa);
  }
  mk::Isa parsed{};
  CHECK_FALSE(mk::parse_isa("sse2", &parsed));
  CHECK_FALSE(mk::parse_isa("", &parsed));
  CHECK_FALSE(mk::parse_isa(nullptr, &parsed));
}

TEST_CASE("MERCURY_MAX_ISA caps table() and an invalid value names what it expected and found") {
  const auto isas = mk::available_isas();
  REQUIRE(!isas.empty());
  CHECK(isas.front() == mk::Isa::ref);
  CHECK(mk::best_isa(nullptr) == isas.back());
  CHECK(mk::best_isa("") == isas.back());
  CHECK(mk::best_isa("ref") == mk::Isa::ref);
  CHECK(mk::best_isa("avx2") <= mk::Isa::avx2);
  CHECK(mk::best_isa("avx512") == isas.back());
  try {
    mk::best_isa("sse9");
    FAIL("best_isa accepted 'sse9'");
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    CHECK(what.find("MERCURY_MAX_ISA") != std::string::npos);
    CHECK(what.find("'sse9'") != std::string::npos);
    CHECK(what.find("ref, neon, avx2, avx512") != std::string::npos);
  }
  // This process's table() honours its own environment (ctest runs us with MERCURY_MAX_ISA=ref).
  CHECK(mk::table().isa == mk::best_isa(std::getenv("MERCURY_MAX_ISA")));
  for (mk::Isa isa : isas) CHECK(mk::table_for(isa).isa == isa);
}

#if defined(__aarch64__) || defined(__arm__)
TEST_CASE("ARM builds offer the NEON kernels exactly when the CPU has them") {
  const auto isas = mk::available_isas();
  const bool neon = std::find(isas.begin(), isas.end(), mk::Isa::neon) != isas.end();
#if defined(__aarch64__)
  CHECK(neon);  // AArch64's baseline
#else
  // 32-bit ARM: NEON and VFPv4 (its FMA) are optional; table.cpp reads HWCAP.
  const unsigned long hwcap = getauxval(AT_HWCAP);
  MESSAGE("HWCAP neon " << ((hwcap & HWCAP_NEON) != 0) << ", vfpv4 "
                        << ((hwcap & HWCAP_VFPv4) != 0));
  CHECK(neon == ((hwcap & HWCAP_NEON) != 0 && (hwcap & HWCAP_VFPv4) != 0));
#endif
}
#endif

TEST_CASE("table_for an ISA this CPU/build lacks throws naming it") {
  for (mk::Isa isa : {mk::Isa::neon, mk::Isa::avx2, mk::Isa::avx512}) {
    bool available = false;
    for (mk::Isa a : mk::available_isas()) available = available || a == isa;
    if (available) continue;
    try {
      mk::table_for(isa);
      FAIL("table_for returned an unavailable ISA");
    } catch (const std::runtime_error& e) {
      CHECK(std::string(e.what()).find(mk::isa_name(isa)) != std::string::npos);
    }
  }
}

TEST_CASE("sgemm of every ISA equals ref on tile edges, all transposes, alpha/beta and strides") {
  std::mt19937 rng(1);
  // Tile sizes of the variants: 6x16 (avx2), 8x32 (avx512), 8x8 (neon), 4x8 (32-bit neon) — ±1
  // around each.
  const int64_t Ms[] = {1, 3, 4, 5, 6, 7, 8, 9, 13};
  const int64_t Ns[] = {1, 7, 8, 9, 15, 16, 17, 31, 32, 33};
  const int64_t Ks[] = {1, 2, 7, 16};
  const float alpha_beta[][2] = {{1.0f, 0.0f}, {0.5f, -1.5f}, {-2.0f, 1.0f}};
  for (mk::Isa isa : simd_isas())
    for_each_transpose([&](bool ta, bool tb) {
      for (int64_t M : Ms)
        for (int64_t N : Ns)
          for (int64_t K : Ks)
            for (const auto& ab : alpha_beta)
              check_sgemm(mk::table_for(isa), ta, tb, {M, N, K}, ab[0], ab[1], rng);
    });
}

TEST_CASE("sgemm: SIMD transpose-pack of B and the A·Bᵀ dot-product path on their edges") {
  std::mt19937 rng(10);
  // Transpose-pack blocks are W×W (W = 4 neon, 8 avx2, 16 avx512): K and N around them, beyond
  // the 32-column tile and into K tails. The dot path (ta = false, tb = true, N ≤ 32, K ≥ 32 or
  // 64) works in RB×CB blocks (3×4 avx2, 4×4 avx512/neon, 2×4 32-bit neon) with K in vectors:
  // M, N around the blocks, N around its 32-column limit, K around its threshold and the vector
  // width.
  const int64_t Ms[] = {1, 2, 3, 4, 5, 9};
  const int64_t Ns[] = {1, 3, 4, 5, 10, 25, 32, 33};
  const int64_t Ks[] = {15, 17, 31, 32, 33, 63, 64, 65, 129};
  const float alpha_beta[][2] = {{1.0f, 0.0f}, {0.5f, -1.5f}};
  for (mk::Isa isa : simd_isas())
    for_each_transpose([&](bool ta, bool tb) {
      for (int64_t M : Ms)
        for (int64_t N : Ns)
          for (int64_t K : Ks)
            for (const auto& ab : alpha_beta)
              check_sgemm(mk::table_for(isa), ta, tb, {M, N, K}, ab[0], ab[1], rng);
    });
  // The CNN's A·Bᵀ shapes that take the dot path: conv1 dW and the classifier.
  for (mk::Isa isa : simd_isas()) {
    check_sgemm(mk::table_for(isa), false, true, {32, 25, 576}, 1.0f, 0.0f, rng);
    check_sgemm(mk::table_for(isa), false, true, {64, 10, 128}, -1.0f, 0.5f, rng);
  }
}

TEST_CASE("sgemm of every ISA equals ref beyond the cache blocks and at the CNN's shapes") {
  std::mt19937 rng(2);
  const GemmCase cases[] = {
      {200, 70, 300},  // M > MC, K > KC
      {193, 33, 513},  // two K blocks plus a remainder
      {9, 4100, 3},    // N > NC
      {32, 576, 25},   // conv1 forward (per image)
      {64, 64, 800},   // conv2 forward (per image)
      {64, 10, 128},   // fc2 forward
      {64, 800, 64},   // conv2 dW = dY·colᵀ
      {0, 5, 3},       // empty outputs
      {4, 5, 0},       // K = 0: C = beta·C
  };
  for (mk::Isa isa : simd_isas())
    for_each_transpose([&](bool ta, bool tb) {
      for (const GemmCase& s : cases) {
        check_sgemm(mk::table_for(isa), ta, tb, s, 1.0f, 0.0f, rng);
        check_sgemm(mk::table_for(isa), ta, tb, s, 0.75f, 0.25f, rng);
      }
    });
}

TEST_CASE("sgemm_rows (B's rows by offset) of every table equals ref sgemm on the dense B") {
  // Every ISA and ref itself; the shapes of the three tests above: register-tile edges, the
  // transpose-pack and dot-product paths, cache blocks, a stride-1 conv's (K = C·9 rows), and
  // M ≤ 8·MR with K over several blocks, where the indirect rows are read in place.
  std::mt19937 rng(11);
  const GemmCase cases[] = {{1, 1, 1},       {7, 9, 2},      {8, 31, 16},   {13, 33, 7},
                            {5, 10, 33},     {4, 25, 65},    {9, 32, 129},  {3, 33, 64},
                            {200, 70, 300},  {193, 33, 513}, {9, 4100, 3},  {16, 1088, 144},
                            {16, 144, 1088}, {30, 100, 300}, {48, 70, 513}, {0, 5, 3},
                            {4, 5, 0}};
  for (mk::Isa isa : mk::available_isas())
    for_each_transpose([&](bool ta, bool tb) {
      for (const GemmCase& s : cases) {
        check_sgemm(mk::table_for(isa), ta, tb, s, 1.0f, 0.0f, rng, true);
        check_sgemm(mk::table_for(isa), ta, tb, s, -0.5f, 1.5f, rng, true);
      }
    });
}

TEST_CASE("sgemm equals ref above 256³, where MERCURY_WITH_OPENBLAS builds call OpenBLAS") {
  std::mt19937 rng(9);
  for (mk::Isa isa : simd_isas()) {
    check_sgemm(mk::table_for(isa), false, false, {260, 256, 257}, 1.0f, 0.0f, rng);
    check_sgemm(mk::table_for(isa), true, true, {256, 260, 257}, 0.5f, 0.25f, rng);
  }
}

TEST_CASE("sgemm packs a large transposed A into register-row panels: equals ref at its edges") {
  // The driver packs op(A) = Aᵀ when M ≥ 256 and N ≥ 8·NR (256 columns on avx512, 128 avx2, 64
  // neon): M across the 192- or 128-row cache block with a partial last register panel, K over
  // two blocks with a one-deep remainder, N with a partial last column panel. Direct and
  // indirect B (sgemm_rows), both B transposes.
  std::mt19937 rng(12);
  const GemmCase cases[] = {{389, 300, 300}, {256, 256, 257}, {1001, 257, 70}, {263, 520, 33}};
  for (mk::Isa isa : simd_isas())
    for (const bool tb : {false, true})
      for (const GemmCase& s : cases) {
        check_sgemm(mk::table_for(isa), true, tb, s, 1.0f, 0.0f, rng);
        check_sgemm(mk::table_for(isa), true, tb, s, -0.5f, 1.5f, rng, true);
      }
}

TEST_CASE("sgemm with alpha = 0 only scales C by beta") {
  std::mt19937 rng(3);
  for (mk::Isa isa : mk::available_isas()) {
    check_sgemm(mk::table_for(isa), false, false, {5, 9, 4}, 0.0f, 0.0f, rng);
    check_sgemm(mk::table_for(isa), true, true, {5, 9, 4}, 0.0f, 2.0f, rng);
  }
}

TEST_CASE("vector ops of every ISA equal ref, honour exact aliasing and never write past n") {
  std::mt19937 rng(4);
  const mk::KernelTable& ref = ref_table();
  for (mk::Isa isa : simd_isas()) {
    const mk::KernelTable& t = mk::table_for(isa);
    for (int64_t n : {0, 1, 15, 16, 17, 31, 33, 1000}) {
      INFO(mk::isa_name(isa) << " n=" << n);
      const auto a = random_floats(n, rng), b = random_floats(n, rng);
      // Outputs carry a sentinel tail of 16 floats that must survive.
      auto padded = [&](const std::vector<float>& v) {
        std::vector<float> p = v;
        p.resize(v.size() + 16, kSentinel);
        return p;
      };
      auto run_binary = [&](auto op_of) {
        std::vector<float> got = padded(a), want = padded(a);
        op_of(t)(n, got.data(), b.data(), got.data());  // out aliases a exactly
        op_of(ref)(n, want.data(), b.data(), want.data());
        check_close(got, want, 1e-6f, 0.0f);
      };
      run_binary([](const mk::KernelTable& k) { return k.add; });
      run_binary([](const mk::KernelTable& k) { return k.mul; });
      {
        std::vector<float> got = padded(b), want = padded(b);
        t.axpy(n, -0.37f, a.data(), got.data());
        ref.axpy(n, -0.37f, a.data(), want.data());
        check_close(got, want, 1e-6f, 1e-7f);
        t.scale(n, 3.5f, got.data(), got.data());
        ref.scale(n, 3.5f, want.data(), want.data());
        check_close(got, want, 1e-6f, 1e-6f);
      }
      {
        float abs_sum = 0.0f, abs_dot = 0.0f;
        for (int64_t i = 0; i < n; ++i) {
          abs_sum += std::fabs(a[static_cast<size_t>(i)]);
          abs_dot += std::fabs(a[static_cast<size_t>(i)] * b[static_cast<size_t>(i)]);
        }
        const float rtol = 2.0f * static_cast<float>(n + 2) * FLT_EPSILON;
        CHECK(std::fabs(t.dot(n, a.data(), b.data()) - ref.dot(n, a.data(), b.data())) <=
              rtol * abs_dot + 1e-30f);
        CHECK(std::fabs(t.sum(n, a.data()) - ref.sum(n, a.data())) <= rtol * abs_sum + 1e-30f);
      }
      {
        std::vector<float> x = a;
        if (n > 3) x[3] = std::numeric_limits<float>::quiet_NaN();  // relu(NaN) = 0 everywhere
        std::vector<float> got = padded(b), want = padded(b);
        t.relu_fwd(n, x.data(), got.data());
        ref.relu_fwd(n, x.data(), want.data());
        check_close(got, want, 0.0f, 0.0f);
        const auto dy = random_floats(n, rng);
        for (bool acc : {true, false}) {
          got = padded(acc ? b : unread(n)), want = got;
          t.relu_bwd(n, x.data(), dy.data(), got.data(), acc);
          ref.relu_bwd(n, x.data(), dy.data(), want.data(), acc);
          check_close(got, want, 0.0f, 0.0f);
        }
        check_write_is_add_to_zero(
            n, [&](float* dx, bool acc) { ref.relu_bwd(n, x.data(), dy.data(), dx, acc); });
      }
      for (int64_t rows : {1, 3}) {
        const auto bias = random_floats(n, rng);
        std::vector<float> got = padded(random_floats(rows * n, rng)), want = got;
        t.add_row_bias(rows, n, bias.data(), got.data());
        ref.add_row_bias(rows, n, bias.data(), want.data());
        check_close(got, want, 0.0f, 0.0f);
        const auto channel_bias = random_floats(rows, rng);
        t.add_channel_bias(rows, n, channel_bias.data(), got.data());
        ref.add_channel_bias(rows, n, channel_bias.data(), want.data());
        check_close(got, want, 0.0f, 0.0f);
      }
    }
  }
}

TEST_CASE("softmax_xent of every ISA equals ref and stays finite for huge and tiny logits") {
  std::mt19937 rng(5);
  const mk::KernelTable& ref = ref_table();
  for (mk::Isa isa : simd_isas())
    for (int64_t cols : {1, 2, 7, 10, 16, 17, 100})
      for (float spread : {1.0f, 30.0f, 1e4f, 1e30f})
        for (float offset : {0.0f, 1e4f, -1e4f}) {
          INFO(mk::isa_name(isa) << " cols=" << cols << " spread=" << spread
                                 << " offset=" << offset);
          const int64_t rows = 5;
          auto logits = random_floats(rows * cols, rng, -spread, spread);
          for (float& x : logits) x += offset;
          std::vector<int32_t> labels(rows);
          for (int64_t r = 0; r < rows; ++r)
            labels[static_cast<size_t>(r)] = static_cast<int32_t>((r * 7) % cols);
          std::vector<float> loss(rows), want_loss(rows), probs(rows * cols),
              want_probs(rows * cols);
          mk::table_for(isa).softmax_xent(rows, cols, logits.data(), labels.data(), loss.data(),
                                          probs.data());
          ref.softmax_xent(rows, cols, logits.data(), labels.data(), want_loss.data(),
                           want_probs.data());
          for (float l : loss) CHECK(std::isfinite(l));
          check_close(loss, want_loss, 1e-5f, 1e-5f);
          check_close(probs, want_probs, 1e-5f, 1e-6f);
          std::vector<float> loss_only(rows);
          mk::table_for(isa).softmax_xent(rows, cols, logits.data(), labels.data(),
                                          loss_only.data(), nullptr);
          check_close(loss_only, loss, 0.0f, 0.0f);
        }
}

TEST_CASE("relu6 and the batch-norm plane kernels of every ISA equal ref and never write past n") {
  std::mt19937 rng(14);
  const mk::KernelTable& ref = ref_table();
  for (mk::Isa isa : simd_isas()) {
    const mk::KernelTable& t = mk::table_for(isa);
    for (int64_t n : {0, 1, 15, 16, 17, 31, 33, 1000}) {
      INFO(mk::isa_name(isa) << " n=" << n);
      auto padded = [&](std::vector<float> v) {
        v.resize(v.size() + 16, kSentinel);
        return v;
      };
      // ReLU6 over [-8, 8], with the edges 0 and 6 exactly and a NaN (gives 0, as relu).
      auto x = random_floats(n, rng, -8.0f, 8.0f);
      if (n > 3) x[0] = 0.0f, x[1] = 6.0f, x[2] = std::numeric_limits<float>::quiet_NaN();
      std::vector<float> got = padded(random_floats(n, rng)), want = got;
      t.relu6_fwd(n, x.data(), got.data());
      ref.relu6_fwd(n, x.data(), want.data());
      check_close(got, want, 0.0f, 0.0f);
      for (int64_t i = 0; i < n; ++i) {
        CHECK(got[i] >= 0.0f);
        CHECK(got[i] <= 6.0f);
      }
      const auto y = want, dy = random_floats(n, rng);
      for (bool acc : {true, false}) {
        got = padded(acc ? random_floats(n, rng) : unread(n)), want = got;
        t.relu6_bwd(n, y.data(), dy.data(), got.data(), acc);
        ref.relu6_bwd(n, y.data(), dy.data(), want.data(), acc);
        check_close(got, want, 0.0f, 0.0f);
        if (n > 3 && acc) CHECK(got[1] == want[1]);  // y == 6: no gradient (want untouched)
        if (n > 3 && !acc) CHECK(got[1] == 0.0f);
      }
      check_write_is_add_to_zero(
          n, [&](float* dx, bool acc) { ref.relu6_bwd(n, y.data(), dy.data(), dx, acc); });

      // Batch norm: squared deviations, normalise (with and without xhat), backward.
      const auto v = random_floats(n, rng, 2.0f, 4.0f);
      const float mean = 3.1f, sq_ref = ref.sum_sq_dev(n, v.data(), mean);
      CHECK(std::fabs(t.sum_sq_dev(n, v.data(), mean) - sq_ref) <=
            4.0f * static_cast<float>(n + 2) * FLT_EPSILON * sq_ref + 1e-30f);
      for (bool with_xhat : {true, false}) {
        std::vector<float> xh_got = padded(std::vector<float>(n, 0.0f)), xh_want = xh_got;
        got = padded(std::vector<float>(n, 0.0f)), want = got;
        t.bn_fwd(n, v.data(), mean, 1.7f, -0.6f, 0.25f, with_xhat ? xh_got.data() : nullptr,
                 got.data());
        ref.bn_fwd(n, v.data(), mean, 1.7f, -0.6f, 0.25f, with_xhat ? xh_want.data() : nullptr,
                   want.data());
        check_close(got, want, 1e-5f, 1e-6f);
        check_close(xh_got, xh_want, 1e-5f, 1e-6f);
      }
      const auto xhat = random_floats(n, rng, -2.0f, 2.0f);
      for (bool acc : {true, false}) {
        got = padded(acc ? random_floats(n, rng) : unread(n)), want = got;
        t.bn_bwd(n, dy.data(), xhat.data(), 0.8f, 0.05f, -0.3f, got.data(), acc);
        ref.bn_bwd(n, dy.data(), xhat.data(), 0.8f, 0.05f, -0.3f, want.data(), acc);
        check_close(got, want, 1e-5f, 1e-6f);
      }
      check_write_is_add_to_zero(n, [&](float* dx, bool acc) {
        ref.bn_bwd(n, dy.data(), xhat.data(), 0.8f, 0.05f, -0.3f, dx, acc);
      });
    }
  }
}

TEST_CASE(
    "sigmoid and tanh of every ISA are within 1e-6 of ref, saturate cleanly, keep NaN, alias") {
  std::mt19937 rng(20);
  const mk::KernelTable& ref = ref_table();
  for (mk::Isa isa : simd_isas())
    for (int64_t n : {0, 1, 15, 16, 17, 33, 1000}) {
      INFO(mk::isa_name(isa) << " n=" << n);
      const mk::KernelTable& t = mk::table_for(isa);
      auto x = random_floats(n, rng, -9.0f, 9.0f);
      if (n > 5) x[0] = 500.0f, x[1] = -500.0f, x[2] = 0.0f, x[3] = 1e-5f;
      if (n > 5) x[4] = std::numeric_limits<float>::quiet_NaN();  // NaN in, NaN out (as ref)
      using Fwd = void (*)(int64_t, const float*, float*);
      using Bwd = void (*)(int64_t, const float*, const float*, float*, bool);
      const Fwd fwd_got[] = {t.sigmoid_fwd, t.tanh_fwd},
                fwd_want[] = {ref.sigmoid_fwd, ref.tanh_fwd};
      const Bwd bwd_got[] = {t.sigmoid_bwd, t.tanh_bwd},
                bwd_want[] = {ref.sigmoid_bwd, ref.tanh_bwd};
      for (int k = 0; k < 2; ++k) {
        std::vector<float> got(n + 16, kSentinel), want = got;
        fwd_got[k](n, x.data(), got.data());
        fwd_want[k](n, x.data(), want.data());
        std::vector<float> in_place = x;  // y may alias x exactly
        fwd_got[k](n, in_place.data(), in_place.data());
        for (int64_t i = 0; i < n; ++i) CHECK((in_place[i] == got[i] || i == 4));
        if (n > 5) {
          CHECK(std::isnan(got[4]));
          CHECK(std::isnan(want[4]));
          got[4] = want[4] = 0.0f;
        }
        check_close(got, want, 0.0f, 1e-6f);
        for (int64_t i = 0; i < n; ++i) CHECK(std::isfinite(got[i]));
        const auto dy = random_floats(n, rng);
        for (bool acc : {true, false}) {
          std::vector<float> dx_got = acc ? random_floats(n, rng) : unread(n);
          dx_got.resize(n + 16, kSentinel);
          std::vector<float> dx_want = dx_got;
          bwd_got[k](n, want.data(), dy.data(), dx_got.data(), acc);
          bwd_want[k](n, want.data(), dy.data(), dx_want.data(), acc);
          check_close(dx_got, dx_want, 1e-6f, 1e-6f);
        }
        check_write_is_add_to_zero(
            n, [&](float* dx, bool acc) { bwd_want[k](n, want.data(), dy.data(), dx, acc); });
      }
    }
}

TEST_CASE(
    "lstm_cell of every ISA is within 2e-6 of ref, saturates cleanly and may update c in place") {
  std::mt19937 rng(19);
  const mk::KernelTable& ref = ref_table();
  for (mk::Isa isa : simd_isas())
    for (int64_t H : {1, 7, 16, 33, 128}) {
      INFO(mk::isa_name(isa) << " H=" << H);
      const mk::KernelTable& t = mk::table_for(isa);
      auto pre = random_floats(4 * H, rng, -6.0f, 6.0f);
      pre[0] = 200.0f;  // σ and tanh saturate without Inf or NaN
      if (H > 1) pre[H + 1] = -200.0f, pre[2 * H + 1] = 1e-4f, pre[3 * H + 1] = -1e-4f;
      const auto c_prev = random_floats(H, rng, -3.0f, 3.0f);
      for (bool with_prev : {true, false}) {
        std::vector<float> g_got = pre, g_want = pre;
        g_got.resize(g_got.size() + 16, kSentinel);
        g_want.resize(g_want.size() + 16, kSentinel);
        std::vector<float> c_got(H + 16, kSentinel), c_want = c_got, h_got = c_got, h_want = c_got;
        t.lstm_cell(H, g_got.data(), with_prev ? c_prev.data() : nullptr, c_got.data(),
                    h_got.data());
        ref.lstm_cell(H, g_want.data(), with_prev ? c_prev.data() : nullptr, c_want.data(),
                      h_want.data());
        check_close(g_got, g_want, 0.0f, 2e-6f);
        check_close(c_got, c_want, 0.0f, 2e-6f);
        check_close(h_got, h_want, 0.0f, 2e-6f);
        for (int64_t j = 0; j < H; ++j) CHECK(std::isfinite(h_got[j]));
        if (!with_prev) continue;
        // In place: c_prev and c the same buffer (score mode keeps one cell row).
        std::vector<float> g_in_place = pre, c_in_place = c_prev, h_in_place(H);
        t.lstm_cell(H, g_in_place.data(), c_in_place.data(), c_in_place.data(), h_in_place.data());
        for (int64_t j = 0; j < H; ++j) {
          CHECK(c_in_place[j] == c_got[j]);
          CHECK(h_in_place[j] == h_got[j]);
        }
      }
    }
  // A NaN pre-activation reaches c and h in every table (not squashed to a finite value).
  for (mk::Isa isa : mk::available_isas()) {
    std::vector<float> g = {std::numeric_limits<float>::quiet_NaN(), 0.5f, 0.5f, 0.5f};
    float c = 0.0f, h = 0.0f;
    mk::table_for(isa).lstm_cell(1, g.data(), nullptr, &c, &h);
    CHECK(std::isnan(c));
    CHECK(std::isnan(h));
  }
}

TEST_CASE("dwconv2d of every ISA equals ref with stride, padding and dilation") {
  std::mt19937 rng(6);
  struct Conv {
    int64_t H, W, KH, KW, SH, SW, PH, PW, DH, DW;
  };
  const Conv convs[] = {
      {7, 9, 3, 3, 1, 1, 1, 1, 1, 1},   {8, 8, 3, 3, 2, 2, 1, 1, 1, 1},
      {10, 11, 3, 3, 1, 1, 2, 2, 2, 2}, {5, 17, 5, 5, 1, 2, 0, 3, 1, 1},
      {1, 1, 3, 3, 1, 1, 1, 1, 1, 1},   {12, 35, 3, 3, 1, 1, 1, 1, 1, 1},
      {6, 40, 1, 7, 1, 1, 0, 3, 1, 3},  {9, 9, 3, 3, 3, 3, 0, 0, 1, 1},
  };
  for (mk::Isa isa : simd_isas())
    for (const Conv& c : convs) {
      const int64_t OH = (c.H + 2 * c.PH - c.DH * (c.KH - 1) - 1) / c.SH + 1;
      const int64_t OW = (c.W + 2 * c.PW - c.DW * (c.KW - 1) - 1) / c.SW + 1;
      INFO(mk::isa_name(isa) << " H=" << c.H << " W=" << c.W << " K=" << c.KH << "x" << c.KW
                             << " OH=" << OH << " OW=" << OW);
      const auto in = random_floats(c.H * c.W, rng), w = random_floats(c.KH * c.KW, rng);
      std::vector<float> got(static_cast<size_t>(OH * OW + 16), kSentinel), want = got;
      mk::table_for(isa).dwconv2d(in.data(), c.H, c.W, w.data(), c.KH, c.KW, c.SH, c.SW, c.PH, c.PW,
                                  c.DH, c.DW, 0.25f, OH, OW, got.data());
      ref_table().dwconv2d(in.data(), c.H, c.W, w.data(), c.KH, c.KW, c.SH, c.SW, c.PH, c.PW, c.DH,
                           c.DW, 0.25f, OH, OW, want.data());
      check_close(got, want, 1e-5f, 1e-5f);
    }
}

TEST_CASE("dwconv2d_bwd of every ISA equals ref and is the adjoint of dwconv2d") {
  std::mt19937 rng(16);
  struct Conv {
    int64_t H, W, KH, KW, SH, SW, PH, PW, DH, DW;
  };
  const Conv convs[] = {
      {7, 9, 3, 3, 1, 1, 1, 1, 1, 1},   {8, 8, 3, 3, 2, 2, 1, 1, 1, 1},
      {10, 11, 3, 3, 1, 1, 2, 2, 2, 2}, {5, 17, 5, 5, 1, 2, 0, 3, 1, 1},
      {1, 1, 3, 3, 1, 1, 1, 1, 1, 1},   {12, 35, 3, 3, 1, 1, 1, 1, 1, 1},
      {6, 40, 1, 7, 1, 1, 0, 3, 1, 3},  {9, 9, 3, 3, 3, 3, 0, 0, 1, 1},
  };
  for (mk::Isa isa : mk::available_isas())
    for (const Conv& c : convs) {
      const int64_t OH = (c.H + 2 * c.PH - c.DH * (c.KH - 1) - 1) / c.SH + 1;
      const int64_t OW = (c.W + 2 * c.PW - c.DW * (c.KW - 1) - 1) / c.SW + 1;
      INFO(mk::isa_name(isa) << " H=" << c.H << " W=" << c.W << " K=" << c.KH << "x" << c.KW
                             << " OH=" << OH << " OW=" << OW);
      const mk::KernelTable& t = mk::table_for(isa);
      const auto in = random_floats(c.H * c.W, rng), w = random_floats(c.KH * c.KW, rng),
                 dy = random_floats(OH * OW, rng);
      // Accumulates into what is there; the sentinel tails must survive.
      std::vector<float> dx_got = random_floats(c.H * c.W, rng),
                         dw_got = random_floats(c.KH * c.KW, rng);
      dx_got.resize(dx_got.size() + 16, kSentinel);
      dw_got.resize(dw_got.size() + 16, kSentinel);
      std::vector<float> dx_want = dx_got, dw_want = dw_got;
      t.dwconv2d_bwd(in.data(), c.H, c.W, w.data(), c.KH, c.KW, c.SH, c.SW, c.PH, c.PW, c.DH, c.DW,
                     OH, OW, dy.data(), dx_got.data(), dw_got.data());
      ref_table().dwconv2d_bwd(in.data(), c.H, c.W, w.data(), c.KH, c.KW, c.SH, c.SW, c.PH, c.PW,
                               c.DH, c.DW, OH, OW, dy.data(), dx_want.data(), dw_want.data());
      check_close(dx_got, dx_want, 1e-5f, 1e-5f);
      check_close(dw_got, dw_want, 1e-5f, 1e-5f);
      // Either gradient alone gives the same as both at once.
      std::vector<float> dx_only(c.H * c.W, 0.0f), dw_only(c.KH * c.KW, 0.0f);
      t.dwconv2d_bwd(in.data(), c.H, c.W, w.data(), c.KH, c.KW, c.SH, c.SW, c.PH, c.PW, c.DH, c.DW,
                     OH, OW, dy.data(), dx_only.data(), nullptr);
      t.dwconv2d_bwd(in.data(), c.H, c.W, w.data(), c.KH, c.KW, c.SH, c.SW, c.PH, c.PW, c.DH, c.DW,
                     OH, OW, dy.data(), nullptr, dw_only.data());
      // Adjoint: <dwconv2d(in; w), dy> = <in, dx> = <w, dw> (bias 0, gradients from zero).
      std::vector<float> out(OH * OW);
      t.dwconv2d(in.data(), c.H, c.W, w.data(), c.KH, c.KW, c.SH, c.SW, c.PH, c.PW, c.DH, c.DW,
                 0.0f, OH, OW, out.data());
      double lhs = 0, via_dx = 0, via_dw = 0, scale = 0;
      for (int64_t i = 0; i < OH * OW; ++i)
        lhs += double(out[i]) * dy[i], scale += std::fabs(out[i] * dy[i]);
      for (int64_t i = 0; i < c.H * c.W; ++i) via_dx += double(in[i]) * dx_only[i];
      for (int64_t i = 0; i < c.KH * c.KW; ++i) via_dw += double(w[i]) * dw_only[i];
      CHECK(std::fabs(lhs - via_dx) <= 1e-5 * (scale + 1));
      CHECK(std::fabs(lhs - via_dw) <= 1e-5 * (scale + 1));
    }
}

TEST_CASE("im2col and col2im are adjoint (<im2col x, y> == <x, col2im y>) in every table") {
  std::mt19937 rng(7);
  const int64_t C = 3, H = 7, W = 6, KH = 3, KW = 2, SH = 2, SW = 1, PH = 1, PW = 1, DH = 1, DW = 2;
  const int64_t OH = (H + 2 * PH - DH * (KH - 1) - 1) / SH + 1;
  const int64_t OW = (W + 2 * PW - DW * (KW - 1) - 1) / SW + 1;
  const auto x = random_floats(C * H * W, rng), y = random_floats(C * KH * KW * OH * OW, rng);
  for (mk::Isa isa : mk::available_isas()) {
    const mk::KernelTable& t = mk::table_for(isa);
    std::vector<float> col(y.size()), img(x.size(), 0.0f);
    t.im2col(x.data(), C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, col.data(), OH * OW);
    t.col2im(y.data(), C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, img.data(), OH * OW);
    double lhs = 0.0, rhs = 0.0;
    for (size_t i = 0; i < col.size(); ++i) lhs += double(col[i]) * y[i];
    for (size_t i = 0; i < img.size(); ++i) rhs += double(x[i]) * img[i];
    CHECK(lhs == doctest::Approx(rhs).epsilon(1e-5));  // col2im accumulates in float
  }
}

TEST_CASE("im2col and col2im of every ISA equal ref with stride, padding and dilation") {
  std::mt19937 rng(18);
  struct Conv {
    int64_t C, H, W, KH, KW, SH, SW, PH, PW, DH, DW;
  };
  const Conv convs[] = {
      {3, 7, 9, 3, 3, 1, 1, 1, 1, 1, 1},
      {2, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1},
      {2, 10, 11, 3, 3, 1, 1, 2, 2, 2, 2},
      {1, 5, 17, 5, 5, 1, 2, 0, 3, 1, 1},
      {4, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1},
      {2, 12, 35, 3, 3, 1, 1, 1, 1, 1, 1},
      {1, 6, 40, 1, 7, 1, 1, 0, 3, 1, 3},
      {3, 4, 4, 1, 1, 1, 1, 0, 0, 1, 1},
      {2, 32, 33, 3, 3, 1, 1, 1, 1, 1, 1},
      {1, 3, 2, 3, 3, 1, 1, 2, 2, 1, 1},
      // Stride 2 over rows long enough for whole vectors of even elements (W = 4, 8, 16), up to
      // the row's last element (ASan: no read past it).
      {2, 9, 70, 3, 3, 2, 2, 1, 1, 1, 1},
      {1, 4, 67, 1, 1, 2, 2, 0, 0, 1, 1},
      {2, 5, 64, 3, 3, 2, 2, 0, 0, 1, 1},
      {1, 3, 66, 3, 3, 2, 2, 0, 0, 1, 1},
      // Stride 1 without column padding (whole vectors, then one partial copy per row): the
      // reference CNN's convs (rows of 24 and 8 floats), rows of exactly 16 and of 36 (dilated),
      // and padded rows above and below.
      {1, 28, 28, 5, 5, 1, 1, 0, 0, 1, 1},
      {32, 12, 12, 5, 5, 1, 1, 0, 0, 1, 1},
      {1, 4, 19, 1, 4, 1, 1, 0, 0, 1, 1},
      {1, 10, 40, 3, 3, 1, 1, 0, 0, 2, 2},
      {2, 6, 9, 3, 3, 1, 1, 1, 0, 1, 1},
  };
  for (mk::Isa isa : simd_isas())
    for (const Conv& c : convs) {
      const int64_t OH = (c.H + 2 * c.PH - c.DH * (c.KH - 1) - 1) / c.SH + 1;
      const int64_t OW = (c.W + 2 * c.PW - c.DW * (c.KW - 1) - 1) / c.SW + 1;
      const int64_t rows = c.C * c.KH * c.KW, ld = OH * OW + 3;
      INFO(mk::isa_name(isa) << " C=" << c.C << " H=" << c.H << " W=" << c.W << " K=" << c.KH << "x"
                             << c.KW << " OH=" << OH << " OW=" << OW);
      const mk::KernelTable& t = mk::table_for(isa);
      const auto img = random_floats(c.C * c.H * c.W, rng);
      std::vector<float> got(rows * ld + 16, kSentinel), want = got;
      t.im2col(img.data(), c.C, c.H, c.W, c.KH, c.KW, c.SH, c.SW, c.PH, c.PW, c.DH, c.DW, OH, OW,
               got.data(), ld);
      ref_table().im2col(img.data(), c.C, c.H, c.W, c.KH, c.KW, c.SH, c.SW, c.PH, c.PW, c.DH, c.DW,
                         OH, OW, want.data(), ld);
      check_close(got, want, 0.0f, 0.0f);  // a copy: bit for bit, padding columns untouched
      const auto col = random_floats(rows * ld, rng);
      std::vector<float> img_got = random_floats(c.C * c.H * c.W, rng);
      img_got.resize(img_got.size() + 16, kSentinel);
      std::vector<float> img_want = img_got;
      t.col2im(col.data(), c.C, c.H, c.W, c.KH, c.KW, c.SH, c.SW, c.PH, c.PW, c.DH, c.DW, OH, OW,
               img_got.data(), ld);
      ref_table().col2im(col.data(), c.C, c.H, c.W, c.KH, c.KW, c.SH, c.SW, c.PH, c.PW, c.DH, c.DW,
                         OH, OW, img_want.data(), ld);
      check_close(img_got, img_want, 0.0f, 0.0f);  // same additions in the same order
    }
}

TEST_CASE("im2col and col2im with a wider row stride touch only their own columns") {
  std::mt19937 rng(17);
  const int64_t C = 2, H = 5, W = 4, KH = 3, KW = 3, SH = 1, SW = 2, PH = 1, PW = 1, DH = 1, DW = 1;
  const int64_t OH = (H + 2 * PH - DH * (KH - 1) - 1) / SH + 1;
  const int64_t OW = (W + 2 * PW - DW * (KW - 1) - 1) / SW + 1;
  const int64_t P = OH * OW, rows = C * KH * KW, ld = 3 * P + 5, offset = P + 2;
  const auto x = random_floats(C * H * W, rng), y = random_floats(rows * ld, rng);
  for (mk::Isa isa : mk::available_isas()) {
    const mk::KernelTable& t = mk::table_for(isa);
    std::vector<float> narrow(rows * P), wide(rows * ld, kSentinel);
    t.im2col(x.data(), C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, narrow.data(), P);
    t.im2col(x.data(), C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, wide.data() + offset, ld);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < ld; ++j) {
        const int64_t k = j - offset;
        if (k >= 0 && k < P)
          CHECK(wide[r * ld + j] == narrow[r * P + k]);
        else
          CHECK(wide[r * ld + j] == kSentinel);  // columns of other images are left alone
      }
    // col2im reads the same columns: the wide layout gives what the narrow copy gives.
    std::vector<float> packed(rows * P), img_narrow(x.size(), 0.5f), img_wide(x.size(), 0.5f);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t k = 0; k < P; ++k) packed[r * P + k] = y[r * ld + offset + k];
    t.col2im(packed.data(), C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, img_narrow.data(), P);
    t.col2im(y.data() + offset, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, img_wide.data(),
             ld);
    CHECK(img_wide == img_narrow);
  }
}

TEST_CASE("max_pool_2x2 of every ISA equals ref: values, winner indices, ties and NaN planes") {
  // Row lengths around the vector widths (4, 8, 16: whole vectors and partial tails), one or
  // three output rows, odd leftover columns and rows that are never read; values on a coarse
  // grid so ties are common (the first in scan order must win), zeros of both signs and
  // infinities; then a NaN, which every table must report (the caller redoes its windows).
  std::mt19937 rng(21);
  std::uniform_int_distribution<int> grid(-3, 3);
  const float specials[] = {0.0f, -0.0f, std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()};
  for (mk::Isa isa : simd_isas()) {
    const mk::KernelTable& t = mk::table_for(isa);
    for (int64_t OW = 1; OW <= 37; ++OW)
      for (int64_t OH : {1, 3})
        for (int variant = 0; variant < 3; ++variant) {
          INFO(mk::isa_name(isa) << " OH " << OH << " OW " << OW << " variant " << variant);
          const int64_t W = 2 * OW + (variant == 2 ? 3 : 0), H = 2 * OH + (variant == 2 ? 1 : 0);
          std::vector<float> x(static_cast<size_t>(H * W));
          for (float& v : x) v = static_cast<float>(grid(rng)) * 0.5f;
          if (variant >= 1)
            for (int k = 0; k < 6; ++k)
              x[static_cast<size_t>(rng() % x.size())] = specials[rng() % 4];
          const size_t P = static_cast<size_t>(OH * OW);
          std::vector<float> y(P + 1, kSentinel), y_ref = y;
          std::vector<int32_t> arg(P + 1, -7), arg_ref = arg;
          const bool bad = t.max_pool_2x2(OH, OW, x.data(), W, y.data(), arg.data());
          const bool bad_ref =
              ref_table().max_pool_2x2(OH, OW, x.data(), W, y_ref.data(), arg_ref.data());
          CHECK_FALSE(bad_ref);
          if (variant == 0) CHECK_FALSE(bad);  // all finite: no false alarm
          for (size_t i = 0; i < P; ++i) {
            INFO("output " << i);
            CHECK(y[i] == y_ref[i]);
            CHECK(arg[i] == arg_ref[i]);
          }
          CHECK(y[P] == kSentinel);  // nothing written past the plane
          CHECK(arg[P] == -7);
          std::vector<float> y_only(P);
          t.max_pool_2x2(OH, OW, x.data(), W, y_only.data(), nullptr);
          for (size_t i = 0; i < P; ++i) CHECK(y_only[i] == y_ref[i]);
          // A NaN in any window is reported by every table.
          const int64_t oh = static_cast<int64_t>(rng() % static_cast<uint32_t>(2 * OH)),
                        ow = static_cast<int64_t>(rng() % static_cast<uint32_t>(2 * OW));
          x[static_cast<size_t>(oh * W + ow)] = std::numeric_limits<float>::quiet_NaN();
          CHECK(t.max_pool_2x2(OH, OW, x.data(), W, y.data(), arg.data()));
          CHECK(ref_table().max_pool_2x2(OH, OW, x.data(), W, y_ref.data(), arg_ref.data()));
        }
  }
}

TEST_CASE(
    "wino_tile16 of every ISA equals ref and a dense L · in · Lᵀ, strided, written or added") {
  // Random sparse L of the transforms' sizes (R, K ≤ 8), in and out strided apart with gaps
  // between the 16-float entries that must stay untouched; acc adds to what out holds.
  std::mt19937 rng(21);
  const int sizes[][2] = {{6, 6}, {4, 6}, {6, 4}, {8, 8}, {4, 8}, {8, 4}, {8, 5}, {5, 8}, {1, 1}};
  for (const auto& rk : sizes) {
    const int R = rk[0], K = rk[1];
    std::vector<float> dense(static_cast<size_t>(R * K), 0.0f);
    mk::SparseRows L;
    L.rows = R;
    L.cols = K;
    std::uniform_real_distribution<float> u(-2.0f, 2.0f);
    for (int i = 0; i < R; ++i)
      for (int k = 0; k < K; ++k)
        if (rng() % 3 != 0) {  // about a third zeros
          const float v = u(rng);
          dense[size_t(i * K + k)] = v;
          L.col[i][L.n[i]] = static_cast<int8_t>(k);
          L.val[i][L.n[i]++] = v;
        }
    const int64_t in_cs = 20, in_rs = K * in_cs + 7, out_cs = 24, out_rs = R * out_cs + 3;
    const auto in = random_floats(K * in_rs, rng);
    // The dense product in double.
    std::vector<double> want(static_cast<size_t>(R * R * 16), 0.0);
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < R; ++j)
        for (int l = 0; l < 16; ++l)
          for (int p = 0; p < K; ++p)
            for (int q = 0; q < K; ++q)
              want[size_t((i * R + j) * 16 + l)] += double(dense[size_t(i * K + p)]) *
                                                    in[size_t(p * in_rs + q * in_cs + l)] *
                                                    dense[size_t(j * K + q)];
    const auto base = random_floats(R * out_rs, rng);
    for (bool acc : {false, true})
      for (mk::Isa isa : mk::available_isas()) {
        INFO(mk::isa_name(isa) << " R=" << R << " K=" << K << (acc ? " acc" : ""));
        std::vector<float> out = acc ? base : std::vector<float>(base.size(), kSentinel);
        const std::vector<float> before = out;
        mk::table_for(isa).wino_tile16(L, in.data(), in_rs, in_cs, out.data(), out_rs, out_cs, acc);
        int bad = 0;
        for (size_t x = 0; x < out.size(); ++x) {
          const int64_t i = int64_t(x) / out_rs, rem = int64_t(x) % out_rs, j = rem / out_cs,
                        l = rem % out_cs;
          if (i < R && j < R && l < 16) {
            const double w = want[size_t((i * R + j) * 16 + l)] + (acc ? double(before[x]) : 0.0);
            bad += std::fabs(out[x] - w) > 1e-4 * (1.0 + std::fabs(w));
          } else {
            bad += !(out[x] == before[x] || (std::isnan(out[x]) && std::isnan(before[x])));
          }
        }
        CHECK(bad == 0);
      }
  }
}

TEST_CASE("adam of every ISA equals ref (coupled L2 and decoupled weight decay)") {
  std::mt19937 rng(8);
  for (mk::Isa isa : simd_isas())
    for (int64_t n : {0, 1, 15, 16, 17, 31, 33, 1000}) {
      INFO(mk::isa_name(isa) << " n=" << n);
      const auto g = random_floats(n, rng);
      std::vector<float> p = random_floats(n, rng), m = random_floats(n, rng, -0.1f, 0.1f),
                         v = random_floats(n, rng, 0.0f, 0.01f);
      std::vector<float> p_ref = p, m_ref = m, v_ref = v;
      const float b1 = 0.9f, b2 = 0.999f, bc1 = 1.0f - std::pow(b1, 3.0f),
                  bc2 = 1.0f - std::pow(b2, 3.0f);
      mk::table_for(isa).adam(n, p.data(), g.data(), m.data(), v.data(), 1e-3f, b1, b2, 1e-8f,
                              1e-4f, 1e-2f, bc1, bc2);
      ref_table().adam(n, p_ref.data(), g.data(), m_ref.data(), v_ref.data(), 1e-3f, b1, b2, 1e-8f,
                       1e-4f, 1e-2f, bc1, bc2);
      check_close(p, p_ref, 1e-5f, 1e-7f);
      check_close(m, m_ref, 1e-5f, 1e-7f);
      check_close(v, v_ref, 1e-5f, 1e-9f);
    }
}
