// cachet/tenants.hpp: a view reads, writes, erases and counts only its own tenant's entries; a
// tenant over its quota evicts only its own; open() refuses quotas that do not fit; per-tenant
// stats; two tenants flooding at once under TSan and ASan.
#include <atomic>
#include <cachet/eviction/lru.hpp>
#include <cachet/eviction/no_eviction.hpp>
#include <cachet/metrics.hpp>
#include <cachet/sharded_store.hpp>
#include <cachet/tenants.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "promtool_check.hpp"

using namespace std::chrono_literals;

namespace {
using lru_store =
    cachet::sharded_store<cachet::tenant_key<std::string>, int, cachet::lru, cachet::manual_clock>;
using tenants_t = cachet::tenant_store<lru_store>;

// A view offers no member that takes a tenant's id or a store key: the tenant cannot be named.
template <class View>
concept names_other_tenants = requires(View v, cachet::tenant_key<std::string> k) {
  v.get(k);
}
|| requires(View v, cachet::tenant_key<std::string> k) { v.put(k, 1); }
|| requires(View v, cachet::tenant_key<std::string> k) { v.erase(k); }
|| requires(View v) { v.get(std::uint32_t{1}, std::string()); };
static_assert(!names_other_tenants<tenants_t::view>);

std::string key(const char* prefix, int i) {
  std::string k = prefix;
  k.append(std::to_string(i));  // (append: GCC 12's -O3 -Wrestrict misfires on operator+)
  return k;
}
}  // namespace

TEST_CASE("tenant_store: the same key in two tenants is two entries; no view reaches the other",
          "[tenants]") {
  cachet::manual_clock clock;
  tenants_t t(lru_store::options_type{.max_entries = 1000}, clock);
  auto a = t.open("acme", {.max_entries = 100});
  auto b = t.open("globex", {.max_entries = 100});
  CHECK(a.name() == "acme");
  a.put("doc", 1);
  CHECK_FALSE(b.get("doc"));  // globex's doc is not acme's
  CHECK_FALSE(b.contains("doc"));
  CHECK_FALSE(b.erase("doc"));
  b.put("doc", 2);
  CHECK(a.get("doc") == 1);
  CHECK(b.get("doc") == 2);
  CHECK(b.erase("doc"));
  CHECK(a.peek("doc") == 1);  // untouched
  b.put("x", 3);
  b.put("y", 4);
  CHECK(b.clear() == 2);  // clears globex only
  CHECK(a.get("doc") == 1);
  CHECK(a.size() == 1);
  CHECK(b.size() == 0);

  // A tenant opened again is the same tenant.
  auto a2 = t.open("acme", {.max_entries = 100});
  CHECK(a2.get("doc") == 1);
}

TEST_CASE("tenant_store: a tenant over its quota evicts its own oldest entries, never another's",
          "[tenants]") {
  cachet::manual_clock clock;
  tenants_t t(lru_store::options_type{.max_entries = 1000, .shards = 4}, clock);
  auto quiet = t.open("quiet", {.max_entries = 100});
  auto noisy = t.open("noisy", {.max_entries = 200});
  for (int i = 0; i < 100; ++i) quiet.put(key("q", i), i);
  for (int i = 0; i < 5000; ++i) noisy.put(key("n", i), i);

  CHECK(noisy.size() == 200);
  for (int i = 0; i < 100; ++i) CHECK(quiet.get(key("q", i)) == i);
  CHECK(quiet.stats().evictions == 0);
  CHECK(quiet.stats().quota_evictions == 0);
  // The noisy tenant kept its newest 200 (FIFO within the tenant).
  CHECK(noisy.get("n4999") == 4999);
  CHECK(noisy.get("n4800") == 4800);
  CHECK_FALSE(noisy.get("n4799"));
  const cachet::tenant_stats s = noisy.stats();
  CHECK(s.quota_evictions == 4800);
  CHECK(s.inserts == 5000);
  CHECK(s.explicit_removals == 0);  // quota evictions are counted as such
  CHECK(t.store().size() == 300);
}

TEST_CASE("tenant_store: weight quotas", "[tenants]") {
  using wstore = cachet::sharded_store<cachet::tenant_key<std::string>, std::string, cachet::lru,
                                       cachet::manual_clock>;
  cachet::manual_clock clock;
  cachet::tenant_store<wstore> t(
      wstore::options_type{
          .max_weight = 10'000,
          .weigher = [](const cachet::tenant_key<std::string>&,
                        const std::string& v) { return static_cast<std::uint32_t>(v.size()); },
          .shards = 1},  // one shard: see the store's caveat in tenants.hpp
      clock);
  auto a = t.open("a", {.max_weight = 1000});
  auto b = t.open("b", {.max_weight = 1000});
  b.put("keep", std::string(500, 'b'));
  for (int i = 0; i < 50; ++i) a.put(std::to_string(i), std::string(100, 'a'));
  CHECK(a.weight() <= 1000);
  CHECK(a.weight() == 1000);
  CHECK(a.size() == 10);
  a.put("9", std::string(300, 'a'));  // a replace that grows the tenant evicts its oldest
  CHECK(a.weight() <= 1000);
  CHECK(b.get("keep") == std::string(500, 'b'));
  CHECK(b.weight() == 500);
}

TEST_CASE("tenant_store: open() refuses quotas that are unbounded or do not fit", "[tenants]") {
  cachet::manual_clock clock;
  tenants_t t(lru_store::options_type{.max_entries = 1000}, clock);
  t.open("a", {.max_entries = 600});
  const auto named = [](const char* option) {
    return Catch::Matchers::Predicate<cachet::invalid_option>(
        [option](const cachet::invalid_option& e) { return e.option() == option; }, option);
  };
  CHECK_THROWS_MATCHES(t.open("b", {.max_entries = 500}), cachet::invalid_option,
                       named("tenant_quota.max_entries"));
  CHECK_THROWS_MATCHES(t.open("c", {}), cachet::invalid_option, named("tenant_quota.max_entries"));
  CHECK_THROWS_MATCHES(t.open("d", {.max_weight = 5}), cachet::invalid_option,
                       named("tenant_quota.max_weight"));  // no weigher
  CHECK_THROWS_MATCHES(t.open("a", {.max_entries = 10}), cachet::invalid_option,
                       named("tenant_quota"));  // open again with another quota
  t.open("b", {.max_entries = 400});            // fits exactly
}

TEST_CASE("tenant_store: per-tenant stats follow the tenant's own traffic and removals",
          "[tenants]") {
  cachet::manual_clock clock;
  tenants_t t(lru_store::options_type{.max_entries = 1000}, clock);
  auto a = t.open("a", {.max_entries = 10});
  auto b = t.open("b", {.max_entries = 10});
  a.put("k", 1);
  a.put("k", 2);
  a.put("ttl", 3, 1s);
  CHECK(a.get("k") == 2);
  CHECK_FALSE(a.get("nope"));
  clock.advance(2s);
  CHECK_FALSE(a.get("ttl"));
  CHECK(a.erase("k"));
  const cachet::tenant_stats s = a.stats();
  CHECK(s.hits == 1);
  CHECK(s.misses == 2);
  CHECK(s.inserts == 2);
  CHECK(s.updates == 1);
  CHECK(s.expirations == 1);
  CHECK(s.explicit_removals == 1);
  CHECK(s.size == 0);
  const cachet::tenant_stats sb = b.stats();
  CHECK(sb.hits + sb.misses + sb.inserts + sb.expirations + sb.explicit_removals == 0);
}

TEST_CASE("tenant_store: over a no_eviction store a full shard costs only the writer's entries",
          "[tenants]") {
  // One shard of 20: the quotas fill it. A put into the full store is refused by the store; the
  // view makes room from its own tenant and retries, so the other tenant keeps everything.
  using fixed = cachet::sharded_store<cachet::tenant_key<std::string>, int, cachet::no_eviction,
                                      cachet::manual_clock>;
  cachet::manual_clock clock;
  cachet::tenant_store<fixed> t(fixed::options_type{.max_entries = 20, .shards = 1}, clock);
  auto a = t.open("a", {.max_entries = 10});
  auto b = t.open("b", {.max_entries = 10});
  for (int i = 0; i < 10; ++i) b.put(key("b", i), i);
  for (int i = 0; i < 100; ++i) {
    CHECK(cachet::stored(a.put(key("a", i), i)));
  }
  for (int i = 0; i < 10; ++i) CHECK(b.get(key("b", i)) == i);
  CHECK(a.size() == 10);
  CHECK(a.get("a99") == 99);
}

TEST_CASE("tenant_store: two tenants flooding at once leave a third one's entries alone",
          "[tenants][stress]") {
  using fixed = cachet::sharded_store<cachet::tenant_key<std::string>, int, cachet::no_eviction>;
  cachet::tenant_store<fixed> t(fixed::options_type{.max_entries = 2000, .shards = 4});
  auto keeper = t.open("keeper", {.max_entries = 100});
  auto x = t.open("x", {.max_entries = 400});
  auto y = t.open("y", {.max_entries = 400});
  for (int i = 0; i < 100; ++i) keeper.put(std::to_string(i), i);
  std::atomic<int> refused{0};
  const auto flood = [&](cachet::tenant_store<fixed>::view v) {
    for (int i = 0; i < 20'000; ++i) {
      if (!cachet::stored(v.put(std::to_string(i % 3000), i))) refused.fetch_add(1);
      if (i % 7 == 0) v.get(std::to_string(i % 500));
      if (i % 11 == 0) v.erase(std::to_string(i % 300));
    }
  };
  std::thread tx(flood, x);
  std::thread ty(flood, y);
  std::thread tx2(flood, x);
  tx.join();
  ty.join();
  tx2.join();
  for (int i = 0; i < 100; ++i) CHECK(keeper.get(std::to_string(i)) == i);
  CHECK(keeper.stats().evictions + keeper.stats().quota_evictions == 0);
  CHECK(refused.load() == 0);
  // Quiescent: each tenant within its quota and its count equal to its entries in the store.
  CHECK(x.size() <= 400);
  CHECK(y.size() <= 400);
  std::size_t in_x = 0, in_y = 0;
  t.store().for_each([&](const cachet::tenant_key<std::string>& k, const int&) {
    (k.tenant == 1 ? in_x : in_y) += k.tenant != 0;
  });
  CHECK(in_x == x.size());
  CHECK(in_y == y.size());
}

TEST_CASE("tenant_store: exported per tenant, valid for promtool", "[tenants][metrics]") {
  cachet::manual_clock clock;
  tenants_t t(lru_store::options_type{.max_entries = 100}, clock);
  auto a = t.open("acme", {.max_entries = 2});
  auto b = t.open("glo\"bex", {.max_entries = 10});  // a name that needs escaping
  for (int i = 0; i < 5; ++i) a.put(key("k", i), i);
  a.get("k4");
  b.get("k4");
  cachet::metrics_registry reg;
  reg.add("docs", t);
  const std::string text = reg.prometheus_text();
  CHECK_THAT(text,
             Catch::Contains(
                 "cachet_tenant_removals_total{cache=\"docs\",tenant=\"acme\",cause=\"quota\"} 3"));
  CHECK_THAT(text,
             Catch::Contains(
                 "cachet_tenant_requests_total{cache=\"docs\",tenant=\"acme\",result=\"hit\"} 1"));
  CHECK_THAT(text,
             Catch::Contains("cachet_tenant_requests_total{cache=\"docs\",tenant=\"glo\\\"bex\","
                             "result=\"miss\"} 1"));
  CHECK_THAT(text, Catch::Contains("cachet_tenant_entries{cache=\"docs\",tenant=\"acme\"} 2"));
  CHECK_THAT(text, Catch::Contains("cachet_entries{cache=\"docs\"} 2"));  // the store's own
  const auto [rc, out] = cachet_test::promtool_check(text);
  INFO(out);
  CHECK(rc == 0);
}
