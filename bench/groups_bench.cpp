// What tags and tenants cost (bench/RESULTS.md, "Tags" and "Tenants"): invalidate_tag() of a tag of
// 16 entries in stores holding 10,000 / 100,000 / 1,000,000 other tagged entries (it must not grow
// with the store), and the put and get cost of a tagged_store against a plain sharded_store in the
// same run (uint64 keys and values, one thread, the median of 5 rounds); and a tenant view's get
// and put against the same store's with a tenant_key built by hand. Not built by CMake:
//   g++ -std=c++20 -O3 -DNDEBUG -Iinclude bench/groups_bench.cpp -o /tmp/groups_bench
//       $(pkg-config --libs libxxhash) -labsl_hash -labsl_city -labsl_low_level_hash
//       -labsl_raw_hash_set -lpthread   (one command line)
#include <algorithm>
#include <cachet/sharded_store.hpp>
#include <cachet/tags.hpp>
#include <cachet/tenants.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace {
using clk = std::chrono::steady_clock;
using plain_t = cachet::sharded_store<std::uint64_t, std::uint64_t>;
using store_t = cachet::sharded_store<std::uint64_t, cachet::tagged_value<std::uint64_t>>;
using tagged_t = cachet::tagged_store<store_t>;

template <class F>
double median_ns(int rounds, std::uint64_t per_round, F f) {
  std::vector<double> v;
  for (int r = 0; r < rounds; ++r) {
    const auto t0 = clk::now();
    f(r);
    v.push_back(std::chrono::duration<double, std::nano>(clk::now() - t0).count() /
                static_cast<double>(per_round));
  }
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

volatile std::uint64_t sink;
}  // namespace

int main() {
  std::printf("invalidate_tag of 16 entries, store holding N tagged entries (us per call)\n");
  for (std::uint64_t n : {10'000u, 100'000u, 1'000'000u}) {
    tagged_t c(store_t::options_type{.max_entries = n + 64});
    for (std::uint64_t i = 0; i < n; ++i)
      c.put(i, i, {std::string("bulk") + std::to_string(i % 64)});
    std::vector<double> us;
    for (int r = 0; r < 9; ++r) {
      for (std::uint64_t i = 0; i < 16; ++i) c.put(n + i, i, {"small"});
      const auto t0 = clk::now();
      sink = c.invalidate_tag("small");
      us.push_back(std::chrono::duration<double, std::micro>(clk::now() - t0).count());
    }
    std::sort(us.begin(), us.end());
    const double ns = us[us.size() / 2] * 1000.0;
    std::printf("  N = %8llu: %.2f us (median of 9)\n", static_cast<unsigned long long>(n),
                ns / 1000.0);
  }

  constexpr std::uint64_t k_n = 200'000;
  plain_t plain({.max_entries = k_n});
  tagged_t tagged(store_t::options_type{.max_entries = k_n});
  const std::string tags3[] = {"product:1", "category:2", "deploy:3"};
  const double put_plain = median_ns(5, k_n, [&](int r) {
    for (std::uint64_t i = 0; i < k_n; ++i) plain.put(i, i + static_cast<std::uint64_t>(r));
  });
  const double put_untagged = median_ns(5, k_n, [&](int r) {
    for (std::uint64_t i = 0; i < k_n; ++i) tagged.put(i, i + static_cast<std::uint64_t>(r));
  });
  const double put_1 = median_ns(5, k_n, [&](int r) {
    for (std::uint64_t i = 0; i < k_n; ++i)
      tagged.put(i, i + static_cast<std::uint64_t>(r), {tags3[i % 3]});
  });
  const double put_3 = median_ns(5, k_n, [&](int r) {
    for (std::uint64_t i = 0; i < k_n; ++i)
      tagged.put(i, i + static_cast<std::uint64_t>(r), std::span<const std::string>(tags3));
  });
  const double get_plain = median_ns(5, k_n, [&](int) {
    std::uint64_t s = 0;
    for (std::uint64_t i = 0; i < k_n; ++i) s += *plain.get((i * 2654435761u) % k_n);
    sink = s;
  });
  const double get_tagged = median_ns(5, k_n, [&](int) {
    std::uint64_t s = 0;
    for (std::uint64_t i = 0; i < k_n; ++i) s += *tagged.get((i * 2654435761u) % k_n);
    sink = s;
  });
  std::printf("ns per op, %llu keys, one thread (ratio to the plain store in this run)\n",
              static_cast<unsigned long long>(k_n));
  std::printf("  put, plain sharded_store: %.1f\n", put_plain);
  std::printf("  put, tagged_store, no tags: %.1f (%.2fx)\n", put_untagged,
              put_untagged / put_plain);
  std::printf("  put, tagged_store, 1 tag (replacing a tagged entry): %.1f (%.2fx)\n", put_1,
              put_1 / put_plain);
  std::printf("  put, tagged_store, 3 tags (replacing a tagged entry): %.1f (%.2fx)\n", put_3,
              put_3 / put_plain);
  std::printf("  get, plain: %.1f; tagged_store: %.1f (%.2fx)\n", get_plain, get_tagged,
              get_tagged / get_plain);

  // Tenants: the same store type, read through a view and directly.
  using tstore_t = cachet::sharded_store<cachet::tenant_key<std::uint64_t>, std::uint64_t>;
  cachet::tenant_store<tstore_t> shared(tstore_t::options_type{.max_entries = 2 * k_n});
  auto view = shared.open("a", {.max_entries = k_n});
  tstore_t direct({.max_entries = 2 * k_n});
  for (std::uint64_t i = 0; i < k_n; ++i) {
    view.put(i, i);
    direct.put({0, i}, i);
  }
  const double tget_direct = median_ns(5, k_n, [&](int) {
    std::uint64_t s = 0;
    for (std::uint64_t i = 0; i < k_n; ++i) s += *direct.get({0, (i * 2654435761u) % k_n});
    sink = s;
  });
  const double tget_view = median_ns(5, k_n, [&](int) {
    std::uint64_t s = 0;
    for (std::uint64_t i = 0; i < k_n; ++i) s += *view.get((i * 2654435761u) % k_n);
    sink = s;
  });
  const double tput_direct = median_ns(5, k_n, [&](int r) {
    for (std::uint64_t i = 0; i < k_n; ++i) direct.put({0, i}, i + static_cast<std::uint64_t>(r));
  });
  const double tput_view = median_ns(5, k_n, [&](int r) {
    for (std::uint64_t i = 0; i < k_n; ++i) view.put(i, i + static_cast<std::uint64_t>(r));
  });
  std::printf("tenant view against the store with tenant_key by hand, ns per op\n");
  std::printf("  get: direct %.1f, view %.1f (%.2fx)\n", tget_direct, tget_view,
              tget_view / tget_direct);
  std::printf("  put (replacing): direct %.1f, view %.1f (%.2fx)\n", tput_direct, tput_view,
              tput_view / tput_direct);
}
