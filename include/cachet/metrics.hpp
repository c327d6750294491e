// cachet/metrics.hpp — export the counters of any set of named caches in the Prometheus text
// format.
//
// Purpose: a cache that does not emit its hit rate, evictions and load latency is guessing whether
// it helps. metrics_registry holds named references to stores and patterns and renders their
// stats() snapshots as Prometheus exposition text (format 0.0.4), one `cache` label per source,
// for whatever HTTP endpoint the service already has (the library starts no server).
//
//   cachet::metrics_registry metrics;
//   metrics.add("users", users_cache);         // a cache_aside: its store's counters and its loads
//   metrics.add("sessions", session_store);    // a sharded_store
//   http.get("/metrics", [&] { return metrics.prometheus_text(); });
//
// What each source gives (docs/stats.md, "Prometheus export", lists every family):
//   sharded_store, and the store of a cache_aside: requests by result, puts by result, removals
//     by cause, entries, weight;
//   cache_aside (load_stats()): loads, load failures, coalesced loads, follower timeouts, load
//     duration as a histogram (10 us to 10 s) and its p50 and p99 as gauges;
//   read_through: its requests (hit, miss, negative hit), early refreshes, refresh failures, stale
//     serves by reason, and its loads;
//   write_back: writes, coalesced writes, the dirty backlog, flushes, batches, flush failures,
//     retries, write-through fallbacks, blocked and abandoned writes, its requests and loads;
//   tiered_store: reads by tier, promotions, local invalidations and clears, coalesced L2 reads;
//   origin_limiter: loads admitted, queued, shed by reason, in flight, waiting, queue wait;
//   miss_batcher: requests, batches by how they closed, keys loaded, duplicates, failed batches,
//     the largest batch;
//   hot_key_tracker, and tracked_store (its store's counters too): the k_exported_hot_keys
//     hottest keys' shares of the sampled reads (a `key` label: the key's default codec text,
//     bytes outside printable ASCII as \xNN), sampled reads, dropped samples;
//   tenant_store: its store's counters and each tenant's (cachet_tenant_*: requests, puts,
//     removals by cause with quota evictions, entries, weight; a `tenant` label);
//   tagged_store: its store's counters and invalidate_tag() calls;
//   hot_key_shield: reads served locally or by the store, copies stored or refused, shielded keys,
//     windows;
//   the Redis tier (include cachet/redis/metrics.hpp too): redis_store, the invalidation
//     listeners and lease_loader.
// A source type with none of these is refused at compile time with a message.
//
// Thread safety: add(), remove() and prometheus_text() may be called from any thread at once (a
// mutex orders them); prometheus_text() calls each source's stats() (thread-safe in every
// cachet type) while holding it. A source must outlive its registration: remove() it, or destroy
// the registry, first.
//
// Exception safety: add() throws std::invalid_argument for an empty or duplicate name, and
// std::bad_alloc; the registry is unchanged then. prometheus_text() throws std::bad_alloc.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cachet/codec.hpp"
#include "cachet/hot_keys.hpp"
#include "cachet/miss_batcher.hpp"
#include "cachet/origin_limiter.hpp"
#include "cachet/read_through.hpp"
#include "cachet/shield.hpp"
#include "cachet/single_flight.hpp"
#include "cachet/stats.hpp"
#include "cachet/tiered_store.hpp"
#include "cachet/write_back.hpp"

namespace cachet {

// Collects samples by metric family, so that each family is written once with its HELP and TYPE
// lines whatever order the sources add them in. What a write_metrics() overload writes into.
class metrics_sink {
 public:
  // One sample of `family` (a counter when its name ends in _total, else a gauge), labelled
  // cache="<cache>" plus `labels` (name, value pairs; values are escaped here).
  void counter(std::string_view family, std::string_view help, std::string_view cache,
               std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
               std::uint64_t value) {
    add(family, help, "counter", cache, labels, std::to_string(value));
  }
  void gauge(std::string_view family, std::string_view help, std::string_view cache,
             std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
             double value) {
    add(family, help, "gauge", cache, labels, number(value));
  }
  // A summary of durations in nanoseconds: quantiles 0.5 and 0.99, _sum and _count, in seconds.
  void summary(std::string_view family, std::string_view help, std::string_view cache,
               std::uint64_t p50_nanos, std::uint64_t p99_nanos, std::uint64_t sum_nanos,
               std::uint64_t count) {
    family_type& f = find(family, help, "summary");
    const std::string base = labels_of(cache, {});
    f.samples.push_back(std::string(family) + "{" + base + ",quantile=\"0.5\"} " +
                        number(static_cast<double>(p50_nanos) * 1e-9));
    f.samples.push_back(std::string(family) + "{" + base + ",quantile=\"0.99\"} " +
                        number(static_cast<double>(p99_nanos) * 1e-9));
    f.samples.push_back(std::string(family) + "_sum{" + base + "} " +
                        number(static_cast<double>(sum_nanos) * 1e-9));
    f.samples.push_back(std::string(family) + "_count{" + base + "} " + std::to_string(count));
  }

  // A histogram of durations: le_counts[j] (cumulative) durations of at most bounds_nanos[j], of
  // `count` in all (the +Inf bucket and _count), summing to sum_nanos; in seconds.
  template <std::size_t N>
  void histogram(std::string_view family, std::string_view help, std::string_view cache,
                 const std::array<std::uint64_t, N>& bounds_nanos,
                 const std::array<std::uint64_t, N>& le_counts, std::uint64_t sum_nanos,
                 std::uint64_t count) {
    family_type& f = find(family, help, "histogram");
    const std::string base = labels_of(cache, {});
    for (std::size_t j = 0; j < N; ++j) {
      f.samples.push_back(std::string(family) + "_bucket{" + base + ",le=\"" +
                          number(static_cast<double>(bounds_nanos[j]) * 1e-9) + "\"} " +
                          std::to_string(le_counts[j]));
    }
    f.samples.push_back(std::string(family) + "_bucket{" + base + ",le=\"+Inf\"} " +
                        std::to_string(count));
    f.samples.push_back(std::string(family) + "_sum{" + base + "} " +
                        number(static_cast<double>(sum_nanos) * 1e-9));
    f.samples.push_back(std::string(family) + "_count{" + base + "} " + std::to_string(count));
  }

  // The exposition text: every family in the order first seen, HELP and TYPE, then its samples.
  std::string text() const {
    std::string out;
    for (const family_type& f : families_) {
      out.append("# HELP ").append(f.name).append(" ").append(f.help).append("\n");
      out.append("# TYPE ").append(f.name).append(" ").append(f.type).append("\n");
      for (const std::string& s : f.samples) out.append(s).append("\n");
    }
    return out;
  }

  // A label value as the text format wants it: backslash, double quote and newline escaped.
  static std::string escape(std::string_view v) {
    std::string out;
    out.reserve(v.size());
    for (char c : v) {
      if (c == '\\') {
        out.append("\\\\");
      } else if (c == '"') {
        out.append("\\\"");
      } else if (c == '\n') {
        out.append("\\n");
      } else {
        out.push_back(c);
      }
    }
    return out;
  }

 private:
  struct family_type {
    std::string name, help, type;
    std::vector<std::string> samples;
  };

  family_type& find(std::string_view name, std::string_view help, std::string_view type) {
    auto it = index_.find(std::string(name));
    if (it != index_.end()) return families_[it->second];
    index_.emplace(std::string(name), families_.size());
    families_.push_back({std::string(name), std::string(help), std::string(type), {}});
    return families_.back();
  }

  static std::string labels_of(
      std::string_view cache,
      std::initializer_list<std::pair<std::string_view, std::string_view>> labels) {
    std::string out = "cache=\"";
    out.append(escape(cache)).append("\"");
    for (const auto& [k, v] : labels)
      out.append(",").append(k).append("=\"").append(escape(v)).append("\"");
    return out;
  }

  void add(std::string_view family, std::string_view help, std::string_view type,
           std::string_view cache,
           std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
           std::string value) {
    family_type& f = find(family, help, type);
    std::string s(family);
    s.append("{").append(labels_of(cache, labels)).append("} ").append(value);
    f.samples.push_back(std::move(s));
  }

  static std::string number(double v) {
    std::string s = std::to_string(v);  // fixed, 6 decimals: enough for seconds and ratios
    return s;
  }

  std::vector<family_type> families_;
  std::map<std::string, std::size_t> index_;
};

// ---- what each stats snapshot writes (found by overload resolution and ADL; the Redis tier's
// ---- are in cachet/redis/metrics.hpp)

inline void write_metrics(metrics_sink& m, std::string_view cache, const cache_stats& s) {
  constexpr std::string_view req = "cachet_requests_total";
  constexpr std::string_view req_help = "Lookups (get) by result.";
  m.counter(req, req_help, cache, {{"result", "hit"}}, s.hits);
  m.counter(req, req_help, cache, {{"result", "miss"}}, s.misses);
  constexpr std::string_view puts = "cachet_puts_total";
  constexpr std::string_view puts_help = "Writes (put) by result.";
  m.counter(puts, puts_help, cache, {{"result", "inserted"}}, s.inserts);
  m.counter(puts, puts_help, cache, {{"result", "updated"}}, s.updates);
  m.counter(puts, puts_help, cache, {{"result", "rejected"}}, s.rejections);
  constexpr std::string_view rem = "cachet_removals_total";
  constexpr std::string_view rem_help = "Entries removed, by cause.";
  m.counter(rem, rem_help, cache, {{"cause", "evicted"}}, s.evictions);
  m.counter(rem, rem_help, cache, {{"cause", "expired"}}, s.expirations);
  m.counter(rem, rem_help, cache, {{"cause", "explicit"}}, s.explicit_removals);
  m.counter(rem, rem_help, cache, {{"cause", "cleared"}}, s.cleared);
  m.gauge("cachet_entries", "Entries held now (expired ones not yet reclaimed included).", cache,
          {}, static_cast<double>(s.size));
  m.gauge("cachet_weight", "Total weight held now.", cache, {}, static_cast<double>(s.weight));
}

// One tenant of a tenant_store (cachet/tenants.hpp), as families of its own (cachet_tenant_*,
// labelled cache and tenant), so that summing the store's families never counts a tenant twice:
//   for (auto& v : views) cachet::write_metrics(sink, "docs", v.name(), v.stats());
inline void write_metrics(metrics_sink& m, std::string_view cache, std::string_view tenant,
                          const tenant_stats& s) {
  constexpr std::string_view req = "cachet_tenant_requests_total";
  constexpr std::string_view req_help = "A tenant's lookups (get) by result.";
  m.counter(req, req_help, cache, {{"tenant", tenant}, {"result", "hit"}}, s.hits);
  m.counter(req, req_help, cache, {{"tenant", tenant}, {"result", "miss"}}, s.misses);
  constexpr std::string_view puts = "cachet_tenant_puts_total";
  constexpr std::string_view puts_help = "A tenant's writes (put) by result.";
  m.counter(puts, puts_help, cache, {{"tenant", tenant}, {"result", "inserted"}}, s.inserts);
  m.counter(puts, puts_help, cache, {{"tenant", tenant}, {"result", "updated"}}, s.updates);
  m.counter(puts, puts_help, cache, {{"tenant", tenant}, {"result", "rejected"}}, s.rejections);
  constexpr std::string_view rem = "cachet_tenant_removals_total";
  constexpr std::string_view rem_help = "A tenant's entries removed, by cause.";
  m.counter(rem, rem_help, cache, {{"tenant", tenant}, {"cause", "evicted"}}, s.evictions);
  m.counter(rem, rem_help, cache, {{"tenant", tenant}, {"cause", "quota"}}, s.quota_evictions);
  m.counter(rem, rem_help, cache, {{"tenant", tenant}, {"cause", "expired"}}, s.expirations);
  m.counter(rem, rem_help, cache, {{"tenant", tenant}, {"cause", "explicit"}}, s.explicit_removals);
  m.counter(rem, rem_help, cache, {{"tenant", tenant}, {"cause", "cleared"}}, s.cleared);
  m.gauge("cachet_tenant_entries", "A tenant's entries now.", cache, {{"tenant", tenant}},
          static_cast<double>(s.size));
  m.gauge("cachet_tenant_weight", "A tenant's total weight now.", cache, {{"tenant", tenant}},
          static_cast<double>(s.weight));
}

inline void write_metrics(metrics_sink& m, std::string_view cache, const shield_stats& s) {
  constexpr std::string_view reads = "cachet_shield_reads_total";
  constexpr std::string_view reads_help =
      "Reads through the hot-key shield, by where they were served.";
  m.counter(reads, reads_help, cache, {{"result", "local"}}, s.local_hits);
  m.counter(reads, reads_help, cache, {{"result", "store"}}, s.store_reads);
  constexpr std::string_view copies = "cachet_shield_copies_total";
  constexpr std::string_view copies_help =
      "Store hits of shielded keys copied locally, or refused.";
  m.counter(copies, copies_help, cache, {{"result", "stored"}}, s.copies);
  m.counter(copies, copies_help, cache, {{"result", "refused"}}, s.copies_refused);
  m.gauge("cachet_shield_keys", "Keys shielded now.", cache, {},
          static_cast<double>(s.shielded_keys));
  m.counter("cachet_shield_windows_total", "Times the shielded set was chosen.", cache, {},
            s.windows);
}

inline void write_metrics(metrics_sink& m, std::string_view cache, const single_flight_stats& s) {
  m.counter("cachet_loads_total", "Origin loads run (a bulk load counts once).", cache, {},
            s.loads);
  m.counter("cachet_load_failures_total", "Origin loads that threw.", cache, {}, s.load_failures);
  m.counter("cachet_loads_coalesced_total",
            "Callers served by another caller's load of the same key (duplicate origin loads "
            "avoided).",
            cache, {}, s.coalesced);
  m.counter("cachet_load_follower_timeouts_total", "Callers that gave up waiting for a load.",
            cache, {}, s.timeouts);
  m.histogram("cachet_load_duration_seconds",
              "Duration of one origin load (each rounded up to its internal bucket's bound, at "
              "most 6.25%, before it is counted under the first le at or above).",
              cache, load_duration_bounds_ns, s.load_le, s.load_nanos, s.load_histogram_count);
  m.gauge("cachet_load_duration_p50_seconds",
          "Median duration of one origin load (an upper bound, at most 6.25% above).", cache, {},
          static_cast<double>(s.load_p50_nanos) * 1e-9);
  m.gauge("cachet_load_duration_p99_seconds",
          "99th percentile duration of one origin load (an upper bound, at most 6.25% above).",
          cache, {}, static_cast<double>(s.load_p99_nanos) * 1e-9);
}

inline void write_metrics(metrics_sink& m, std::string_view cache, const read_through_stats& s) {
  constexpr std::string_view req = "cachet_requests_total";
  constexpr std::string_view req_help = "Lookups (get) by result.";
  m.counter(req, req_help, cache, {{"result", "hit"}}, s.hits);
  m.counter(req, req_help, cache, {{"result", "miss"}}, s.misses);
  m.counter(req, req_help, cache, {{"result", "negative_hit"}}, s.negative_hits);
  m.counter("cachet_early_refreshes_total", "XFetch refreshes run before expiry.", cache, {},
            s.early_refreshes);
  m.counter("cachet_background_refreshes_total", "refresh_after_write reloads run on the executor.",
            cache, {}, s.background_refreshes);
  m.counter("cachet_refresh_failures_total",
            "Early, stale-while-revalidate or background refreshes whose load threw.", cache, {},
            s.refresh_failures);
  constexpr std::string_view stale = "cachet_stale_serves_total";
  constexpr std::string_view stale_help = "Stale values served, by reason.";
  m.counter(stale, stale_help, cache, {{"reason", "revalidate"}}, s.stale_serves);
  m.counter(stale, stale_help, cache, {{"reason", "error"}}, s.stale_if_error_serves);
  write_metrics(m, cache, s.loads);
}

inline void write_metrics(metrics_sink& m, std::string_view cache, const write_back_stats& s) {
  constexpr std::string_view req = "cachet_requests_total";
  constexpr std::string_view req_help = "Lookups (get) by result.";
  m.counter(req, req_help, cache, {{"result", "hit"}}, s.hits);
  m.counter(req, req_help, cache, {{"result", "miss"}}, s.misses);
  m.counter("cachet_write_back_dirty_hits_total", "Misses served from the dirty buffer.", cache, {},
            s.dirty_hits);
  m.counter("cachet_write_back_writes_total", "Writes (put, erase) acknowledged.", cache, {},
            s.writes);
  m.counter("cachet_write_back_coalesced_total",
            "Writes that replaced a dirty value before it was written.", cache, {}, s.coalesced);
  m.gauge("cachet_write_back_backlog", "Keys waiting to be written now.", cache, {},
          static_cast<double>(s.dirty));
  m.counter("cachet_write_back_flushed_total", "Entries written to the source.", cache, {},
            s.flushed);
  m.counter("cachet_write_back_batches_total", "Batches the source accepted.", cache, {},
            s.batches);
  m.counter("cachet_write_back_failures_total", "Batch attempts that threw.", cache, {},
            s.flush_failures);
  m.counter("cachet_write_back_retries_total", "Batch attempts that followed a failure.", cache, {},
            s.retries);
  m.counter("cachet_write_back_fallbacks_total", "Writes made synchronously at the backlog bound.",
            cache, {}, s.write_through_fallbacks);
  m.counter("cachet_write_back_blocked_total", "Writes that waited for room at the bound.", cache,
            {}, s.blocked_writes);
  m.counter("cachet_write_back_abandoned_total",
            "Writes left unwritten when shutdown_timeout expired.", cache, {}, s.abandoned);
  write_metrics(m, cache, s.loads);
}

inline void write_metrics(metrics_sink& m, std::string_view cache, const tiered_stats& s) {
  constexpr std::string_view reads = "cachet_tier_reads_total";
  constexpr std::string_view reads_help = "Reads of a tiered store by where they were answered.";
  m.counter(reads, reads_help, cache, {{"result", "l1_hit"}}, s.l1_hits);
  m.counter(reads, reads_help, cache, {{"result", "l2_hit"}}, s.l2_hits);
  m.counter(reads, reads_help, cache, {{"result", "miss"}}, s.misses);
  constexpr std::string_view promo = "cachet_tier_promotions_total";
  constexpr std::string_view promo_help = "L2 hits copied into L1, or refused (raced a write).";
  m.counter(promo, promo_help, cache, {{"result", "stored"}}, s.promotions);
  m.counter(promo, promo_help, cache, {{"result", "refused"}}, s.promotions_refused);
  m.counter("cachet_tier_local_invalidations_total",
            "invalidate_local() and invalidate_local_if() calls.", cache, {},
            s.local_invalidations);
  m.counter("cachet_tier_local_clears_total", "clear_local() calls (suspensions included).", cache,
            {}, s.local_clears);
  m.counter("cachet_tier_l2_reads_coalesced_total",
            "L1 misses that shared another caller's L2 read.", cache, {}, s.coalesced);
}

inline void write_metrics(metrics_sink& m, std::string_view cache, const origin_limiter_stats& s) {
  m.counter("cachet_origin_admitted_total", "Origin loads admitted by the limiter.", cache, {},
            s.admitted);
  m.counter("cachet_origin_queued_total", "Origin loads that waited for a slot.", cache, {},
            s.queued);
  constexpr std::string_view shed = "cachet_origin_shed_total";
  constexpr std::string_view shed_help = "Origin loads shed by the limiter, by reason.";
  m.counter(shed, shed_help, cache, {{"reason", "queue_full"}}, s.shed_queue_full);
  m.counter(shed, shed_help, cache, {{"reason", "timeout"}}, s.shed_timeout);
  m.gauge("cachet_origin_in_flight", "Origin loads running now.", cache, {},
          static_cast<double>(s.in_flight));
  m.gauge("cachet_origin_waiting", "Origin loads waiting for a slot now.", cache, {},
          static_cast<double>(s.waiting));
  // Gauges, not a summary: the limiter keeps two percentiles and no sum (a "quantile" label is
  // reserved for summaries).
  m.gauge("cachet_origin_queue_wait_p50_seconds",
          "Median queue wait of the origin loads that waited.", cache, {},
          static_cast<double>(s.wait_p50_nanos) * 1e-9);
  m.gauge("cachet_origin_queue_wait_p99_seconds",
          "99th percentile queue wait of the origin loads that waited.", cache, {},
          static_cast<double>(s.wait_p99_nanos) * 1e-9);
}

inline void write_metrics(metrics_sink& m, std::string_view cache, const miss_batcher_stats& s) {
  m.counter("cachet_batch_requests_total", "Loads that joined a miss batch.", cache, {},
            s.requests);
  constexpr std::string_view batches = "cachet_batches_total";
  constexpr std::string_view batches_help = "Miss batches loaded, by what closed them.";
  m.counter(batches, batches_help, cache, {{"closed_by", "max_batch"}}, s.full_batches);
  m.counter(batches, batches_help, cache, {{"closed_by", "max_delay"}}, s.batches - s.full_batches);
  m.counter("cachet_batch_keys_loaded_total", "Distinct keys loaded by miss batches.", cache, {},
            s.keys_loaded);
  m.counter("cachet_batch_duplicates_total", "Loads of a key already in their batch.", cache, {},
            s.duplicates);
  m.counter("cachet_batch_failures_total", "Miss batches whose load_all threw.", cache, {},
            s.failed_batches);
  m.gauge("cachet_batch_largest_keys", "The most distinct keys in one miss batch so far.", cache,
          {}, static_cast<double>(s.largest_batch));
}

// How many of a tracker's hottest keys the export lists (a label per key: a bounded cardinality).
inline constexpr std::size_t k_exported_hot_keys = 10;

namespace detail {
// A key as a label value: its default codec's bytes, with bytes outside printable ASCII written
// as \xNN (label values must be UTF-8; keys may be any bytes). Empty if K has no default codec.
template <class K>
std::string hot_key_label(const K& key) {
  using C = default_key_codec<K>;
  if constexpr (std::is_void_v<C>) {
    return {};
  } else {
    std::string bytes;
    C::encode(key, bytes);
    std::string out;
    for (unsigned char c : bytes) {
      if (c >= 0x20 && c < 0x7f) {
        out.push_back(static_cast<char>(c));
      } else {
        constexpr char k_hex[] = "0123456789abcdef";
        out.append("\\x").push_back(k_hex[c >> 4]);
        out.push_back(k_hex[c & 15]);
      }
    }
    return out;
  }
}
}  // namespace detail

template <class K, class H, class E>
void write_metrics(metrics_sink& m, std::string_view cache, const hot_key_tracker<K, H, E>& t) {
  for (const auto& h : t.hot_keys(k_exported_hot_keys)) {
    m.gauge("cachet_hot_key_share",
            "Share of the sampled reads of one of the hottest keys (Space-Saving, an "
            "overestimate by at most error/sampled).",
            cache, {{"key", detail::hot_key_label(h.key)}}, h.share);
  }
  m.counter("cachet_hot_key_sampled_reads_total", "Reads the hot-key tracker sampled.", cache, {},
            t.sampled());
  m.counter("cachet_hot_key_dropped_samples_total",
            "Samples the hot-key tracker dropped (it was busy).", cache, {}, t.dropped());
}

// The keys a stampede detector flagged in its last window (at most k_exported_hot_keys) and how
// many it has flagged in all. Judges a window that has ended (see stampede_detector).
template <class K, class C, class H, class E>
void write_metrics(metrics_sink& m, std::string_view cache, stampede_detector<K, C, H, E>& d) {
  const auto flagged = d.last_window();
  for (std::size_t i = 0; i < flagged.size() && i < k_exported_hot_keys; ++i) {
    m.gauge("cachet_stampede_key_misses",
            "Misses of a key that reached the stampede threshold in the last window.", cache,
            {{"key", detail::hot_key_label(flagged[i].key)}},
            static_cast<double>(flagged[i].misses));
  }
  m.counter("cachet_stampede_keys_total",
            "Keys that reached the stampede threshold (once per window each).", cache, {},
            d.stampedes());
}

namespace detail {
template <class S>
concept metrics_hot_key_source = requires(const S& s, metrics_sink& m) {
  write_metrics(m, std::string_view{}, s.tracker());
};
template <class S>
concept metrics_tracker = requires(const S& s, metrics_sink& m) {
  s.hot_keys(std::size_t{1});
  write_metrics(m, std::string_view{}, s);
};
template <class S>
concept metrics_stats_source = requires(const S& s, metrics_sink& m) {
  write_metrics(m, std::string_view{}, s.stats());
};
template <class S>
concept metrics_load_source = requires(const S& s, metrics_sink& m) {
  write_metrics(m, std::string_view{}, s.load_stats());
};
template <class S>
concept metrics_store_owner = requires(S& s) {
  s.store().stats();
};
}  // namespace detail

class metrics_registry {
 public:
  metrics_registry() = default;
  metrics_registry(const metrics_registry&) = delete;
  metrics_registry& operator=(const metrics_registry&) = delete;

  // Registers `source` (kept by reference) under `name`, the value of its `cache` label. A
  // source is any cachet store or pattern (the file comment lists what each gives). Throws
  // std::invalid_argument for an empty name or one already registered.
  template <class Source>
  void add(std::string name, Source& source) {
    static_assert(detail::metrics_stats_source<Source> || detail::metrics_load_source<Source> ||
                      detail::metrics_store_owner<Source> || detail::metrics_tracker<Source>,
                  "cachet::metrics_registry::add: the source has no stats() this registry can "
                  "write (for the Redis tier, include cachet/redis/metrics.hpp)");
    if (name.empty()) throw std::invalid_argument("metrics_registry::add: empty name");
    std::function<void(metrics_sink&, std::string_view)> write =
        [&source](metrics_sink& m, std::string_view c) { collect(m, c, source); };
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [n, w] : sources_) {
      if (n == name) {
        throw std::invalid_argument("metrics_registry::add: \"" + name +
                                    "\" is already registered");
      }
    }
    sources_.emplace_back(std::move(name), std::move(write));
  }

  // Forgets the source registered as `name`; false if there is none.
  bool remove(std::string_view name) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = sources_.begin(); it != sources_.end(); ++it) {
      if (it->first == name) {
        sources_.erase(it);
        return true;
      }
    }
    return false;
  }

  // Every registered source's counters now, as Prometheus text (format 0.0.4).
  std::string prometheus_text() const {
    metrics_sink m;
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, write] : sources_) write(m, name);
    return m.text();
  }

 private:
  // A pattern that wraps a store (cache_aside) gives the store's counters and its loads; write_back
  // and read_through give their own (their requests are the pattern's).
  template <class Source>
  static void collect(metrics_sink& m, std::string_view cache, Source& source) {
    if constexpr (detail::metrics_tracker<Source>) {
      write_metrics(m, cache, std::as_const(source));
    } else if constexpr (detail::metrics_stats_source<Source>) {
      write_metrics(m, cache, std::as_const(source).stats());
    } else if constexpr (detail::metrics_store_owner<Source>) {
      collect(m, cache, source.store());
    }
    if constexpr (detail::metrics_hot_key_source<Source>) {
      write_metrics(m, cache, std::as_const(source).tracker());
    }
    if constexpr (requires { *source.stampedes(); }) {
      if (auto* d = source.stampedes()) write_metrics(m, cache, *d);
    }
    if constexpr (detail::metrics_load_source<Source>) {
      write_metrics(m, cache, std::as_const(source).load_stats());
    }
    if constexpr (requires { source.tenants(); }) {  // tenant_store: each tenant's counters
      for (const auto& v : source.tenants()) write_metrics(m, cache, v.name(), v.stats());
    }
    if constexpr (requires { source.tag_invalidations(); }) {  // tagged_store
      m.counter("cachet_tag_invalidations_total", "invalidate_tag() calls.", cache, {},
                source.tag_invalidations());
    }
  }

  mutable std::mutex mu_;
  std::vector<std::pair<std::string, std::function<void(metrics_sink&, std::string_view)>>>
      sources_;
};

}  // namespace cachet
