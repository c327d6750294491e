// Tests of cachet-sim's engine (bench/sim/simulate.hpp): it drives the real store with the policy's
// exact semantics (one shard = textbook LRU / FIFO, checked against plain models), runs in parallel
// without changing results, and knows every policy by name.
#include "sim/simulate.hpp"

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

// A skewed, scanning, deterministic workload: hot keys, a Zipf-like middle and one-off scans.
std::vector<std::uint64_t> workload(std::size_t n) {
  std::vector<std::uint64_t> keys;
  keys.reserve(n);
  std::uint64_t x = 0x9E3779B97F4A7C15ULL;
  for (std::size_t i = 0; i < n; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    const std::uint64_t r = x >> 33;
    if (i % 1000 < 50) {
      keys.push_back(1'000'000 + i);  // a scan of keys never seen again
    } else if (r % 4 == 0) {
      keys.push_back(r % 20);  // hot
    } else {
      const double u = static_cast<double>(r % 1'000'000) / 1e6;
      keys.push_back(static_cast<std::uint64_t>(u * u * u * 3000));  // skewed toward 0
    }
  }
  return keys;
}

// Textbook models: a hit moves an LRU entry to the front; FIFO order never changes on a hit.
std::uint64_t model_hits(const std::vector<std::uint64_t>& keys, std::size_t cap, bool lru) {
  std::list<std::uint64_t> order;  // front = newest
  std::unordered_map<std::uint64_t, std::list<std::uint64_t>::iterator> where;
  std::uint64_t hits = 0;
  for (const std::uint64_t k : keys) {
    const auto it = where.find(k);
    if (it != where.end()) {
      ++hits;
      if (lru) order.splice(order.begin(), order, it->second);
      continue;
    }
    if (order.size() == cap) {
      where.erase(order.back());
      order.pop_back();
    }
    order.push_front(k);
    where[k] = order.begin();
  }
  return hits;
}

}  // namespace

TEST_CASE("simulate: one shard gives exactly LRU and FIFO", "[sim]") {
  const auto keys = workload(30'000);
  for (const std::size_t cap : {1u, 7u, 100u, 2000u}) {
    INFO("capacity " << cap);
    const auto lru = cachet_sim::simulate<cachet::lru>(keys, cap, 1);
    CHECK(lru.requests == keys.size());
    CHECK(lru.hits == model_hits(keys, cap, true));
    CHECK(cachet_sim::simulate<cachet::fifo>(keys, cap, 1).hits == model_hits(keys, cap, false));
    // With no TTLs, the ttl policy keeps insertion order: FIFO.
    CHECK(cachet_sim::simulate<cachet::ttl>(keys, cap, 1).hits == model_hits(keys, cap, false));
  }
}

TEST_CASE(
    "simulate: no_eviction keeps the first keys; a loop one larger than the cache defeats "
    "LRU",
    "[sim]") {
  std::vector<std::uint64_t> loop;
  for (int round = 0; round < 20; ++round) {
    for (std::uint64_t k = 0; k < 101; ++k) loop.push_back(k);
  }
  CHECK(cachet_sim::simulate<cachet::lru>(loop, 100, 1).hits == 0);
  CHECK(cachet_sim::simulate<cachet::fifo>(loop, 100, 1).hits == 0);
  // no_eviction holds keys 0..99 for good: every later pass hits 100 of 101.
  CHECK(cachet_sim::simulate<cachet::no_eviction>(loop, 100, 1).hits == 19 * 100);
  CHECK(cachet_sim::simulate<cachet::random>(loop, 100, 1).hits > 0);
}

TEST_CASE("simulate: sharding changes the policy's scope, not the request count", "[sim]") {
  const auto keys = workload(30'000);
  const auto one = cachet_sim::simulate<cachet::lru>(keys, 1024, 1);
  const auto eight = cachet_sim::simulate<cachet::lru>(keys, 1024, 8);
  CHECK(eight.requests == one.requests);
  CHECK(eight.hits > 0);
  CHECK(eight.hits != one.hits);  // each shard evicts from its own 128 entries
  CHECK_THROWS_AS(cachet_sim::simulate<cachet::lru>(keys, 4, 8), cachet::invalid_option);
}

TEST_CASE("simulate: the hash seed makes runs reproducible and is what sharding depends on",
          "[sim]") {
  const auto keys = workload(30'000);
  const auto a = cachet_sim::simulate<cachet::lru>(keys, 1024, 8, nullptr, 11);
  const auto b = cachet_sim::simulate<cachet::lru>(keys, 1024, 8, nullptr, 11);
  const auto c = cachet_sim::simulate<cachet::lru>(keys, 1024, 8, nullptr, 12);
  CHECK(a.hits == b.hits);  // not seeded per process
  CHECK(a.hits != c.hits);  // another seed gives each shard other keys
  // With one shard, lru does not read the hash at all.
  CHECK(cachet_sim::simulate<cachet::lru>(keys, 1024, 1, nullptr, 11).hits ==
        cachet_sim::simulate<cachet::lru>(keys, 1024, 1, nullptr, 12).hits);
  // The seed travels through simulate_named and run_all.
  CHECK(cachet_sim::simulate_named("lru", keys, 1024, 8, nullptr, 12).hits == c.hits);
  const auto all = cachet_sim::run_all(keys, {{"lru", 1024, 8, 11}, {"lru", 1024, 8, 12}}, 2);
  CHECK(all[0].hits == a.hits);
  CHECK(all[1].hits == c.hits);
}

TEST_CASE("simulate: the registry, named runs and parallel runs agree", "[sim]") {
  const auto names = cachet_sim::policy_names();
  for (const char* required : {"lru", "fifo", "lfu", "ttl", "random", "no_eviction"}) {
    CHECK(cachet_sim::is_policy(required));
  }
  CHECK_FALSE(cachet_sim::is_policy("LRU"));
  CHECK_FALSE(cachet_sim::is_policy("all"));
  CHECK_THROWS_AS(cachet_sim::simulate_named("nope", {}, 10, 1), std::invalid_argument);

  const auto keys = workload(8'000);
  std::vector<cachet_sim::run_spec> specs;
  for (const auto& n : names) {
    for (const std::size_t cap : {50u, 500u}) specs.push_back({n, cap, 1});
  }
  std::atomic<std::uint64_t> progress{0};
  const auto par = cachet_sim::run_all(keys, specs, 3, &progress);
  const auto seq = cachet_sim::run_all(keys, specs, 1);
  REQUIRE(par.size() == specs.size());
  CHECK(progress.load() == keys.size() * specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i) {
    INFO(specs[i].policy << " at " << specs[i].capacity);
    CHECK(par[i].requests == keys.size());
    CHECK(par[i].hits == seq[i].hits);  // deterministic: seeded per store, not per thread
    CHECK(par[i].hits ==
          cachet_sim::simulate_named(specs[i].policy, keys, specs[i].capacity, 1).hits);
  }
  // A failing run (more shards than entries) surfaces from run_all after the others are joined.
  specs.push_back({"lru", 2, 4});
  CHECK_THROWS_AS(cachet_sim::run_all(keys, specs, 2), cachet::invalid_option);
}

TEST_CASE("simulate: log_spaced sizes", "[sim]") {
  const auto s = cachet_sim::log_spaced(100, 3000, 12);
  REQUIRE(s.size() == 12);
  CHECK(s.front() == 100);
  CHECK(s.back() == 3000);
  for (std::size_t i = 1; i < s.size(); ++i) {
    CHECK(s[i] > s[i - 1]);
    // Constant ratio (3000/100)^(1/11) = 1.362 between neighbours, up to rounding.
    CHECK(static_cast<double>(s[i]) / static_cast<double>(s[i - 1]) == Approx(1.362).margin(0.02));
  }
  CHECK(cachet_sim::log_spaced(5, 6, 10) == std::vector<std::size_t>{5, 6});
  CHECK(cachet_sim::log_spaced(10, 10, 3) == std::vector<std::size_t>{10});
  CHECK(cachet_sim::log_spaced(10, 1000, 1) == std::vector<std::size_t>{10});
  CHECK(cachet_sim::log_spaced(10, 1000, 3) == std::vector<std::size_t>{10, 100, 1000});
  CHECK(cachet_sim::log_spaced(10, 5, 3).empty());
}
