// cachet/tags.hpp: invalidate_tag drops exactly the entries put with the tag, at a cost of the
// entries carrying it; the index follows every removal (replace, erase, evict, expire, clear) and
// every refused put; concurrent puts, reads and invalidations never let an entry put before an
// invalidation be read after it (TSan, ASan).
#include <atomic>
#include <cachet/eviction/no_eviction.hpp>
#include <cachet/sharded_store.hpp>
#include <cachet/tags.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {
using store_t = cachet::sharded_store<std::string, cachet::tagged_value<int>, cachet::lru,
                                      cachet::manual_clock>;
using tagged_t = cachet::tagged_store<store_t>;

store_t::options_type opts(std::size_t max_entries = 1000) {
  return {.max_entries = max_entries, .shards = 1};
}
}  // namespace

TEST_CASE("tagged_store: invalidate_tag drops the entries put with the tag, and only them",
          "[tags]") {
  cachet::manual_clock clock;
  tagged_t c(opts(), clock);
  c.put("p42", 1, {"product:42", "category:7"});
  c.put("c7", 2, {"category:7"});
  c.put("p43", 3, {"product:43"});
  c.put("home", 4);  // no tags
  CHECK(c.get("p42") == 1);
  CHECK(c.tagged_keys("category:7") == 2);
  CHECK(c.tagged_entries() == 3);

  CHECK(c.invalidate_tag("category:7") == 2);
  CHECK_FALSE(c.get("p42"));
  CHECK_FALSE(c.get("c7"));
  CHECK(c.get("p43") == 3);
  CHECK(c.get("home") == 4);
  CHECK(c.tagged_keys("category:7") == 0);
  CHECK(c.tagged_keys("product:42") == 0);  // p42's other tag left with it
  CHECK(c.tagged_entries() == 1);
  CHECK(c.invalidate_tag("category:7") == 0);
  CHECK(c.invalidate_tag("no such tag") == 0);
  CHECK(c.tag_invalidations() == 3);
}

TEST_CASE("tagged_store: a re-put carries its own tags, not the old entry's", "[tags]") {
  cachet::manual_clock clock;
  tagged_t c(opts(), clock);
  c.put("k", 1, {"a", "b"});
  c.put("k", 2, {"b", "c"});  // replaces: leaves a, stays under b, joins c
  CHECK(c.tagged_keys("a") == 0);
  CHECK(c.tagged_keys("b") == 1);
  CHECK(c.invalidate_tag("a") == 0);
  CHECK(c.get("k") == 2);
  c.put("k", 3);  // untagged now
  CHECK(c.tagged_entries() == 0);
  CHECK(c.invalidate_tag("c") == 0);
  CHECK(c.get("k") == 3);
  c.put("k", 4, {"d", "d"});  // a tag twice
  CHECK(c.tagged_keys("d") == 1);
  CHECK(c.invalidate_tag("d") == 1);
  CHECK_FALSE(c.get("k"));
  CHECK(c.tagged_entries() == 0);
}

TEST_CASE("tagged_store: the index follows erase, eviction, expiry and clear", "[tags]") {
  cachet::manual_clock clock;
  tagged_t c(opts(100), clock);
  for (int i = 0; i < 1000; ++i) c.put(std::to_string(i), i, {"all", i % 2 ? "odd" : "even"});
  CHECK(c.store().size() == 100);
  CHECK(c.tagged_entries() == 100);  // the 900 evicted entries left the index
  CHECK(c.tagged_keys("all") == 100);
  CHECK(c.tagged_keys("odd") == 50);

  CHECK(c.erase("999"));
  CHECK(c.tagged_keys("all") == 99);

  c.put("short", 1, {"ttl"}, 1s);
  CHECK(c.tagged_keys("ttl") == 1);
  clock.advance(2s);
  CHECK_FALSE(c.get("short"));  // reclaimed on access
  CHECK(c.tagged_keys("ttl") == 0);

  c.store().clear();
  CHECK(c.tagged_entries() == 0);
  CHECK(c.tagged_keys("all") == 0);
}

TEST_CASE("tagged_store: a put the store refuses leaves nothing registered", "[tags]") {
  using full_store = cachet::sharded_store<std::string, cachet::tagged_value<int>,
                                           cachet::no_eviction, cachet::manual_clock>;
  cachet::manual_clock clock;
  cachet::tagged_store<full_store> c(full_store::options_type{.max_entries = 1, .shards = 1},
                                     clock);
  CHECK(c.put("a", 1, {"t"}) == cachet::put_result::inserted);
  CHECK(c.put("b", 2, {"t", "u"}) == cachet::put_result::rejected_full);
  CHECK(c.tagged_keys("t") == 1);
  CHECK(c.tagged_keys("u") == 0);
  CHECK(c.tagged_entries() == 1);
  CHECK(c.invalidate_tag("t") == 1);
  CHECK(c.store().empty());
}

TEST_CASE("tagged_store: the user's on_removal still hears every removal, after the index",
          "[tags]") {
  cachet::manual_clock clock;
  std::vector<std::string> heard;
  tagged_t* self = nullptr;
  std::vector<std::size_t> index_then;
  store_t::options_type o = opts();
  o.on_removal = [&](const std::string& k, const cachet::tagged_value<int>&,
                     cachet::removal_cause) {
    heard.push_back(k);
    index_then.push_back(self->tagged_keys("t"));
  };
  tagged_t c(o, clock);
  self = &c;
  c.put("a", 1, {"t"});
  c.put("b", 2, {"t"});
  CHECK(c.invalidate_tag("t") == 2);
  REQUIRE(heard.size() == 2);
  CHECK(index_then[0] == 1);  // the index had dropped the first before the listener ran
  CHECK(index_then[1] == 0);
}

TEST_CASE("tagged_store: a small tag in a big store", "[tags]") {
  // (What it costs against the store's size is measured in bench/tags_bench.cpp.)
  cachet::manual_clock clock;
  tagged_t c(opts(100'000), clock);
  for (int i = 0; i < 50'000; ++i) c.put(std::to_string(i), i, {"bulk"});
  for (int i = 0; i < 3; ++i) c.put("few" + std::to_string(i), i, {"few"});
  CHECK(c.invalidate_tag("few") == 3);
  CHECK(c.store().size() == 50'000);
  CHECK(c.tagged_keys("bulk") == 50'000);
  CHECK(c.invalidate_tag("bulk") == 50'000);
  CHECK(c.store().empty());
  CHECK(c.tagged_entries() == 0);
}

TEST_CASE(
    "tagged_store: concurrent puts, reads and invalidations: no entry put before an invalidation "
    "is read after it",
    "[tags][stress]") {
  // Each key has one writer putting versions 1, 2, ... with tag "t" (and every other one also with
  // its own tag). `done[k]` is the last version whose put returned. The invalidator reads done[k]
  // for every key, invalidates "t", then publishes those as floors: a read that starts after a
  // floor is published must not return a version <= the floor.
  constexpr int k_keys = 8;
  constexpr int k_rounds = 300;
  constexpr std::uint64_t k_reads = 3000;
  tagged_t c(opts(1000), cachet::manual_clock{});
  std::array<std::atomic<std::uint64_t>, k_keys> done{};
  std::array<std::atomic<std::uint64_t>, k_keys> floor{};
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> stale{0}, reads{0};

  std::vector<std::thread> threads;
  for (int w = 0; w < 2; ++w) {
    threads.emplace_back([&, w] {
      for (std::uint64_t v = 1; !stop.load(std::memory_order_acquire); ++v) {
        for (int k = w; k < k_keys; k += 2) {
          if (v % 2) {
            c.put(std::to_string(k), static_cast<int>(v), {"t"});
          } else {
            c.put(std::to_string(k), static_cast<int>(v), {"own" + std::to_string(k), "t"});
          }
          done[k].store(v, std::memory_order_release);
        }
      }
    });
  }
  threads.emplace_back([&] {
    while (!stop.load(std::memory_order_acquire)) {
      for (int k = 0; k < k_keys; ++k) {
        const std::uint64_t f = floor[k].load(std::memory_order_acquire);
        const std::optional<int> v = c.get(std::to_string(k));
        reads.fetch_add(1, std::memory_order_relaxed);
        if (v && static_cast<std::uint64_t>(*v) <= f) stale.fetch_add(1);
      }
    }
  });
  // At least k_rounds invalidations and k_reads reads, for at most a minute.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  int rounds = 0;
  for (; rounds < k_rounds || reads.load(std::memory_order_relaxed) < k_reads; ++rounds) {
    if (std::chrono::steady_clock::now() > deadline) break;
    std::array<std::uint64_t, k_keys> seen{};
    for (int k = 0; k < k_keys; ++k) seen[k] = done[k].load(std::memory_order_acquire);
    c.invalidate_tag("t");
    for (int k = 0; k < k_keys; ++k) floor[k].store(seen[k], std::memory_order_release);
    std::this_thread::yield();
  }
  stop.store(true, std::memory_order_release);
  for (std::thread& t : threads) t.join();

  CHECK(stale.load() == 0);
  CHECK(reads.load() >= k_reads);
  CHECK(c.tag_invalidations() == static_cast<std::uint64_t>(rounds));
  // Quiescent now: the index lists exactly the live tagged entries.
  CHECK(c.tagged_keys("t") == c.store().size());
  CHECK(c.tagged_entries() == c.store().size());
}
