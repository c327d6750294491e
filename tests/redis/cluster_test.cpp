// redis_store and the invalidation bus over a Redis Cluster of three primaries of the test's own
// (redis_cluster.hpp): slot routing, hash tags, MOVED and ASK while a slot moves, a dead primary,
// and invalidations from every node. The slot arithmetic itself is checked without a server.
#include <algorithm>
#include <atomic>
#include <cachet/clock.hpp>
#include <cachet/redis/cluster_invalidation_listener.hpp>
#include <cachet/redis/detail/cluster_slots.hpp>
#include <cachet/redis/group_bus.hpp>
#include <cachet/redis/invalidation_listener.hpp>
#include <cachet/redis/redis_store.hpp>
#include <cachet/sharded_store.hpp>
#include <cachet/split_keys.hpp>
#include <cachet/tiered_store.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "redis_cluster.hpp"

namespace {

using namespace std::chrono_literals;
using cachet_test::redis_cluster;
using store_type = cachet::redis_store<std::string, std::string>;
using manual_store =
    cachet::redis_store<std::string, std::string, cachet::default_codec<std::string>,
                        cachet::default_key_codec<std::string>, cachet::manual_clock>;

cachet::redis_options cluster_options(const redis_cluster& c) {
  cachet::redis_options o = c.options();
  o.key_prefix = "c:";
  o.cluster_refresh_interval = 1ms;
  o.breaker.failures_to_open = 1000;  // every call below tries the network
  return o;
}

// Waits (at most `bound`, polling every ms) until `done()`; the bound only ends a failing test.
template <class F>
bool eventually(F done, std::chrono::seconds bound = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

}  // namespace

TEST_CASE("cluster slots: CRC16/XMODEM and the hash-tag rules of the Redis Cluster spec",
          "[redis][cluster][slots]") {
  using cachet::detail::hash_tag;
  using cachet::detail::key_slot;
  STATIC_REQUIRE(cachet::detail::crc16("123456789") == 0x31C3);  // the CRC's check value
  STATIC_REQUIRE(key_slot("foo") == 12182);                      // CLUSTER KEYSLOT foo
  CHECK(hash_tag("{user1000}.following") == "user1000");
  CHECK(key_slot("{user1000}.following") == key_slot("{user1000}.followers"));
  CHECK(hash_tag("foo{}{bar}") == "foo{}{bar}");  // an empty tag: the whole key
  CHECK(hash_tag("foo{{bar}}zap") == "{bar");     // up to the first '}' after the first '{'
  CHECK(hash_tag("foo{bar}{zap}") == "bar");
  CHECK(hash_tag("no tag}{") == "no tag}{");
  CHECK(hash_tag("") == "");
}

TEST_CASE("cluster slots: MOVED and ASK replies are parsed, anything else is not a redirect",
          "[redis][cluster][slots]") {
  using cachet::detail::cluster_redirect;
  using cachet::detail::parse_redirect;
  const cluster_redirect m = parse_redirect("MOVED 3999 127.0.0.1:6381");
  CHECK(m.type == cluster_redirect::kind::moved);
  CHECK(m.slot == 3999);
  CHECK(m.host == "127.0.0.1");
  CHECK(m.port == 6381);
  const cluster_redirect a = parse_redirect("ASK 16383 ::1:7000");
  CHECK(a.type == cluster_redirect::kind::ask);
  CHECK(a.slot == 16383);
  CHECK(a.host == "::1");
  CHECK(a.port == 7000);
  CHECK(parse_redirect("MOVED 12 :7000").host.empty());  // Redis 7: endpoint unknown
  for (const char* bad : {"ERR wrong", "MOVED", "MOVED 16384 h:1", "MOVED x h:1", "ASK 1 h",
                          "ASK 1 h:0", "ASK 1 h:65536", "MOVED 1 h:12x", "MOVED -1 h:1"}) {
    INFO(bad);
    CHECK(parse_redirect(bad).type == cluster_redirect::kind::none);
  }
}

TEST_CASE("cluster options: what a cluster cannot have is refused, naming the option",
          "[redis][cluster]") {
  const auto refused = [](cachet::redis_options o, const char* name) {
    INFO(name);
    try {
      store_type s(std::move(o));
      FAIL("accepted");
    } catch (const cachet::invalid_option& e) {
      CHECK(std::string(e.what()).find(name) != std::string::npos);
    }
  };
  cachet::redis_options o;
  o.cluster_seeds = {{"127.0.0.1", 7000}};
  cachet::redis_options sock = o;
  sock.unix_socket = "/tmp/x.sock";
  refused(sock, "unix_socket");
  cachet::redis_options db = o;
  db.database = 2;
  refused(db, "database");
  cachet::redis_options port = o;
  port.cluster_seeds.push_back({"127.0.0.1", 0});
  refused(port, "cluster_seeds");
  cachet::redis_options host = o;
  host.cluster_seeds.push_back({"", 7001});
  refused(host, "cluster_seeds");
  cachet::redis_options every = o;
  every.cluster_refresh_interval = 0ms;
  refused(every, "cluster_refresh_interval");

  const cachet::invalidation_handlers h{
      .on_keys = [](std::span<const std::string>) {},
      .on_flush = [] {},
      .on_state = [](bool) {},
  };
  CHECK_THROWS_WITH(
      cachet::redis_invalidation_listener(o, {}, h),
      Catch::Contains("cluster_seeds") && Catch::Contains("redis_cluster_invalidation_listener"));
  CHECK_THROWS_WITH(cachet::redis_cluster_invalidation_listener(cachet::redis_options{}, {}, h),
                    Catch::Contains("cluster_seeds"));
}

TEST_CASE("redis_store on a cluster: every key goes straight to its slot's primary",
          "[redis][cluster]") {
  redis_cluster cluster;
  store_type s(cluster_options(cluster));

  std::vector<std::string> keys;
  for (int i = 0; i < 300; ++i) keys.push_back(std::string("k") + std::to_string(i));
  for (const std::string& k : keys)
    REQUIRE(s.put(k, std::string("v") + k) == cachet::put_result::inserted);

  // Where each key landed, checked behind the store's back: on its slot's primary, nowhere else.
  std::vector<long long> per_node(cluster.size(), 0);
  for (const std::string& k : keys) {
    const std::string rk = std::string("c:") + k;
    const long long slot = cluster.slot_of(rk);
    REQUIRE(slot == cachet::detail::key_slot(rk));
    const std::size_t owner = cluster.owner(slot);
    CHECK(cluster.get_on(owner, rk).str == std::string("v") + k);
    ++per_node[owner];
  }
  for (std::size_t i = 0; i < cluster.size(); ++i) {
    INFO("node " << i);
    CHECK(per_node[i] > 0);
    CHECK(cluster.node(i).raw({"DBSIZE"}).integer == per_node[i]);
  }

  for (const std::string& k : keys) CHECK(s.get(k) == std::string("v") + k);
  CHECK(s.contains("k7"));
  CHECK(s.erase("k7"));
  CHECK_FALSE(s.contains("k7"));
  CHECK_FALSE(s.get("k7"));

  const cachet::redis_stats st = s.stats();
  CHECK(st.cluster_nodes == 3);
  CHECK(st.slot_map_refreshes >= 1);
  CHECK(st.moved_redirects == 0);  // the map was right: no key needed a redirect
  CHECK(st.ask_redirects == 0);
  CHECK(st.server_errors == 0);
}

TEST_CASE("redis_store on a cluster: get_all and put_all are split per node", "[redis][cluster]") {
  redis_cluster cluster;
  store_type s(cluster_options(cluster));
  std::vector<std::pair<std::string, std::string>> items;
  std::vector<std::string> keys;
  for (int i = 0; i < 200; ++i) {
    keys.push_back(std::string("m") + std::to_string(i));
    items.emplace_back(keys.back(), std::string("x") + std::to_string(i));
  }
  // 200 keys cover every stripe: under TSan this also shows put_all's stripes plus the cluster
  // map's and the pool's mutexes stay under the deadlock detector's 64-mutex limit.
  const std::vector<cachet::put_result> put = s.put_all(items);
  for (const cachet::put_result r : put) CHECK(r == cachet::put_result::inserted);
  keys.push_back("absent");
  const std::vector<std::optional<std::string>> got = s.get_all(keys);
  REQUIRE(got.size() == keys.size());
  for (int i = 0; i < 200; ++i) CHECK(got[i] == std::string("x") + std::to_string(i));
  CHECK_FALSE(got.back());
  // A pipeline per node: each node ran a share of the SETs, none ran a CROSSSLOT MGET.
  for (std::size_t i = 0; i < cluster.size(); ++i) {
    CHECK(cluster.node(i).raw({"DBSIZE"}).integer > 0);
  }
  const cachet::redis_stats st = s.stats();
  CHECK(st.hits == 200);
  CHECK(st.misses == 1);
  CHECK(st.server_errors == 0);
  CHECK(st.moved_redirects == 0);  // each pipeline went to the node that serves its keys
}

TEST_CASE("redis_store on a cluster: hash tags keep keys, and a key's lease, on one node",
          "[redis][cluster]") {
  redis_cluster cluster;
  store_type s(cluster_options(cluster));
  REQUIRE(s.put("{user42}:name", "Ada") == cachet::put_result::inserted);
  REQUIRE(s.put("{user42}:mail", "ada@x") == cachet::put_result::inserted);
  const long long slot = cluster.slot_of("c:{user42}:name");
  CHECK(cluster.slot_of("c:{user42}:mail") == slot);
  const std::size_t owner = cluster.owner(slot);
  CHECK(cluster.get_on(owner, "c:{user42}:name").str == "Ada");
  CHECK(cluster.get_on(owner, "c:{user42}:mail").str == "ada@x");

  // The lease of a data key without braces hashes to the data key's slot.
  REQUIRE(s.try_lease("plain", "t1", 5s) == cachet::lease_result::acquired);
  CHECK(cluster.slot_of(s.lease_key("plain")) == cluster.slot_of("c:plain"));
  CHECK(s.try_lease("plain", "t2", 5s) == cachet::lease_result::held);
  CHECK(s.release_lease("plain", "t1"));
  CHECK(s.try_lease("plain", "t2", 5s) == cachet::lease_result::acquired);
}

TEST_CASE("redis_store on a cluster: a slot that moved is followed (MOVED) and the map refetched",
          "[redis][cluster]") {
  redis_cluster cluster;
  store_type s(cluster_options(cluster));
  REQUIRE(s.put("mover", "1") == cachet::put_result::inserted);
  const long long slot = cluster.slot_of("c:mover");
  const std::size_t from = cluster.owner(slot);
  const std::size_t to = (from + 1) % cluster.size();
  cluster.begin_move(slot, from, to);
  cluster.finish_move(slot, from, to);
  REQUIRE(cluster.owner(slot) == to);
  REQUIRE(cluster.get_on(to, "c:mover").str == "1");

  CHECK(s.get("mover") == "1");  // the store's map still says `from`: MOVED, followed
  const cachet::redis_stats after_move = s.stats();
  CHECK(after_move.moved_redirects == 1);
  CHECK(s.put("mover", "2") == cachet::put_result::inserted);  // the map was fixed: no redirect
  // ...and the whole map is fetched again (at most every cluster_refresh_interval = 1 ms).
  CHECK(eventually([&] {
    return s.get("mover") == "2" && s.stats().slot_map_refreshes > after_move.slot_map_refreshes;
  }));
  CHECK(s.stats().moved_redirects == 1);
  CHECK(cluster.get_on(to, "c:mover").str == "2");
}

TEST_CASE("redis_store on a cluster: resharding a slot while clients read and write loses nothing",
          "[redis][cluster]") {
  redis_cluster cluster;
  cachet::redis_options o = cluster_options(cluster);
  store_type s(o);
  const long long slot = cluster.slot_of("c:{r}:0");
  const std::size_t from = cluster.owner(slot);
  const std::size_t to = (from + 1) % cluster.size();
  const auto key = [](int i) { return std::string("{r}:") + std::to_string(i); };
  const auto rkey = [&](int i) { return std::string("c:") + key(i); };
  constexpr int n = 40;
  for (int i = 0; i < n; ++i) REQUIRE(s.put(key(i), "v0") == cachet::put_result::inserted);

  // Background clients on the same slot, for the whole move: writers with increasing versions
  // of keys of their own, a reader that must never see a version go back.
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  constexpr int writers = 2;
  constexpr int wkeys = 8;
  std::vector<std::vector<long>> acked(writers, std::vector<long>(wkeys, -1));
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      store_type mine(o);
      for (long v = 0; v < 200000 && !stop.load(); ++v) {
        const int j = static_cast<int>(v % wkeys);
        const std::string k =
            std::string("{r}:w") + std::to_string(w) + std::string(":") + std::to_string(j);
        if (mine.put(k, std::to_string(v)) == cachet::put_result::inserted) {
          acked[w][j] = v;
        } else {
          failures.fetch_add(1);
        }
      }
    });
  }
  threads.emplace_back([&] {
    store_type mine(o);
    std::map<std::string, long> seen;
    for (int round = 0; round < 200000 && !stop.load(); ++round) {
      const std::string k = std::string("{r}:w") + std::to_string(round % writers) + ":" +
                            std::to_string((round / writers) % wkeys);
      if (auto v = mine.get(k)) {
        const long now = std::stol(*v);
        if (now < seen[k]) failures.fetch_add(1);
        seen[k] = now;
      }
    }
  });

  cluster.begin_move(slot, from, to);
  std::vector<std::string> first_half;
  for (int i = 0; i < n / 2; ++i) first_half.push_back(rkey(i));
  cluster.migrate(from, to, first_half);

  // Mid-move: half the keys live on `to` (ASK), half on `from`.
  for (int i = 0; i < n; ++i) CHECK(s.get(key(i)) == "v0");
  CHECK(s.stats().ask_redirects >= static_cast<std::uint64_t>(n / 2));
  std::vector<std::string> all;
  for (int i = 0; i < n; ++i) all.push_back(key(i));
  for (const auto& v : s.get_all(all)) CHECK(v == "v0");
  for (int i = 0; i < n; ++i) REQUIRE(s.put(key(i), "v1") == cachet::put_result::inserted);
  REQUIRE(s.put(key(n), "new") == cachet::put_result::inserted);  // not on `from`: ASK to `to`
  CHECK(s.erase(key(1)));                                         // migrated
  CHECK(s.erase(key(30)));                                        // not yet
  CHECK_FALSE(s.contains(key(1)));
  CHECK_FALSE(s.contains(key(30)));
  std::vector<std::pair<std::string, std::string>> v2;
  for (int i = 2; i < n; ++i) {
    if (i != 30) v2.emplace_back(key(i), "v2");
  }
  for (const cachet::put_result r : s.put_all(v2)) CHECK(r == cachet::put_result::inserted);
  for (int i = 2; i < n; ++i) {
    if (i != 30) CHECK(s.get(key(i)) == "v2");
  }

  cluster.finish_move(slot, from, to);
  for (int i = 2; i < n; ++i) {
    if (i != 30) CHECK(s.get(key(i)) == "v2");
  }
  CHECK(s.get(key(n)) == "new");
  CHECK_FALSE(s.get(key(1)));
  CHECK_FALSE(s.get(key(30)));
  CHECK(s.stats().moved_redirects >= 1);

  stop.store(true);
  for (std::thread& t : threads) t.join();
  CHECK(failures.load() == 0);

  // Nothing lost: every key lives on `to` with its last acknowledged value; `from` has none.
  CHECK(cluster.node(from).raw({"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)}).integer == 0);
  for (int i = 2; i < n; ++i) {
    if (i != 30) CHECK(cluster.get_on(to, rkey(i)).str == "v2");
  }
  for (int w = 0; w < writers; ++w) {
    for (int j = 0; j < wkeys; ++j) {
      if (acked[w][j] < 0) continue;
      const std::string rk =
          std::string("c:{r}:w") + std::to_string(w) + std::string(":") + std::to_string(j);
      CHECK(cluster.get_on(to, rk).str == std::to_string(acked[w][j]));
    }
  }
}

TEST_CASE("redis_store on a cluster: a dead primary fails its own slots only, fast once open",
          "[redis][cluster]") {
  redis_cluster cluster;
  cachet::redis_options o = cluster_options(cluster);
  o.breaker = {.failures_to_open = 2, .open_for = 1s};
  cachet::manual_clock clock;
  manual_store s(o, clock);
  // One key per node.
  std::vector<std::string> on(cluster.size());
  for (int i = 0; i < 1000; ++i) {
    const std::string k = std::string("d") + std::to_string(i);
    std::string& slot = on[cluster.owner(cluster.slot_of(std::string("c:") + k))];
    if (slot.empty()) slot = k;
  }
  for (const std::string& k : on) REQUIRE(s.put(k, "here") == cachet::put_result::inserted);
  const std::size_t dead = 2;
  cluster.node(dead).kill();

  std::optional<std::string> got;
  for (int i = 0; i < 3; ++i) {
    CHECK_NOTHROW(got = s.get(on[dead]));
    CHECK_FALSE(got);
  }
  const cachet::redis_stats st = s.stats();
  CHECK(st.breaker == cachet::breaker_state::open);  // the dead node's breaker
  CHECK(st.fast_failures >= 1);
  for (std::size_t i = 0; i < cluster.size(); ++i) {
    if (i != dead) CHECK(s.get(on[i]) == "here");  // the others are not behind its breaker
  }
  CHECK(s.put(on[dead], "x") == cachet::put_result::rejected_unavailable);

  cluster.node(dead).restart();  // same port and node id; its data is gone (no persistence)
  clock.advance(1s);             // the breaker lets a probe through
  // A restarted primary answers CLUSTERDOWN for a moment (Redis waits before it serves again).
  REQUIRE(eventually([&] { return s.put(on[dead], "back") == cachet::put_result::inserted; }, 20s));
  CHECK(s.get(on[dead]) == "back");
  CHECK(s.stats().breaker == cachet::breaker_state::closed);
}

TEST_CASE("cluster invalidation: a write on any primary drops the key from another instance's L1",
          "[redis][cluster][invalidation]") {
  redis_cluster cluster;
  using l1_type = cachet::sharded_store<std::string, std::string, cachet::lru>;
  using tiered = cachet::tiered_store<l1_type, store_type>;
  cachet::redis_options o = cluster_options(cluster);
  tiered reader({.l1_ttl = 1h},
                std::tuple{cachet::store_options<std::string, std::string>{.max_entries = 1024}},
                std::tuple{o});
  store_type writer(o);

  std::mutex mu;
  std::set<std::string> heard;
  std::atomic<int> flushes{0};
  reader.suspend_local();
  cachet::redis_cluster_invalidation_listener bus(
      o, {.heartbeat_interval = 100ms},
      {
          .on_keys =
              [&](std::span<const std::string> names) {
                for (const std::string& n : names) {
                  if (auto k = reader.l2().key_from_redis(n)) reader.invalidate_local(*k);
                  std::lock_guard<std::mutex> lock(mu);
                  heard.insert(n);
                }
              },
          .on_flush =
              [&] {
                reader.clear_local();
                flushes.fetch_add(1);
              },
          .on_state = [&](bool up) { up ? reader.resume_local() : reader.suspend_local(); },
      });
  REQUIRE(eventually([&] { return bus.connected(); }));
  CHECK(bus.nodes() == 3);

  // One key per node, cached in the reader's L1.
  std::vector<std::string> on(cluster.size());
  for (int i = 0; i < 1000; ++i) {
    const std::string k = std::string("i") + std::to_string(i);
    std::string& slot = on[cluster.owner(cluster.slot_of(std::string("c:") + k))];
    if (slot.empty()) slot = k;
  }
  for (const std::string& k : on) {
    REQUIRE(writer.put(k, "old") == cachet::put_result::inserted);
    REQUIRE(eventually([&] {
      std::lock_guard<std::mutex> lock(mu);
      return heard.count(std::string("c:") + k) == 1;  // our own write's message, before we cache
    }));
    CHECK(reader.get(k) == "old");
    REQUIRE(reader.l1().peek(k) == "old");
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    heard.clear();
  }
  for (const std::string& k : on) REQUIRE(writer.put(k, "new") == cachet::put_result::inserted);
  for (const std::string& k : on) {
    INFO(k);
    REQUIRE(eventually([&] {
      std::lock_guard<std::mutex> lock(mu);
      return heard.count(std::string("c:") + k) == 1;
    }));
    CHECK_FALSE(reader.l1().peek(k));
    CHECK(reader.get(k) == "new");  // never "old" once the message arrived
  }

  // A FLUSHALL on one node reaches the reader as a flush.
  REQUIRE(cluster.node(1).raw({"FLUSHALL"}).str == "OK");
  REQUIRE(eventually([&] { return flushes.load() >= 1; }));
  CHECK(reader.l1().size() == 0);
}

namespace {
// GET calls node i has served so far (INFO commandstats).
std::uint64_t gets_served(redis_cluster& c, std::size_t i) {
  const std::string info = c.node(i).raw({"INFO", "commandstats"}).str;
  const std::size_t at = info.find("cmdstat_get:calls=");
  if (at == std::string::npos) return 0;
  return std::stoull(info.substr(at + std::string_view("cmdstat_get:calls=").size()));
}
}  // namespace

TEST_CASE("split_store on a cluster: a hot key's reads spread over the primaries",
          "[redis][cluster][split]") {
  redis_cluster cluster;
  constexpr std::uint32_t k_copies = 8;
  cachet::split_store<store_type> s(
      {.copies = k_copies, .split = [](const std::string& k) { return k == "hot"; }},
      cluster_options(cluster));
  // Where each copy lives: the split is worth it only if the copies span several primaries.
  std::vector<std::uint64_t> copies_on(cluster.size(), 0);
  for (std::uint32_t i = 0; i < k_copies; ++i) {
    ++copies_on[cluster.owner(
        cluster.slot_of("c:" + cachet::split_store<store_type>::copy_of("hot", i)))];
  }
  std::size_t nodes_used = 0;
  for (std::uint64_t n : copies_on) nodes_used += n > 0 ? 1 : 0;
  REQUIRE(nodes_used >= 2);

  REQUIRE(cachet::stored(s.put("hot", "v")));
  std::vector<std::uint64_t> before(cluster.size());
  for (std::size_t i = 0; i < cluster.size(); ++i) before[i] = gets_served(cluster, i);
  constexpr std::uint64_t k_reads = 100 * k_copies;
  for (std::uint64_t r = 0; r < k_reads; ++r) REQUIRE(s.get("hot") == "v");
  for (std::size_t i = 0; i < cluster.size(); ++i) {
    INFO("node " << i << " holds " << copies_on[i] << " of " << k_copies << " copies");
    CHECK(gets_served(cluster, i) - before[i] == 100 * copies_on[i]);
  }
}

TEST_CASE("redis_group_bus on a cluster: an announced tag reaches the cluster listener",
          "[redis][cluster][groups]") {
  redis_cluster cluster;
  const cachet::redis_options o = cluster_options(cluster);
  cachet::redis_group_bus groups(o);
  std::mutex mu;
  std::vector<cachet::group_event> heard;
  cachet::redis_cluster_invalidation_listener bus(
      o, {.heartbeat_interval = 100ms},
      {
          .on_keys =
              [&](std::span<const std::string> names) {
                for (const std::string& n : names) {
                  if (auto g = groups.group_of(n)) {
                    std::lock_guard<std::mutex> lock(mu);
                    heard.push_back(*g);
                  }
                }
              },
          .on_flush = [] {},
          .on_state = [](bool) {},
      });
  REQUIRE(eventually([&] { return bus.connected(); }));
  REQUIRE(groups.announce_tag("product:42"));
  REQUIRE(groups.announce_bump("books"));
  REQUIRE(eventually([&] {
    std::lock_guard<std::mutex> lock(mu);
    return heard.size() >= 2;
  }));
  // The two announcements travel through different primaries, each to its own connection of the
  // listener: they arrive, in either order.
  std::lock_guard<std::mutex> lock(mu);
  const auto heard_one = [&](cachet::group_kind kind, const std::string& name) {
    return std::count_if(heard.begin(), heard.end(), [&](const cachet::group_event& e) {
      return e.kind == kind && e.name == name;
    });
  };
  CHECK(heard.size() == 2);
  CHECK(heard_one(cachet::group_kind::tag, "product:42") == 1);
  CHECK(heard_one(cachet::group_kind::space, "books") == 1);
}
