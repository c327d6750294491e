// cachet/recorder.hpp — a pluggable stats recorder: send a cache's events to your own metrics
// system as they happen.
//
// Purpose: stats() snapshots and the Prometheus writer (metrics.hpp) cover most services; one that
// already has a metrics library (OpenTelemetry, a StatsD client, its own counters) wants the
// events themselves, as Caffeine's StatsCounter gives them. Any type R that satisfies
// cachet::stats_recorder can be plugged in through store_options::recorder:
//
//   struct my_recorder {
//     void record_hits(std::uint64_t n) noexcept { hits.Add(n); }
//     void record_misses(std::uint64_t n) noexcept { misses.Add(n); }
//     void record_eviction(std::uint32_t weight, cachet::removal_cause c) noexcept { ... }
//     void record_load_success(std::chrono::nanoseconds d) noexcept { load_ms.Record(d); }
//     void record_load_failure(std::chrono::nanoseconds d) noexcept { ... }
//   };
//   auto rec = std::make_shared<my_recorder>();
//   cachet::store_options<K, V> o{.max_entries = 10'000, .recorder = cachet::recorder_ref(rec)};
//
// What calls it: a sharded_store, for each get (hit or miss, after the shard lock is released)
// and each entry it removes on its own (record_eviction with cause `evicted` or `expired` and the
// entry's weight, under the shard lock, as the entry leaves); the loading patterns over that store
// (cache_aside, read_through, write_back; their single_flight), for each origin load the leader
// ran, with its duration. The store's own counters are kept as well: a recorder adds to them.
//
// The recorder's contract: every member is noexcept (checked by the concept), thread-safe (called
// from every thread that uses the cache, concurrently), quick, and never calls the cache
// (record_eviction runs under a shard lock). Cost: with no recorder set, a get pays one test of a
// pointer that is null; with one set, one indirect call per event.
//
// Thread safety: recorder_ref is a value (a shared pointer to the recorder); copy freely.
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <memory>
#include <utility>

namespace cachet {

enum class removal_cause : std::uint8_t;

template <class R>
concept stats_recorder = requires(R& r, std::uint64_t n, std::uint32_t weight, removal_cause c,
                                  std::chrono::nanoseconds d) {
  { r.record_hits(n) }
  noexcept;
  { r.record_misses(n) }
  noexcept;
  { r.record_eviction(weight, c) }
  noexcept;
  { r.record_load_success(d) }
  noexcept;
  { r.record_load_failure(d) }
  noexcept;
};

// A shared handle on any stats_recorder, or on none (the default: nothing is called).
class recorder_ref {
 public:
  recorder_ref() = default;
  template <stats_recorder R>
  explicit recorder_ref(std::shared_ptr<R> r)
      : p_(r ? std::make_shared<model<R>>(std::move(r)) : nullptr) {}

  explicit operator bool() const noexcept { return p_ != nullptr; }

  void hits(std::uint64_t n) const noexcept { p_->hits(n); }
  void misses(std::uint64_t n) const noexcept { p_->misses(n); }
  void eviction(std::uint32_t weight, removal_cause c) const noexcept { p_->eviction(weight, c); }
  void load(std::chrono::nanoseconds d, bool failed) const noexcept { p_->load(d, failed); }

 private:
  struct concept_t {
    virtual ~concept_t() = default;
    virtual void hits(std::uint64_t n) noexcept = 0;
    virtual void misses(std::uint64_t n) noexcept = 0;
    virtual void eviction(std::uint32_t weight, removal_cause c) noexcept = 0;
    virtual void load(std::chrono::nanoseconds d, bool failed) noexcept = 0;
  };
  template <class R>
  struct model final : concept_t {
    explicit model(std::shared_ptr<R> r) : r_(std::move(r)) {}
    void hits(std::uint64_t n) noexcept override { r_->record_hits(n); }
    void misses(std::uint64_t n) noexcept override { r_->record_misses(n); }
    void eviction(std::uint32_t weight, removal_cause c) noexcept override {
      r_->record_eviction(weight, c);
    }
    void load(std::chrono::nanoseconds d, bool failed) noexcept override {
      failed ? r_->record_load_failure(d) : r_->record_load_success(d);
    }
    std::shared_ptr<R> r_;
  };
  std::shared_ptr<concept_t> p_;
};

}  // namespace cachet
