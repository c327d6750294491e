// Concurrency stress over every backend: several threads run a mixed random workload (get, put, put
// with a TTL, erase, contains) on a small key space while one of them advances a manual clock, then
// the test checks per-key linearisability ("a present key maps to the last value written for it"),
// the capacity bound, and the exact accounting of stats() and of the removal listener. A variant
// runs erase_if / for_each / clear / cleanup in a further thread alongside the writers.
//
// Each worker owns the keys with key % k_threads == its id and is their only writer, so it knows
// the last value it wrote to each of them. Any thread may read any key. Deterministic seeds; no
// sleeps. Catch2 assertions are not thread-safe, so workers record problems and the main thread
// checks them.
#include <atomic>
#include <cachet/cachet.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__SANITIZE_THREAD__)
#define CACHET_STRESS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CACHET_STRESS_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define CACHET_STRESS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CACHET_STRESS_ASAN 1
#endif
#endif

namespace {

#if defined(CACHET_STRESS_TSAN)
constexpr int k_ops_per_thread = 8'000;
#elif defined(CACHET_STRESS_ASAN)
constexpr int k_ops_per_thread = 10'000;
#else
constexpr int k_ops_per_thread = 20'000;
#endif
constexpr int k_threads = 4;
constexpr std::uint64_t k_keys = 512;
constexpr std::size_t k_capacity = 128;
constexpr std::chrono::milliseconds k_tick{1};

using key_type = std::uint64_t;
using value_t =
    std::string;  // not trivially destructible: removed values leave the lock in a buffer

// "k<key>#<seq>", padded past the small-string buffer for every third write.
value_t make_value(key_type key, std::uint64_t seq) {
  value_t v = "k" + std::to_string(key) + "#" + std::to_string(seq);
  if (seq % 3 == 0) v.append(40, '.');
  return v;
}
std::string value_prefix(key_type key) { return "k" + std::to_string(key) + "#"; }
bool value_is_for(const value_t& v, key_type key) { return v.rfind(value_prefix(key), 0) == 0; }

enum class last_op : unsigned char { none, stored, erased, rejected };

// What one worker did, and what it saw go wrong.
struct worker_log {
  std::vector<value_t> last_value = std::vector<value_t>(k_keys);  // for the keys this worker owns
  std::vector<last_op> last = std::vector<last_op>(k_keys, last_op::none);
  std::uint64_t gets = 0, puts = 0;
  std::uint64_t inserted = 0, replaced = 0, rejected = 0, erased_true = 0;
  std::vector<std::string> errors;

  void error(std::string e) {
    if (errors.size() < 10) errors.push_back(std::move(e));
  }
};

struct listener_counts {
  std::atomic<std::uint64_t> explicit_erase{0}, replaced{0}, expired{0}, evicted{0}, cleared{0};
  std::atomic<std::uint64_t> mismatched{0};  // a removed value that does not belong to its key
};

template <class Policy>
using store_t = cachet::sharded_store<key_type, value_t, Policy, cachet::manual_clock>;

template <class Policy>
void run_worker(store_t<Policy>& store, cachet::manual_clock clock, int id, std::uint64_t seed,
                worker_log& log) {
  std::mt19937_64 rng(seed);
  std::uint64_t seq = 0;
  const auto own_key = [&] {
    return static_cast<key_type>(id) + k_threads * (rng() % (k_keys / k_threads));
  };
  const auto owned = [id](key_type k) { return k % k_threads == static_cast<key_type>(id); };
  // For a key this worker owns, what a read may return right now: absent, or its last stored value.
  const auto check_read = [&](key_type k, const std::optional<value_t>& got, const char* what) {
    if (got && !value_is_for(*got, k)) {
      log.error(std::string(what) + ": key " + std::to_string(k) +
                " returned a value of another key: " + *got);
      return;
    }
    if (!owned(k)) return;
    if (got && log.last[k] != last_op::stored) {
      log.error(std::string(what) + ": key " + std::to_string(k) + " returned " + *got +
                " after an erase, a rejected put, or no put at all");
    } else if (got && *got != log.last_value[k]) {
      log.error(std::string(what) + ": key " + std::to_string(k) + " returned " + *got +
                ", not the last value written, " + log.last_value[k]);
    }
  };

  for (int op = 0; op < k_ops_per_thread; ++op) {
    const unsigned roll = static_cast<unsigned>(rng() % 100);
    if (roll < 35) {  // get, any key
      const key_type k = rng() % k_keys;
      ++log.gets;
      check_read(k, store.get(k), "get");
    } else if (roll < 75) {  // put, own key, without or with a TTL
      const key_type k = own_key();
      value_t v = make_value(k, ++seq);
      ++log.puts;
      const cachet::put_result r =
          roll < 60
              ? store.put(k, v)
              : store.put(k, v, static_cast<std::chrono::nanoseconds>(k_tick * (1 + rng() % 5)));
      switch (r) {
        case cachet::put_result::inserted:
          ++log.inserted;
          break;
        case cachet::put_result::replaced:
          ++log.replaced;
          break;
        default:
          ++log.rejected;
          break;
      }
      log.last_value[k] = std::move(v);
      log.last[k] = cachet::stored(r) ? last_op::stored : last_op::rejected;
    } else if (roll < 85) {  // erase, own key
      const key_type k = own_key();
      if (store.erase(k)) ++log.erased_true;
      log.last[k] = last_op::erased;
    } else if (roll < 95) {  // contains, any key
      const key_type k = rng() % k_keys;
      const bool present = store.contains(k);
      if (present && owned(k) && log.last[k] != last_op::stored) {
        log.error("contains: key " + std::to_string(k) +
                  " present after an erase or a rejected put");
      }
    } else if (id == 0) {  // the clock moves
      clock.advance(k_tick);
    } else {  // a read of an own key, where the check is strongest
      const key_type k = own_key();
      ++log.gets;
      check_read(k, store.get(k), "get(own)");
    }
  }
}

struct maintenance_log {
  std::uint64_t erased_by_erase_if = 0;
  std::uint64_t rounds = 0;
  std::vector<std::string> errors;
};

// Runs erase_if / for_each / clear / cleanup until `done`, and at least a few rounds.
template <class Policy>
void run_maintenance(store_t<Policy>& store, const std::atomic<bool>& done, maintenance_log& log) {
  std::mt19937_64 rng(0xA11CE);
  while (!done.load(std::memory_order_acquire) || log.rounds < 8) {
    ++log.rounds;
    // Each shard's count stays within its share at every instant, so their sum does too.
    if (const std::size_t n = store.size(); n > k_capacity && log.errors.size() < 10) {
      log.errors.push_back("size() " + std::to_string(n) + " above the capacity while running");
    }
    switch (rng() % 8) {
      case 0:
      case 1:
      case 2: {
        std::size_t visited = 0;
        store.for_each([&](const key_type& k, const value_t& v) {
          ++visited;
          if (!value_is_for(v, k) && log.errors.size() < 10)
            log.errors.push_back("for_each: key " + std::to_string(k) + " has " + v);
        });
        if (visited > k_capacity && log.errors.size() < 10) {
          log.errors.push_back("for_each visited " + std::to_string(visited) + " entries");
        }
        break;
      }
      case 3:
      case 4:
      case 5: {
        const key_type residue = rng() % 16;
        log.erased_by_erase_if += store.erase_if([&](const key_type& k, const value_t& v) {
          if (!value_is_for(v, k) && log.errors.size() < 10)
            log.errors.push_back("erase_if: key " + std::to_string(k) + " has " + v);
          return k % 16 == residue;
        });
        break;
      }
      case 6:
        store.cleanup();
        break;
      default:
        if (rng() % 4 == 0) store.clear();
        break;
    }
  }
}

enum class variant { plain, listener, maintenance };

template <class Policy>
void run_stress(std::size_t shards, variant var, std::uint64_t seed) {
  constexpr bool evicts = !std::is_same_v<Policy, cachet::no_eviction>;
  cachet::manual_clock clock;
  listener_counts counts;
  cachet::store_options<key_type, value_t> opts{.max_entries = k_capacity, .shards = shards};
  if (var != variant::plain) {
    opts.on_removal = [&counts](const key_type& k, const value_t& v, cachet::removal_cause c) {
      if (!value_is_for(v, k)) counts.mismatched.fetch_add(1, std::memory_order_relaxed);
      switch (c) {
        case cachet::removal_cause::explicit_erase:
          counts.explicit_erase.fetch_add(1, std::memory_order_relaxed);
          break;
        case cachet::removal_cause::replaced:
          counts.replaced.fetch_add(1, std::memory_order_relaxed);
          break;
        case cachet::removal_cause::expired:
          counts.expired.fetch_add(1, std::memory_order_relaxed);
          break;
        case cachet::removal_cause::evicted:
          counts.evicted.fetch_add(1, std::memory_order_relaxed);
          break;
        case cachet::removal_cause::cleared:
          counts.cleared.fetch_add(1, std::memory_order_relaxed);
          break;
      }
    };
  }
  store_t<Policy> store(opts, clock);
  REQUIRE(store.shard_count() == shards);

  std::vector<worker_log> logs(k_threads);
  maintenance_log mlog;
  std::atomic<bool> done{false};
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < k_threads; ++t) {
      threads.emplace_back([&, t] {
        run_worker<Policy>(store, clock, t, seed * 1000 + static_cast<std::uint64_t>(t), logs[t]);
      });
    }
    std::thread maintainer;
    if (var == variant::maintenance)
      maintainer = std::thread([&] { run_maintenance<Policy>(store, done, mlog); });
    for (auto& th : threads) th.join();
    done.store(true, std::memory_order_release);
    if (maintainer.joinable()) maintainer.join();
  }

  // What the workers saw while running.
  for (int t = 0; t < k_threads; ++t) {
    for (const auto& e : logs[t].errors) FAIL_CHECK("worker " << t << ": " << e);
  }
  for (const auto& e : mlog.errors) FAIL_CHECK("maintenance: " << e);

  std::uint64_t gets = 0, puts = 0, inserted = 0, replaced = 0, rejected = 0, erased_true = 0;
  for (const auto& l : logs) {
    gets += l.gets;
    puts += l.puts;
    inserted += l.inserted;
    replaced += l.replaced;
    rejected += l.rejected;
    erased_true += l.erased_true;
  }

  // Accounting, at rest.
  const cachet::cache_stats st = store.stats();
  INFO("gets " << gets << " puts " << puts << " size " << st.size << " hits " << st.hits
               << " misses " << st.misses << " inserts " << st.inserts << " updates " << st.updates
               << " rejections " << st.rejections << " evictions " << st.evictions
               << " expirations " << st.expirations << " explicit " << st.explicit_removals
               << " cleared " << st.cleared);
  CHECK(store.size() == st.size);
  CHECK(store.size() <= store.capacity());
  CHECK(st.weight == st.size);
  CHECK(st.hits + st.misses == gets);
  CHECK(st.inserts + st.updates + st.rejections == puts);
  CHECK(st.inserts == inserted);
  CHECK(st.updates == replaced);
  CHECK(st.rejections == rejected);
  CHECK(st.explicit_removals == erased_true + mlog.erased_by_erase_if);
  CHECK(st.inserts == st.size + st.evictions + st.expirations + st.explicit_removals + st.cleared);
  if (evicts) {
    CHECK(st.rejections == 0);
  } else {
    CHECK(st.evictions == 0);
  }
  if (var != variant::maintenance) CHECK(st.cleared == 0);
  if (var != variant::plain) {
    CHECK(counts.mismatched.load() == 0);
    CHECK(counts.evicted.load() == st.evictions);
    CHECK(counts.expired.load() == st.expirations);
    CHECK(counts.explicit_erase.load() == st.explicit_removals);
    CHECK(counts.cleared.load() == st.cleared);
    // No weigher: a `replaced` removal is always an in-place update.
    CHECK(counts.replaced.load() == st.updates);
    CHECK(st.inserts == st.size + counts.evicted.load() + counts.expired.load() +
                            counts.explicit_erase.load() + counts.cleared.load());
  }
  // The workload must have exercised what it claims to.
  CHECK(st.hits > 0);
  CHECK(st.misses > 0);
  CHECK(st.updates > 0);
  CHECK(st.explicit_removals > 0);
  CHECK(st.expirations > 0);
  if (evicts) CHECK(st.evictions > 0);
  if (!evicts) CHECK(st.rejections > 0);
  if (var == variant::maintenance) CHECK(mlog.rounds >= 8);

  // Contents, at rest: every present key maps to the last value written for it; an erased key (or
  // one whose last put was refused) is absent. Entries may be absent through eviction, expiry,
  // erase_if or clear.
  for (key_type k = 0; k < k_keys; ++k) {
    const worker_log& l = logs[k % k_threads];
    const bool present = store.contains(k);
    const std::optional<value_t> got = store.get(k);
    INFO("key " << k << " last op " << static_cast<int>(l.last[k]) << " last value "
                << l.last_value[k]);
    CHECK(present == got.has_value());
    if (l.last[k] != last_op::stored) {
      CHECK_FALSE(got.has_value());
    } else if (got) {
      CHECK(*got == l.last_value[k]);
    }
  }
  // After reclaiming what expired, iteration sees exactly size() entries, each once, each correct.
  store.cleanup();
  std::vector<int> seen(k_keys, 0);
  std::size_t visited = 0;
  store.for_each([&](const key_type& k, const value_t& v) {
    ++visited;
    if (k < k_keys) ++seen[k];
    const worker_log& l = logs[k % k_threads];
    if (k >= k_keys || l.last[k] != last_op::stored || v != l.last_value[k]) {
      FAIL_CHECK("for_each: unexpected entry " << k << " -> " << v);
    }
  });
  CHECK(visited == store.size());
  for (key_type k = 0; k < k_keys; ++k) {
    if (seen[k] > 1) FAIL_CHECK("for_each visited key " << k << " " << seen[k] << " times");
  }
  const cachet::cache_stats end = store.stats();
  CHECK(end.inserts ==
        end.size + end.evictions + end.expirations + end.explicit_removals + end.cleared);
}

}  // namespace

TEMPLATE_TEST_CASE("stress: concurrent mixed workload keeps per-key values and stats exact",
                   "[stress]", cachet::lru, cachet::lfu, cachet::fifo, cachet::ttl, cachet::random,
                   cachet::no_eviction) {
  const std::size_t shards = GENERATE(std::size_t{1}, std::size_t{4});
  INFO("shards " << shards);
  run_stress<TestType>(shards, variant::plain, 1 + shards);
}

TEMPLATE_TEST_CASE("stress: removal listener calls match stats under concurrency", "[stress]",
                   cachet::lru, cachet::lfu, cachet::fifo, cachet::ttl, cachet::random,
                   cachet::no_eviction) {
  const std::size_t shards = GENERATE(std::size_t{1}, std::size_t{4});
  INFO("shards " << shards);
  run_stress<TestType>(shards, variant::listener, 11 + shards);
}

TEMPLATE_TEST_CASE("stress: erase_if / for_each / clear / cleanup alongside writers", "[stress]",
                   cachet::lru, cachet::lfu, cachet::fifo, cachet::ttl, cachet::random,
                   cachet::no_eviction) {
  const std::size_t shards = GENERATE(std::size_t{1}, std::size_t{4});
  INFO("shards " << shards);
  run_stress<TestType>(shards, variant::maintenance, 21 + shards);
}
