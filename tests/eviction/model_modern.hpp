// An exact differential test for the policies whose victim depends on state a predicate over the
// entries cannot see (SIEVE's hand, S3-FIFO's queues and ghost): a naive model of the policy's
// rules, written from the papers with vectors and deques, predicts the one victim of every
// eviction, and every removal the store reports is checked against it. The workloads are
// model.hpp's (standard_workloads()), with gets, puts with and without TTL, erases, contains and
// clock steps.
//
// Expired entries: before each put the runner reclaims every expired entry with cleanup(), so the
// put's sweep finds none and no victim is expired. Otherwise an expired entry removed by the sweep
// and an expired entry picked as the victim would both be reported as `expired`, and the model
// could not tell which of the two happened (they differ in the policy's side effects).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <vector>

#include "model.hpp"

namespace cachet_test {

// Model interface: Model(capacity); before_insert(key) when a put of an absent key starts (before
// its evictions); insert(key); hit(key) for a get hit; update(key) for a put over a present key;
// remove(key) for an erase or expiry; evict() performs one eviction and returns the victim's key.
template <class Policy, class Model>
void run_exact_model(const workload& w) {
  using cachet::removal_cause;
  struct live {
    int value;
    std::int64_t deadline;
  };
  cachet::manual_clock clock;
  recorder<int, int> rec;
  int_store<Policy> store({.max_entries = w.capacity, .shards = 1, .on_removal = rec.listener()},
                          clock);
  Model model(w.capacity);
  std::map<int, live> entries;
  std::mt19937_64 rng(w.seed);
  auto pick_key = [&] {
    if (w.hot_fraction > 0 && std::uniform_real_distribution<>(0, 1)(rng) < w.hot_fraction)
      return 0;
    return std::uniform_int_distribution<int>(0, w.keys - 1)(rng);
  };
  auto now = [&] { return clock.now().count(); };
  auto is_expired = [&](const live& e) { return e.deadline != k_never && e.deadline <= now(); };
  // An expiry outside eviction: the entry must be expired in the model.
  auto expire = [&](const removal_event<int, int>& ev) {
    INFO(cachet::to_string(ev.cause) << " of key " << ev.key);
    auto it = entries.find(ev.key);
    REQUIRE(it != entries.end());
    REQUIRE(ev.cause == removal_cause::expired);
    REQUIRE(ev.value == it->second.value);
    REQUIRE(is_expired(it->second));
    model.remove(ev.key);
    entries.erase(it);
  };

  int value_seq = 0;
  auto do_put = [&](int key, std::int64_t ttl) {
    if (std::any_of(entries.begin(), entries.end(),
                    [&](auto& e) { return is_expired(e.second); })) {
      store.cleanup();
      for (auto& ev : rec.take()) expire(ev);
      REQUIRE(std::none_of(entries.begin(), entries.end(),
                           [&](auto& e) { return is_expired(e.second); }));
    }
    const int value = ++value_seq;
    auto it = entries.find(key);
    const bool present = it != entries.end();
    if (!present) model.before_insert(key);
    const auto r =
        ttl != 0 ? store.put(key, value, std::chrono::nanoseconds(ttl)) : store.put(key, value);
    const std::int64_t deadline = ttl != 0 ? now() + ttl : k_never;
    auto events = rec.take();
    if (present) {
      REQUIRE(r == cachet::put_result::replaced);
      REQUIRE(events == std::vector<removal_event<int, int>>{
                            {key, it->second.value, removal_cause::replaced}});
      it->second = {value, deadline};
      model.update(key);
      return;
    }
    for (auto& ev : events) {
      INFO(cachet::to_string(ev.cause) << " of key " << ev.key);
      REQUIRE(ev.cause == removal_cause::evicted);
      REQUIRE(entries.size() == w.capacity);
      const int predicted = model.evict();
      REQUIRE(ev.key == predicted);
      REQUIRE(ev.value == entries.at(ev.key).value);
      entries.erase(ev.key);
    }
    REQUIRE(r == cachet::put_result::inserted);
    REQUIRE(entries.size() < w.capacity);
    entries.emplace(key, live{value, deadline});
    model.insert(key);
  };

  for (int op = 0; op < w.ops; ++op) {
    const int key = pick_key();
    const int r = std::uniform_int_distribution<int>(0, 99)(rng);
    const int kind = r < w.get_percent ? 0 : 40 + (r - w.get_percent) * 60 / (100 - w.get_percent);
    INFO("op " << op << " kind " << kind << " key " << key);
    auto it = entries.find(key);
    const bool present = it != entries.end();
    if (kind < 40) {  // get
      const auto got = store.get(key);
      auto events = rec.take();
      if (present && !is_expired(it->second)) {
        REQUIRE(got == std::optional<int>(it->second.value));
        REQUIRE(events.empty());
        model.hit(key);
      } else {
        REQUIRE_FALSE(got.has_value());
        REQUIRE(events.size() == (present ? 1u : 0u));
        for (auto& ev : events) expire(ev);
        if (w.fill_on_miss) do_put(key, 0);
      }
    } else if (kind < 80) {  // put, a third of them with a TTL of 1..50 ns
      const std::int64_t ttl = std::uniform_int_distribution<std::int64_t>(1, 50)(rng);
      do_put(key, kind >= 67 ? ttl : 0);
    } else if (kind < 88) {  // erase
      const bool erased = store.erase(key);
      auto events = rec.take();
      if (!present) {
        REQUIRE_FALSE(erased);
        REQUIRE(events.empty());
      } else {
        const bool was_live = !is_expired(it->second);
        REQUIRE(erased == was_live);
        REQUIRE(events == std::vector<removal_event<int, int>>{
                              {key, it->second.value,
                               was_live ? removal_cause::explicit_erase : removal_cause::expired}});
        model.remove(key);
        entries.erase(it);
      }
    } else if (kind < 94) {  // contains: no policy effect
      const bool has = store.contains(key);
      auto events = rec.take();
      REQUIRE(has == (present && !is_expired(it->second)));
      REQUIRE(events.size() == (present && !has ? 1u : 0u));
      for (auto& ev : events) expire(ev);
    } else {  // time passes
      clock.advance(std::chrono::nanoseconds(std::uniform_int_distribution<int>(0, 5)(rng)));
    }
    REQUIRE(store.size() == entries.size());
    REQUIRE(store.size() <= w.capacity);
    if (op % 97 == 0) {
      std::vector<std::pair<int, int>> got, want;
      store.for_each([&](int k, int v) { got.emplace_back(k, v); });
      for (auto& [k, e] : entries) {
        if (!is_expired(e)) want.emplace_back(k, e.value);
      }
      std::sort(got.begin(), got.end());
      REQUIRE(got == want);
    }
  }
  const auto st = store.stats();
  REQUIRE(st.size == entries.size());
  REQUIRE(st.inserts == st.size + st.evictions + st.expirations + st.explicit_removals);
}

// The workloads the exact models run: model.hpp's standard ones, then two mid-sized caches, where
// S3-FIFO's small queue holds several entries: one read-through with a hot key, one with many keys
// (the ghost fills and drops its oldest hashes).
inline std::vector<workload> exact_workloads() {
  auto all = standard_workloads();
  all.push_back({.keys = 90,
                 .capacity = 40,
                 .ops = 30000,
                 .hot_fraction = 0.2,
                 .get_percent = 70,
                 .fill_on_miss = true,
                 .seed = 21});
  all.push_back({.keys = 300, .capacity = 64, .ops = 30000, .get_percent = 60, .seed = 22});
  return all;
}

template <class Policy, class Model>
void run_exact_models() {
  for (const workload& w : exact_workloads()) {
    INFO("workload seed " << w.seed << ", capacity " << w.capacity);
    run_exact_model<Policy, Model>(w);
  }
}

// SIEVE, from the paper's Algorithm 1. q[0] is the tail (oldest), q.back() the head (newest); the
// hand names the entry it rests on, or none (start at the tail).
class sieve_model {
 public:
  explicit sieve_model(std::size_t) {}
  void before_insert(int) {}
  void insert(int key) { q_.push_back({key, false}); }
  void hit(int key) { q_[index(key)].visited = true; }
  void update(int key) { hit(key); }
  void remove(int key) {
    const std::size_t p = index(key);
    if (hand_ == key) hand_ = p + 1 < q_.size() ? std::optional<int>(q_[p + 1].key) : std::nullopt;
    q_.erase(q_.begin() + static_cast<std::ptrdiff_t>(p));
  }
  int evict() {
    std::size_t p = hand_ ? index(*hand_) : 0;
    while (q_[p].visited) {
      q_[p].visited = false;
      p = p + 1 == q_.size() ? 0 : p + 1;  // toward the head, wrapping to the tail
    }
    const int v = q_[p].key;
    hand_ = v;
    remove(v);  // the hand moves to the entry newer than the victim
    return v;
  }

 private:
  struct item {
    int key;
    bool visited;
  };
  std::size_t index(int key) const {
    for (std::size_t p = 0; p < q_.size(); ++p)
      if (q_[p].key == key) return p;
    FAIL("sieve_model: key " << key << " is not in the queue");
    return 0;
  }
  std::vector<item> q_;
  std::optional<int> hand_;
};

// S3-FIFO as libCacheSim's S3FIFOv0 runs it (see s3fifo.hpp). Queues and the ghost hold keys,
// front = oldest. The ghost lookup happens when the put starts, before its evictions.
template <unsigned SmallPercent = 10, unsigned MoveThreshold = 2, unsigned FreqCap = 3>
class s3fifo_model {
 public:
  explicit s3fifo_model(std::size_t capacity)
      : ghost_limit_(capacity * (100 - SmallPercent) / 100) {}
  void before_insert(int key) {
    auto g = std::find(ghost_.begin(), ghost_.end(), key);
    returning_ = g != ghost_.end();
    if (returning_) ghost_.erase(g);
  }
  void insert(int key) {
    (returning_ ? main_ : small_).push_back({key, 0});
    returning_ = false;
  }
  void hit(int key) {
    unsigned& f = find(key).freq;
    f = std::min(f + 1, FreqCap);
  }
  void update(int key) { hit(key); }
  void remove(int key) {
    auto gone = [&](const item& i) { return i.key == key; };
    REQUIRE(std::erase_if(small_, gone) + std::erase_if(main_, gone) == 1);
  }
  int evict() {
    const std::size_t held = small_.size() + main_.size();
    const std::size_t small_target = std::max<std::size_t>(1, held * SmallPercent / 100);
    if (small_.size() >= small_target) {
      while (!small_.empty()) {
        const item t = small_.front();
        small_.pop_front();
        if (t.freq >= MoveThreshold) {
          main_.push_back({t.key, 0});
          continue;
        }
        if (ghost_limit_ != 0 && std::find(ghost_.begin(), ghost_.end(), t.key) == ghost_.end()) {
          if (ghost_.size() == ghost_limit_) ghost_.pop_front();
          ghost_.push_back(t.key);
        }
        return t.key;
      }
    }
    for (;;) {
      const item t = main_.front();
      main_.pop_front();
      if (t.freq == 0) return t.key;
      main_.push_back({t.key, t.freq - 1});
    }
  }

 private:
  struct item {
    int key;
    unsigned freq;
  };
  item& find(int key) {
    for (auto* q : {&small_, &main_})
      for (auto& i : *q)
        if (i.key == key) return i;
    FAIL("s3fifo_model: key " << key << " is in no queue");
    return small_.front();
  }
  std::deque<item> small_, main_;
  std::deque<int> ghost_;
  std::size_t ghost_limit_;
  bool returning_ = false;
};

}  // namespace cachet_test

namespace cachet_test {

// Store conformance for one policy: over 1, 2 and 8 shards and capacities 8, 37 and 100, a mix of
// puts with and without TTL, gets, erases and clock steps keeps size() <= capacity after every
// operation, fills the store, and keeps the stats consistent.
template <class Policy>
void check_store_bounds() {
  for (std::size_t shards : {1u, 2u, 8u}) {
    for (std::size_t capacity : {8u, 37u, 100u}) {
      INFO("shards " << shards << ", capacity " << capacity);
      cachet::manual_clock clock;
      int_store<Policy> s({.max_entries = capacity, .shards = shards}, clock);
      std::mt19937_64 rng(7);
      std::size_t max_seen = 0;
      for (int i = 0; i < 3000; ++i) {
        const int k = static_cast<int>(rng() % 500);
        switch (rng() % 5) {
          case 0:
            s.put(k, i);
            break;
          case 1:
            s.put(k, i, std::chrono::seconds(1 + rng() % 5));
            break;
          case 2:
            s.get(k);
            break;
          case 3:
            if (rng() % 4 == 0) s.erase(k);
            break;
          default:
            clock.advance(std::chrono::seconds(1));
            break;
        }
        REQUIRE(s.size() <= s.capacity());
        max_seen = std::max(max_seen, s.size());
      }
      REQUIRE(max_seen >= capacity * 3 / 4);
      const auto st = s.stats();
      REQUIRE(st.size == s.size());
      REQUIRE(st.inserts == st.size + st.evictions + st.expirations + st.explicit_removals);
      REQUIRE(st.evictions > 0);
      REQUIRE(st.rejections == 0);
      s.clear();
      REQUIRE(s.size() == 0);
      for (int k = 0; k < 1000; ++k) {  // usable after clear()
        s.put(k, k);
        REQUIRE(s.size() <= s.capacity());
      }
    }
  }
}

}  // namespace cachet_test
