// cachet/options.hpp — configuration of a sharded_store, and the small result types of its API.
//
// Purpose: `store_options<K, V>` is the plain struct a user fills in (designated initialisers work)
// and hands to a store's constructor. The constructor validates it in full before allocating
// anything and throws `cachet::invalid_option` naming the offending option and its allowed range,
// so a bad configuration fails at start-up, never later under load.
//
// Thread safety: plain values; copy freely. The callbacks (`weigher`, `on_removal`) are called by
// the store from whatever thread performs the operation, never while a shard lock is held, so they
// must be thread-safe themselves and may call back into the store. An `expiry` policy and the
// `on_eviction` listener are the exceptions: they run under the shard lock (see each).
//
// Exception safety: nothing here throws; a store's constructor throws `invalid_option` for bad
// values.
//
// Example:
//   cachet::store_options<std::string, std::string> opts{
//       .max_entries = 100'000,
//       .default_ttl = std::chrono::minutes(5),
//       .ttl_jitter = 0.1,   // each TTL shortened by up to 10% so a batch loaded together does not
//       expire together .on_removal = [](const std::string& k, const std::string&,
//       cachet::removal_cause c) { ... },
//   };
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

#include "cachet/recorder.hpp"

namespace cachet {

// Pass as the ttl of put() for an entry that never expires even when a default_ttl is set.
inline constexpr std::chrono::nanoseconds no_expiry = std::chrono::nanoseconds::max();

// Why an entry left the store; passed to the removal listener.
enum class removal_cause : std::uint8_t {
  explicit_erase,  // erase() or erase_if() removed it
  replaced,        // a put() for the same key replaced its value
  expired,  // its deadline passed; reclaimed on access, by the amortised sweep, or by cleanup()
  evicted,  // the eviction policy chose it to make room
  cleared,  // clear() removed it
};

constexpr std::string_view to_string(removal_cause c) noexcept {
  switch (c) {
    case removal_cause::explicit_erase:
      return "explicit";
    case removal_cause::replaced:
      return "replaced";
    case removal_cause::expired:
      return "expired";
    case removal_cause::evicted:
      return "evicted";
    case removal_cause::cleared:
      return "cleared";
  }
  return "unknown";
}

// Outcome of put(). Only `inserted` and `replaced` mean the value is now in the store.
enum class put_result : std::uint8_t {
  inserted,            // the key was absent (or expired) and now maps to the value
  replaced,            // the key was present; its value (and deadline) were replaced
  rejected_full,       // the shard is full and the policy may not evict (no_eviction): nothing was
                       // evicted
  rejected_by_policy,  // an admission policy kept the incumbent entries instead (W-TinyLFU style)
  rejected_too_heavy,  // the entry's weight exceeds what one shard may hold
  rejected_stale,      // put_if(): the condition was false under the store's lock (a write or
                       // invalidation of the key came after the fill's ticket); nothing changed
  rejected_unavailable,  // a remote store (redis_store): the backend could not be reached or
                         // refused the write; nothing is known to be stored
};

namespace detail {
// What a store's put_if() takes as `still_valid`: a noexcept bool() (see cachet/store.hpp).
template <class P>
concept nothrow_condition = std::is_nothrow_invocable_r_v<bool, P&>;
}  // namespace detail

// True when the value passed to put() is now stored.
constexpr bool stored(put_result r) noexcept {
  return r == put_result::inserted || r == put_result::replaced;
}

constexpr std::string_view to_string(put_result r) noexcept {
  switch (r) {
    case put_result::inserted:
      return "inserted";
    case put_result::replaced:
      return "replaced";
    case put_result::rejected_full:
      return "rejected_full";
    case put_result::rejected_by_policy:
      return "rejected_by_policy";
    case put_result::rejected_too_heavy:
      return "rejected_too_heavy";
    case put_result::rejected_stale:
      return "rejected_stale";
    case put_result::rejected_unavailable:
      return "rejected_unavailable";
  }
  return "unknown";
}

// Thrown by constructors for a configuration error. `option()` is the option's name as spelled in
// `store_options`; what() reads "cachet: option 'NAME' ...: <allowed range>".
class invalid_option : public std::invalid_argument {
 public:
  invalid_option(std::string option, const std::string& message)
      : std::invalid_argument("cachet: option '" + option + "' " + message),
        option_(std::move(option)) {}
  const std::string& option() const noexcept { return option_; }

 private:
  std::string option_;
};

// Per-entry lifetimes chosen by the user, as Caffeine's Expiry: set store_options::expiry to an
// object deriving from this and overriding what it needs. Each function returns the entry's time
// to live from now: cachet::no_expiry for none, zero or less for "expired now" (a read that asked
// still returns the value it found). The defaults keep what the store would do without an expiry.
//   after_create(key, value, ttl): a write stored a new entry. `ttl` is the TTL the write asked
//     for (the default TTL or the one given to the call, jittered; no_expiry when none).
//   after_update(key, value, ttl, remaining): a write replaced a live entry's value; `remaining`
//     is what the old entry had left (no_expiry when none).
//   after_read(key, value, remaining): a read returned the entry (get(), get_all(), and
//     get_or_insert() / put_if_absent() finding it); the quiet lookups (peek, contains,
//     expires_in) do not call it.
// They run under the entry's shard lock, from any thread, often at once for different keys: they
// must be thread-safe, fast, and must not call the store (that deadlocks). They are noexcept.
// set_expires_after() sets a lifetime directly and calls none of them.
template <class K, class V>
class expiry_policy {
 public:
  virtual ~expiry_policy() = default;
  virtual std::chrono::nanoseconds after_create(const K&, const V&,
                                                std::chrono::nanoseconds ttl) noexcept {
    return ttl;
  }
  virtual std::chrono::nanoseconds after_update(const K&, const V&, std::chrono::nanoseconds ttl,
                                                std::chrono::nanoseconds /*remaining*/) noexcept {
    return ttl;
  }
  virtual std::chrono::nanoseconds after_read(const K&, const V&,
                                              std::chrono::nanoseconds remaining) noexcept {
    return remaining;
  }
};

template <class K, class V>
struct store_options {
  // Maximum number of entries. Required unless max_weight is set. The bound is split evenly over
  // the shards (each shard holds at most ceil(max_entries / shards)); size() never exceeds
  // max_entries.
  std::size_t max_entries = 0;

  // Maximum total weight, 0 = no weight bound. Needs `weigher`. Split over shards like max_entries;
  // an entry heavier than one shard's share is refused with put_result::rejected_too_heavy.
  std::uint64_t max_weight = 0;

  // Weight of an entry, in [0, 2^32). Called once per put(), outside any lock. Required with
  // max_weight.
  std::function<std::uint32_t(const K&, const V&)> weigher{};

  // Number of shards: a power of two in [1, 65536], 0 = automatic (32 per hardware thread, rounded
  // up to a power of two, at most 1024, reduced so that each shard holds at least 256 entries).
  // Many shards keep two cores from taking turns on one shard's lock line under skewed traffic
  // (bench/RESULTS.md). One shard gives the exact eviction order of the policy over the whole
  // store; more shards give concurrency, and each shard runs the policy over its own share.
  std::size_t shards = 0;

  // TTL used by put(key, value); zero = entries do not expire. Must not be negative.
  std::chrono::nanoseconds default_ttl{0};

  // Fraction in [0, 1): every TTL is shortened by a uniformly random part of up to this fraction,
  // so entries written together do not all expire at the same instant. Jitter never lengthens a TTL
  // (the clock's resolution still applies: see clock.hpp).
  double ttl_jitter = 0.0;

  // Time to idle: > 0 makes an entry expire this long after its last read or write (the reads
  // expiry_policy::after_read lists); 0 = off. A put given its own TTL keeps that lifetime until
  // the entry's next read or write. An entry has one deadline, so this cannot be combined with
  // default_ttl (an absolute cap) or with `expiry`: the constructor throws invalid_option. For an
  // idle timeout under a hard cap, keep the creation time in the value and use an expiry_policy.
  std::chrono::nanoseconds expire_after_access{0};

  // A per-entry lifetime policy (expiry_policy above); null = none. Shared, so options copy.
  std::shared_ptr<expiry_policy<K, V>> expiry{};

  // The most of each shard pin() may hold, in [0, 1): pinned entries are never evicted but count
  // against the bounds, so this keeps room for the rest (a shard of capacity c pins at most
  // floor(c x max_pinned_fraction) entries, and with max_weight at most that fraction of its
  // weight). 0 disables pinning.
  double max_pinned_fraction = 0.1;

  // Remember when each entry was last written, for age_of(key). Costs 8 bytes per entry of
  // max_entries, allocated at construction (so it needs an entry bound), and a clock read per
  // write; nothing on the hit path. Off: age_of() throws std::logic_error.
  bool track_age = false;

  // Called after an entry leaves the store, with the key, the value it had and why. Runs on the
  // thread that caused the removal, after the shard lock is released. Within one store operation,
  // removals are reported in the order they happened; across threads there is no ordering.
  std::function<void(const K&, const V&, removal_cause)> on_removal{};

  // Called when the store removes an entry on its own (cause `evicted` or `expired`) while that
  // removal happens: under the shard lock, before the key and value are gone, so a structure kept
  // beside the cache (an index, a byte count) never sees the entry gone from one and not the other.
  // The price of running under the lock: it must be fast, must not call the store (that
  // deadlocks), and must not throw (an exception calls std::terminate). on_removal hears of the
  // same removals afterwards, as usual.
  std::function<void(const K&, const V&, removal_cause)> on_eviction{};

  // Called when a write is refused (put_result rejected_full, rejected_by_policy or
  // rejected_too_heavy: nothing was stored), with the key and value it offered. Runs on the writing
  // thread after the shard lock is released; may call the store. What it throws reaches the
  // writer, the refusal done.
  std::function<void(const K&, const V&, put_result)> on_rejection{};

  // Your own stats recorder (cachet/recorder.hpp): hears each get's hit or miss and each entry the
  // store evicts or expires, and the loads of the patterns over this store, as they happen. The
  // store's own counters are kept too. Empty: nothing is called.
  recorder_ref recorder{};
};

}  // namespace cachet
