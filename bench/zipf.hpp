// Scrambled-Zipf key generation for the cachet benchmarks.
//
// Ranks are drawn with the rejection-free method of Gray et al.,
// "Quickly Generating Billion-Record Synthetic Databases" (SIGMOD '94), the
// same generator YCSB uses. A rank r in [0, n) has probability approximately
// proportional to 1 / (r + 1)^theta: ranks 0 and 1 are exact, the closed-form
// inversion for the rest is an approximation (e.g. rank 2 comes out ~20% too
// often at theta = 0.99, n = 2^16), which is the accepted YCSB behaviour. "Scrambled" means the rank is passed through a 64-bit
// mixing bijection and then reduced mod n (as YCSB's ScrambledZipfian does), so
// the hottest keys are spread over the key space instead of being 0, 1, 2...
// The final reduction mod n is not injective, so a few ranks collide and a few
// keys are never drawn; that is the accepted YCSB behaviour. Benchmarks that
// need every key present prefill [0, n) explicitly.
//
// Everything is deterministic given the seed. Keys are generated up front into
// an array whose length is a power of two so the timed loop only does
// `keys[i++ & mask]`.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include <cachet/hash.hpp>

namespace cachet_bench {

// splitmix64's finaliser, a bijection on 64 bits: the library's own (cachet/hash.hpp).
using cachet::detail::mix64;

// Small, fast, deterministic PRNG (splitmix64).
class splitmix64 {
 public:
  explicit constexpr splitmix64(std::uint64_t seed) noexcept : state_(seed) {}

  constexpr std::uint64_t next() noexcept {
    state_ += 0x9e3779b97f4a7c15ULL;
    return mix64(state_);
  }

  // Uniform double in [0, 1) with 53 random bits.
  double next_double() noexcept {
    return static_cast<double>(next() >> 11) * 0x1.0p-53;
  }

 private:
  std::uint64_t state_;
};

// Generalized harmonic number H(n, theta) = sum_{i=1..n} i^-theta.
// Exact summation up to 2^24 terms; beyond that the tail is approximated
// with Euler-Maclaurin (relative error far below what matters here).
inline double zeta(std::uint64_t n, double theta) {
  constexpr std::uint64_t exact_limit = std::uint64_t{1} << 24;
  const std::uint64_t m = n < exact_limit ? n : exact_limit;
  double sum = 0.0;
  for (std::uint64_t i = m; i >= 1; --i) {  // small terms first: less rounding
    sum += std::pow(static_cast<double>(i), -theta);
  }
  if (n > m) {
    const double a = static_cast<double>(m);
    const double b = static_cast<double>(n);
    auto f = [theta](double x) { return std::pow(x, -theta); };
    auto df = [theta](double x) { return -theta * std::pow(x, -theta - 1.0); };
    const double integral =
        (std::pow(b, 1.0 - theta) - std::pow(a, 1.0 - theta)) / (1.0 - theta);
    sum += integral + (f(b) - f(a)) / 2.0 + (df(b) - df(a)) / 12.0;
  }
  return sum;
}

// Zipf-distributed ranks in [0, n), 0 being the most popular.
// Requires 0 < theta < 1 (the Gray et al. closed form needs theta != 1).
class zipf_generator {
 public:
  explicit zipf_generator(std::uint64_t n, double theta = 0.99) : n_(n), theta_(theta) {
    if (n < 2) throw std::invalid_argument("zipf_generator: n must be >= 2");
    if (!(theta > 0.0 && theta < 1.0)) {
      throw std::invalid_argument("zipf_generator: theta must be in (0, 1)");
    }
    zetan_ = zeta(n, theta);
    const double zeta2 = 1.0 + std::pow(2.0, -theta);
    alpha_ = 1.0 / (1.0 - theta);
    eta_ = (1.0 - std::pow(2.0 / static_cast<double>(n), 1.0 - theta)) /
           (1.0 - zeta2 / zetan_);
    second_threshold_ = 1.0 + std::pow(0.5, theta);
  }

  template <class Rng>
  std::uint64_t operator()(Rng& rng) const {
    const double u = rng.next_double();
    const double uz = u * zetan_;
    if (uz < 1.0) return 0;
    if (uz < second_threshold_) return 1;
    const auto r = static_cast<std::uint64_t>(
        static_cast<double>(n_) * std::pow(eta_ * u - eta_ + 1.0, alpha_));
    return r < n_ ? r : n_ - 1;  // guard against rounding at u -> 1
  }

  std::uint64_t n() const noexcept { return n_; }
  double theta() const noexcept { return theta_; }

 private:
  std::uint64_t n_;
  double theta_;
  double zetan_ = 0.0;
  double alpha_ = 0.0;
  double eta_ = 0.0;
  double second_threshold_ = 0.0;
};

// Zipf rank -> mix64 -> mod n.
class scrambled_zipf_generator {
 public:
  explicit scrambled_zipf_generator(std::uint64_t n, double theta = 0.99)
      : zipf_(n, theta) {}

  template <class Rng>
  std::uint64_t operator()(Rng& rng) const {
    return mix64(zipf_(rng)) % zipf_.n();
  }

  std::uint64_t n() const noexcept { return zipf_.n(); }

 private:
  zipf_generator zipf_;
};

// A pre-generated, power-of-two-sized array of scrambled-Zipf keys in [0, n).
// Threads share one array and start at different offsets (see offset_for),
// which is what Caffeine's GetPutBenchmark does; the sequence each thread
// sees is still Zipf-distributed and deterministic.
class key_stream {
 public:
  key_stream(std::uint64_t n, std::size_t log2_count, std::uint64_t seed,
             double theta = 0.99)
      : keys_(std::size_t{1} << log2_count), mask_(keys_.size() - 1) {
    scrambled_zipf_generator gen(n, theta);
    splitmix64 rng(seed);
    for (auto& k : keys_) k = gen(rng);
  }

  std::uint64_t operator[](std::size_t i) const noexcept { return keys_[i & mask_]; }
  const std::uint64_t* data() const noexcept { return keys_.data(); }
  std::size_t size() const noexcept { return keys_.size(); }
  std::size_t mask() const noexcept { return mask_; }

  // Starting index for thread `index` of `count`: evenly spaced, far apart.
  std::size_t offset_for(std::size_t index, std::size_t count) const noexcept {
    return count == 0 ? 0 : (index * keys_.size() / count) & mask_;
  }

 private:
  std::vector<std::uint64_t> keys_;
  std::size_t mask_;
};

}  // namespace cachet_bench
