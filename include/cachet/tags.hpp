// cachet/tags.hpp — tags (surrogate keys): drop every entry of a group in O(entries in the group).
//
// Purpose: real invalidation is by group (every page that shows product 42, every entry of a
// category, of a deploy), and the group is only known when the entry is written. A tagged_store
// takes a list of tags with each put, keeps an index tag -> keys beside the store, and
// invalidate_tag(t) erases the keys the index lists for t: its cost is the number of entries
// carrying t, never a scan of the store. The index follows the store: an entry that is replaced,
// erased, evicted, expired or cleared leaves the index in the same store call (through the store's
// on_removal), so the index holds no more than the live tagged entries plus the puts in flight.
//
//   using store_t = cachet::sharded_store<std::string, cachet::tagged_value<Page>>;
//   cachet::tagged_store<store_t> pages(store_t::options_type{.max_entries = 100'000});
//   pages.put("/p/42", page, {"product:42", "category:7"});
//   pages.put("/c/7", listing, {"category:7"});
//   pages.invalidate_tag("category:7");      // both gone; 2 erases, whatever the store's size
//
// Guarantee: a get() that starts after invalidate_tag(t) returned never sees an entry put with
// tag t by a put() that returned before invalidate_tag(t) started. A put racing the call may
// land either way. invalidate_tag(t) may also drop a key whose entry no longer carries t, when a
// put of that key without t races the call (one later miss, never a stale read).
//
// How: each put takes a stamp (a 64-bit counter) and registers (tag, key) in the index before the
// store sees the entry: per tag and key, a count of the registrations not yet withdrawn. The
// stored value carries the stamp; the store's on_removal withdraws the stamp's registrations
// (the stamp -> tags table says which) once the entry leaves, and a put the store refused
// withdraws its own. So while an entry carrying t is in the store its key is registered under t,
// and invalidate_tag(t) copies the tag's keys (under the tag's stripe lock) and erases each one.
//
// Cost: untagged puts and all reads never touch the index (a read copies the value and 8 bytes
// of stamp). A tagged put takes one stripe lock per tag, plus one for the stamp, and allocates
// in the index; each removal of a tagged entry takes them again. Memory: per tagged entry, the
// stamp's tag list and, per tag, one (key, count) slot.
//
// Thread safety: every member may be called from any thread. Exceptions: what the store throws,
// and std::bad_alloc from the index (put: nothing stored, nothing registered; invalidate_tag: the
// keys erased so far stay erased). The store's options.on_removal, if given, is called after the
// index has been updated; if it throws, the store skips its later calls in that operation, as
// for any listener, and their entries stay registered (invalidate_tag(t) then erases keys it
// need not: a miss, never a stale read). Do not set store options after construction.
// In this process only: to invalidate a tag on every instance, announce it with
// cachet::redis_group_bus (cachet/redis/group_bus.hpp).
#pragma once

#include <absl/container/flat_hash_map.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cachet/hash.hpp"
#include "cachet/options.hpp"

namespace cachet {

// What a tagged_store's store holds per key: the user's value and the put's stamp (0: no tags).
template <class V>
struct tagged_value {
  V value;
  std::uint64_t stamp = 0;
};

template <class Store, class Tag = std::string>
class tagged_store {
 public:
  using store_type = Store;
  using key_type = typename Store::key_type;
  using value_type = typename Store::mapped_type;
  using mapped_type = decltype(std::declval<value_type&>().value);
  using tag_type = Tag;
  static_assert(std::is_same_v<value_type, tagged_value<mapped_type>>,
                "cachet::tagged_store: the store's mapped_type must be cachet::tagged_value<V>");

  // Constructs the store from `opts` (its on_removal is wrapped: the index hears of each removal
  // first) and `args` (e.g. a clock).
  template <class... Args>
  explicit tagged_store(typename Store::options_type opts, Args&&... args)
      : store_(wrapped(std::move(opts)), std::forward<Args>(args)...) {}
  tagged_store(const tagged_store&) = delete;
  tagged_store& operator=(const tagged_store&) = delete;

  std::optional<mapped_type> get(const key_type& key) { return unwrap(store_.get(key)); }
  std::optional<mapped_type> peek(const key_type& key) { return unwrap(store_.peek(key)); }
  bool contains(const key_type& key) { return static_cast<bool>(store_.contains(key)); }
  bool erase(const key_type& key) { return static_cast<bool>(store_.erase(key)); }

  // Puts `value` under `key` with `tags` (may be empty; a tag listed twice counts once for
  // invalidation). Returns the store's answer.
  put_result put(key_type key, mapped_type value, std::span<const Tag> tags) {
    return put_with(std::move(key), std::move(value), tags, [&](key_type&& k, value_type&& v) {
      return store_.put(std::move(k), std::move(v));
    });
  }
  put_result put(key_type key, mapped_type value, std::initializer_list<Tag> tags = {}) {
    return put(std::move(key), std::move(value), std::span<const Tag>(tags.begin(), tags.size()));
  }
  template <class Rep, class Period>
  put_result put(key_type key, mapped_type value, std::span<const Tag> tags,
                 std::chrono::duration<Rep, Period> ttl) {
    return put_with(std::move(key), std::move(value), tags, [&](key_type&& k, value_type&& v) {
      return store_.put(std::move(k), std::move(v), ttl);
    });
  }
  template <class Rep, class Period>
  put_result put(key_type key, mapped_type value, std::initializer_list<Tag> tags,
                 std::chrono::duration<Rep, Period> ttl) {
    return put(std::move(key), std::move(value), std::span<const Tag>(tags.begin(), tags.size()),
               ttl);
  }

  // Erases every entry put with `tag` (see the guarantee above); returns how many the store
  // removed. Costs one copy of the tag's key list and one store erase per key in it.
  std::size_t invalidate_tag(const Tag& tag) {
    invalidations_.fetch_add(1, std::memory_order_relaxed);
    std::vector<key_type> keys;
    {
      tag_stripe& s = tag_stripe_of(tag);
      std::lock_guard<std::mutex> g(s.mu);
      auto it = s.keys.find(tag);
      if (it == s.keys.end()) return 0;
      keys.reserve(it->second.size());
      for (const auto& [k, n] : it->second) keys.push_back(k);
    }
    std::size_t n = 0;
    for (const key_type& k : keys)
      n += static_cast<std::size_t>(static_cast<bool>(store_.erase(k)));
    return n;
  }

  // How many keys the index lists under `tag`: the live entries carrying it, plus puts in flight.
  std::size_t tagged_keys(const Tag& tag) {
    tag_stripe& s = tag_stripe_of(tag);
    std::lock_guard<std::mutex> g(s.mu);
    auto it = s.keys.find(tag);
    return it == s.keys.end() ? 0 : it->second.size();
  }
  // How many tagged entries the index knows of (live, plus puts in flight).
  std::size_t tagged_entries() {
    std::size_t n = 0;
    for (stamp_stripe& s : stamps_) {
      std::lock_guard<std::mutex> g(s.mu);
      n += s.tags.size();
    }
    return n;
  }
  // invalidate_tag() calls so far.
  std::uint64_t tag_invalidations() const noexcept {
    return invalidations_.load(std::memory_order_relaxed);
  }

  // The store underneath (its stats and bounds; its values are tagged_value). Writing through it
  // bypasses the index: a put there carries no tags.
  Store& store() noexcept { return store_; }
  const Store& store() const noexcept { return store_; }

 private:
  static constexpr std::size_t k_stripes = 16;
  struct alignas(64) tag_stripe {
    std::mutex mu;
    absl::flat_hash_map<Tag,
                        absl::flat_hash_map<key_type, std::uint32_t, typename Store::hasher,
                                            typename Store::key_equal>,
                        cachet::hash<Tag>>
        keys;
  };
  struct alignas(64) stamp_stripe {
    std::mutex mu;
    absl::flat_hash_map<std::uint64_t, std::vector<Tag>> tags;
  };

  static std::optional<mapped_type> unwrap(std::optional<value_type>&& v) {
    if (!v) return std::nullopt;
    return std::optional<mapped_type>(std::move(v->value));
  }

  tag_stripe& tag_stripe_of(const Tag& t) { return tags_[cachet::hash<Tag>{}(t) % k_stripes]; }
  stamp_stripe& stamp_stripe_of(std::uint64_t stamp) {
    return stamps_[detail::mix64(stamp) % k_stripes];
  }

  template <class Write>
  put_result put_with(key_type&& key, mapped_type&& value, std::span<const Tag> tags, Write write) {
    if (tags.empty()) return write(std::move(key), value_type{std::move(value), 0});
    const std::uint64_t stamp = next_stamp_.fetch_add(1, std::memory_order_relaxed);
    enroll(key, stamp, tags);  // before the store can hold (and remove) the entry
    put_result r;
    try {
      r = write(key_type(key), value_type{std::move(value), stamp});
    } catch (...) {
      withdraw(key, stamp);
      throw;
    }
    if (!stored(r)) withdraw(key, stamp);
    return r;
  }

  // Registers (tag, key) for each tag and remembers the stamp's tags; all or nothing.
  void enroll(const key_type& key, std::uint64_t stamp, std::span<const Tag> tags) {
    {
      stamp_stripe& s = stamp_stripe_of(stamp);
      std::lock_guard<std::mutex> g(s.mu);
      s.tags.emplace(stamp, std::vector<Tag>(tags.begin(), tags.end()));
    }
    std::size_t done = 0;
    try {
      for (; done < tags.size(); ++done) {
        tag_stripe& s = tag_stripe_of(tags[done]);
        std::lock_guard<std::mutex> g(s.mu);
        auto& keys = s.keys[tags[done]];
        ++keys[key];
      }
    } catch (...) {
      unregister(key, tags.first(done));
      std::lock_guard<std::mutex> g(stamp_stripe_of(stamp).mu);
      stamp_stripe_of(stamp).tags.erase(stamp);
      throw;
    }
  }

  // Withdraws the registrations of `stamp` (if it still has them). No-throw.
  void withdraw(const key_type& key, std::uint64_t stamp) noexcept {
    if (stamp == 0) return;
    std::vector<Tag> tags;
    {
      stamp_stripe& s = stamp_stripe_of(stamp);
      std::lock_guard<std::mutex> g(s.mu);
      auto it = s.tags.find(stamp);
      if (it == s.tags.end()) return;
      tags = std::move(it->second);
      s.tags.erase(it);
    }
    unregister(key, tags);
  }

  void unregister(const key_type& key, std::span<const Tag> tags) noexcept {
    for (const Tag& t : tags) {
      tag_stripe& s = tag_stripe_of(t);
      std::lock_guard<std::mutex> g(s.mu);
      auto it = s.keys.find(t);
      if (it == s.keys.end()) continue;
      auto k = it->second.find(key);
      if (k == it->second.end()) continue;
      if (--k->second == 0) {
        it->second.erase(k);
        if (it->second.empty()) s.keys.erase(it);
      }
    }
  }

  typename Store::options_type wrapped(typename Store::options_type opts) {
    opts.on_removal = [this, user = std::move(opts.on_removal)](
                          const key_type& k, const value_type& v, removal_cause c) {
      withdraw(k, v.stamp);
      if (user) user(k, v, c);
    };
    return opts;
  }

  std::array<tag_stripe, k_stripes> tags_;
  std::array<stamp_stripe, k_stripes> stamps_;
  std::atomic<std::uint64_t> next_stamp_{1};
  std::atomic<std::uint64_t> invalidations_{0};
  Store store_;  // last: destroyed first, while the index its listener updates still exists
};

}  // namespace cachet
