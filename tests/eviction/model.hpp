// A differential test for eviction policies: a naive reference model of a policy's documented rules
// (O(n) victim search over a vector, no cleverness) runs beside a one-shard sharded_store on a
// seeded random workload of gets, puts with and without TTL, erases, contains and clock steps.
// Every removal the store reports through its listener is checked against the model, and the model
// predicts which entries the policy may evict. Contents are compared in full at intervals.
#pragma once

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "../support.hpp"

namespace cachet_test {

inline constexpr std::int64_t k_never = cachet::detail::k_never;

struct model_entry {
  int key;
  int value;
  std::int64_t deadline;    // k_never = no TTL
  std::uint64_t order = 0;  // the policy's ordering stamp (recency, insertion, bucket entry time)
  std::uint32_t freq = 0;   // lfu
};

// Rules: static void on_insert(model&, entry&), on_access, on_update(model&, entry&, old_deadline),
// static bool may_evict(const model&, const entry& candidate). The model gives them a clock
// `tick()`.
template <class Rules>
class policy_model {
 public:
  explicit policy_model(std::size_t capacity) : capacity_(capacity) {}

  std::vector<model_entry>& entries() { return entries_; }
  const std::vector<model_entry>& entries() const { return entries_; }
  std::size_t capacity() const { return capacity_; }
  std::uint64_t tick() { return ++clock_; }
  std::uint64_t ops = 0;  // lfu aging counter

  model_entry* find(int key) {
    auto it = std::find_if(entries_.begin(), entries_.end(), [&](auto& e) { return e.key == key; });
    return it == entries_.end() ? nullptr : &*it;
  }
  void remove(int key) {
    std::erase_if(entries_, [&](auto& e) { return e.key == key; });
  }
  void insert(int key, int value, std::int64_t deadline) {
    entries_.push_back({key, value, deadline});
    Rules::on_insert(*this, entries_.back());
  }

 private:
  std::size_t capacity_;
  std::vector<model_entry> entries_;
  std::uint64_t clock_ = 0;
};

struct workload {
  int keys = 24;
  std::size_t capacity = 8;
  int ops = 20000;
  double hot_fraction = 0.0;  // probability that an operation targets key 0
  int get_percent = 40;       // the rest splits as puts 40 : erases 8 : contains 6 : clock steps 6
  bool fill_on_miss = false;  // a get that misses is followed by a put of the key (read-through)
  std::uint64_t seed = 1;
};

template <class Policy, class Rules>
void run_model(const workload& w) {
  using cachet::removal_cause;
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<Policy> store({.max_entries = w.capacity, .shards = 1, .on_removal = rec.listener()},
                          clock);
  policy_model<Rules> model(w.capacity);
  std::mt19937_64 rng(w.seed);
  auto pick_key = [&] {
    if (w.hot_fraction > 0 && std::uniform_real_distribution<>(0, 1)(rng) < w.hot_fraction)
      return 0;
    return std::uniform_int_distribution<int>(0, w.keys - 1)(rng);
  };
  auto now = [&] { return clock.now().count(); };
  auto is_expired = [&](const model_entry& e) {
    return e.deadline != k_never && e.deadline <= now();
  };
  // Every event of an operation must be an expiry of an expired model entry, or an eviction of an
  // entry the rules allow while the model is full. Returns how many evictions it saw.
  auto apply_removals = [&](const std::vector<removal_event<int, int>>& events, int op) {
    for (auto& ev : events) {
      INFO("op " << op << ": " << cachet::to_string(ev.cause) << " of key " << ev.key);
      model_entry* e = model.find(ev.key);
      REQUIRE(e != nullptr);
      REQUIRE(ev.value == e->value);
      if (ev.cause == removal_cause::expired) {
        REQUIRE(is_expired(*e));
      } else {
        REQUIRE(ev.cause == removal_cause::evicted);
        REQUIRE(model.entries().size() == model.capacity());
        REQUIRE(Rules::may_evict(model, *e));
      }
      model.remove(ev.key);
    }
  };

  int value_seq = 0;
  // A put of `key` (ttl 0 = none), checked against the model.
  auto do_put = [&](int op, int key, std::int64_t ttl) {
    model_entry* e = model.find(key);
    const int value = ++value_seq;
    const auto r =
        ttl != 0 ? store.put(key, value, std::chrono::nanoseconds(ttl)) : store.put(key, value);
    const std::int64_t deadline = ttl != 0 ? now() + ttl : k_never;
    auto events = rec.take();
    if (e != nullptr && !is_expired(*e)) {
      REQUIRE(r == cachet::put_result::replaced);
      REQUIRE(events ==
              std::vector<removal_event<int, int>>{{key, e->value, removal_cause::replaced}});
      const std::int64_t old_deadline = e->deadline;
      e->value = value;
      e->deadline = deadline;
      Rules::on_update(model, *e, old_deadline);
    } else {
      if (e != nullptr) {
        REQUIRE(!events.empty());
        REQUIRE(events.front() == removal_event<int, int>{key, e->value, removal_cause::expired});
      }
      apply_removals(events, op);
      if (r == cachet::put_result::rejected_full) {
        REQUIRE(Rules::k_never_evicts);
        REQUIRE(model.entries().size() == model.capacity());
      } else {
        REQUIRE(r == cachet::put_result::inserted);
        REQUIRE(model.entries().size() < model.capacity());
        model.insert(key, value, deadline);
      }
    }
  };
  for (int op = 0; op < w.ops; ++op) {
    const int key = pick_key();
    const int r = std::uniform_int_distribution<int>(0, 99)(rng);
    const int kind = r < w.get_percent ? 0 : 40 + (r - w.get_percent) * 60 / (100 - w.get_percent);
    INFO("op " << op << " kind " << kind << " key " << key);
    model_entry* e = model.find(key);
    if (kind < 40) {  // get
      const auto got = store.get(key);
      auto events = rec.take();
      if (e != nullptr && !is_expired(*e)) {
        REQUIRE(got == std::optional<int>(e->value));
        REQUIRE(events.empty());
        Rules::on_access(model, *e);
      } else {
        REQUIRE_FALSE(got.has_value());
        if (e != nullptr) {
          REQUIRE(events ==
                  std::vector<removal_event<int, int>>{{key, e->value, removal_cause::expired}});
          model.remove(key);
        } else {
          REQUIRE(events.empty());
        }
        if (w.fill_on_miss) do_put(op, key, 0);
      }
    } else if (kind < 80) {  // put, a third of them with a TTL of 1..50 ns
      const std::int64_t ttl = std::uniform_int_distribution<std::int64_t>(1, 50)(rng);
      do_put(op, key, kind >= 67 ? ttl : 0);
    } else if (kind < 88) {  // erase
      const bool erased = store.erase(key);
      auto events = rec.take();
      if (e == nullptr) {
        REQUIRE_FALSE(erased);
        REQUIRE(events.empty());
      } else {
        const bool was_live = !is_expired(*e);
        REQUIRE(erased == was_live);
        REQUIRE(events == std::vector<removal_event<int, int>>{
                              {key, e->value,
                               was_live ? removal_cause::explicit_erase : removal_cause::expired}});
        model.remove(key);
      }
    } else if (kind < 94) {  // contains: no policy effect
      const bool has = store.contains(key);
      auto events = rec.take();
      REQUIRE(has == (e != nullptr && !is_expired(*e)));
      if (e != nullptr && !has) model.remove(key);
      REQUIRE(events.size() == (e != nullptr && !has ? 1u : 0u));
    } else {  // time passes
      clock.advance(std::chrono::nanoseconds(std::uniform_int_distribution<int>(0, 5)(rng)));
    }
    REQUIRE(store.size() == model.entries().size());
    if (op % 97 == 0) {
      std::vector<std::pair<int, int>> got, want;
      store.for_each([&](int k, int v) { got.emplace_back(k, v); });
      for (auto& m : model.entries()) {
        if (!is_expired(m)) want.emplace_back(m.key, m.value);
      }
      std::sort(got.begin(), got.end());
      std::sort(want.begin(), want.end());
      REQUIRE(got == want);
    }
  }
  const auto st = store.stats();
  REQUIRE(st.size == model.entries().size());
  REQUIRE(st.inserts == st.size + st.evictions + st.expirations + st.explicit_removals);
}

// The workloads every policy's model test runs: three seeds of the mixed workload, then 99% gets,
// each miss filled, on a key space barely larger than the cache: long runs of hits between
// evictions, so buffered hit bookkeeping (lru, lfu) fills and drains on its own.
inline std::vector<workload> standard_workloads() {
  return {{.seed = 1},
          {.seed = 2},
          {.seed = 3},
          {.keys = 202,
           .capacity = 200,
           .ops = 60000,
           .hot_fraction = 0.3,
           .get_percent = 99,
           .fill_on_miss = true,
           .seed = 11}};
}

template <class Policy, class Rules>
void run_standard_models() {
  for (const workload& w : standard_workloads()) {
    INFO("workload seed " << w.seed << ", get_percent " << w.get_percent);
    run_model<Policy, Rules>(w);
  }
}

// The documented rules of each policy, written the slow, obvious way.

struct lru_rules {
  static constexpr bool k_never_evicts = false;
  template <class M>
  static void on_insert(M& m, model_entry& e) {
    e.order = m.tick();
  }
  template <class M>
  static void on_access(M& m, model_entry& e) {
    e.order = m.tick();
  }
  template <class M>
  static void on_update(M& m, model_entry& e, std::int64_t) {
    e.order = m.tick();
  }
  template <class M>
  static bool may_evict(const M& m, const model_entry& e) {
    for (auto& o : m.entries())
      if (o.order < e.order) return false;
    return true;
  }
};

struct fifo_rules {
  static constexpr bool k_never_evicts = false;
  template <class M>
  static void on_insert(M& m, model_entry& e) {
    e.order = m.tick();
  }
  template <class M>
  static void on_access(M&, model_entry&) {}
  template <class M>
  static void on_update(M&, model_entry&, std::int64_t) {}
  template <class M>
  static bool may_evict(const M& m, const model_entry& e) {
    return lru_rules::may_evict(m, e);
  }
};

// LFU: frequency 1 on insert, +1 per hit or update up to 255 (at 255 only recency refreshes); the
// victim is the least recently bucketed entry of the lowest frequency. Every 10 x capacity inserts
// + hits all frequencies halve (1 stays 1); entries that land in one frequency rank by old
// frequency, then by their old order.
struct lfu_rules {
  static constexpr bool k_never_evicts = false;
  template <class M>
  static void tick_ops(M& m) {
    if (++m.ops < 10 * m.capacity()) return;
    m.ops = 0;
    for (std::uint32_t f = 2; f <= 255; ++f) {
      std::vector<model_entry*> at_f;
      for (auto& o : m.entries())
        if (o.freq == f) at_f.push_back(&o);
      std::sort(at_f.begin(), at_f.end(), [](auto* a, auto* b) { return a->order < b->order; });
      for (auto* o : at_f) {
        o->freq = f / 2;
        o->order = m.tick();
      }
    }
  }
  template <class M>
  static void on_insert(M& m, model_entry& e) {
    e.freq = 1;
    e.order = m.tick();
    tick_ops(m);
  }
  template <class M>
  static void on_access(M& m, model_entry& e) {
    if (e.freq < 255) ++e.freq;
    e.order = m.tick();
    tick_ops(m);
  }
  template <class M>
  static void on_update(M& m, model_entry& e, std::int64_t) {
    on_access(m, e);
  }
  template <class M>
  static bool may_evict(const M& m, const model_entry& e) {
    for (auto& o : m.entries()) {
      if (o.freq < e.freq || (o.freq == e.freq && o.order < e.order)) return false;
    }
    return true;
  }
};

// TTL: entries with a deadline first, earliest first (ties: any); then entries without, oldest
// first. An update keeps a no-TTL entry's place; dropping the TTL makes it the newest no-TTL entry.
struct ttl_rules {
  static constexpr bool k_never_evicts = false;
  template <class M>
  static void on_insert(M& m, model_entry& e) {
    e.order = m.tick();
  }
  template <class M>
  static void on_access(M&, model_entry&) {}
  template <class M>
  static void on_update(M& m, model_entry& e, std::int64_t old_deadline) {
    if (old_deadline != k_never && e.deadline == k_never) e.order = m.tick();
  }
  template <class M>
  static bool may_evict(const M& m, const model_entry& e) {
    for (auto& o : m.entries()) {
      if (o.deadline < e.deadline) return false;
      if (e.deadline == k_never && o.deadline == k_never && o.order < e.order) return false;
    }
    return true;
  }
};

struct random_rules {
  static constexpr bool k_never_evicts = false;
  template <class M>
  static void on_insert(M&, model_entry&) {}
  template <class M>
  static void on_access(M&, model_entry&) {}
  template <class M>
  static void on_update(M&, model_entry&, std::int64_t) {}
  template <class M>
  static bool may_evict(const M&, const model_entry&) {
    return true;
  }
};

struct no_eviction_rules : random_rules {
  static constexpr bool k_never_evicts = true;
  template <class M>
  static bool may_evict(const M&, const model_entry&) {
    return false;
  }
};

}  // namespace cachet_test
