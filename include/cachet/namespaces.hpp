// cachet/namespaces.hpp — versioned namespaces: drop a whole group of keys in O(1).
//
// Purpose: real invalidation is often by group (every entry of a catalogue, of a deploy, of a
// customer's settings), and erase_if() over the store is a scan. A namespace carries a version,
// and every key is stored as (namespace, version, key): bump(ns) moves the version on, so every
// key written under the old one is unreachable at once, whatever their number, and the old
// entries leave as the store evicts or expires them (give the store a TTL or a bound: they are
// never read again and only take room until then).
//
//   using store_t = cachet::sharded_store<cachet::versioned_key<std::string>, Product>;
//   cachet::versioned_namespaces<store_t> products(store_t::options_type{
//       .max_entries = 100'000, .default_ttl = std::chrono::minutes(10)});
//   auto books = products.open("books");
//   products.put(books, "isbn:123", p);
//   products.bump(books);                       // every "books" entry is gone, in O(1)
//   assert(!products.get(books, "isbn:123"));
//
// Guarantee: a get() that starts after bump(ns) returned never sees an entry put under an
// earlier version. A put() running during the bump lands under the version it read: the old one
// (out of reach at once) or the new one (as if it came after the bump). Namespaces never interfere:
// a key of one namespace is never another's. In this process only: to bump a namespace on every
// instance, announce it with cachet::redis_group_bus (cachet/redis/group_bus.hpp).
//
// Thread safety: every member may be called from any thread. open() takes a mutex (call it once
// per namespace and keep the handle); get/put/erase add one relaxed atomic load of the version to
// the store's own cost; bump() is one atomic increment. Versions are 32-bit: a namespace bumped
// 2^32 times wraps, and an entry that outlived all those bumps would be reachable again (give the
// store a TTL). Exceptions: what the store throws; open() throws std::bad_alloc, and
// std::length_error past 2^32 namespaces.
#pragma once

#include <absl/container/flat_hash_map.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "cachet/hash.hpp"
#include "cachet/options.hpp"

namespace cachet {

// A key of a versioned namespace: `space` is the namespace's id (high 32 bits) and version (low 32
// bits), `key` the user's key.
template <class K>
struct versioned_key {
  using key_type = K;
  std::uint64_t space = 0;
  K key;
  friend bool operator==(const versioned_key&, const versioned_key&) = default;
};

// Hashes the user's key with cachet::hash<K> and mixes in the space.
template <class K>
struct hash<versioned_key<K>> {
  using is_avalanching = void;
  std::uint64_t operator()(const versioned_key<K>& k) const noexcept(noexcept(hash<K>{}(k.key))) {
    return detail::mix64(hash<K>{}(k.key) + detail::mix64(k.space + detail::process_seed()));
  }
};

template <class Store>
class versioned_namespaces {
 public:
  using store_type = Store;
  using key_type = typename Store::key_type::key_type;
  using mapped_type = typename Store::mapped_type;
  static_assert(std::is_same_v<typename Store::key_type, versioned_key<key_type>>,
                "cachet::versioned_namespaces: the store's key_type must be "
                "cachet::versioned_key<K>");

  // A namespace, from open(): a cheap copyable handle, valid while this object lives.
  class space {
   public:
    space() = default;
    std::string_view name() const noexcept { return entry_->name; }

   private:
    friend class versioned_namespaces;
    struct entry {
      std::string name;
      std::uint32_t id;
      std::atomic<std::uint32_t> version{0};
    };
    explicit space(entry* e) noexcept : entry_(e) {}
    entry* entry_ = nullptr;
  };

  // Constructs the store from `args`.
  template <class... Args>
  explicit versioned_namespaces(Args&&... args) : store_(std::forward<Args>(args)...) {}
  versioned_namespaces(const versioned_namespaces&) = delete;
  versioned_namespaces& operator=(const versioned_namespaces&) = delete;

  // The namespace called `name`, created (at version 0) if it is new.
  space open(std::string_view name) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = by_name_.find(name);
    if (it != by_name_.end()) return space(it->second);
    if (spaces_.size() > 0xffff'ffffu) {
      throw std::length_error("cachet::versioned_namespaces: more than 2^32 namespaces");
    }
    typename space::entry& e = spaces_.emplace_back();
    e.name = std::string(name);
    e.id = static_cast<std::uint32_t>(spaces_.size() - 1);
    try {
      by_name_.emplace(e.name, &e);
    } catch (...) {
      spaces_.pop_back();
      throw;
    }
    return space(&e);
  }

  // The store's get / peek / put / erase of `key` in the namespace's current version.
  std::optional<mapped_type> get(space ns, const key_type& key) {
    return store_.get(versioned_key<key_type>{current(ns), key});
  }
  std::optional<mapped_type> peek(space ns, const key_type& key) {
    return store_.peek(versioned_key<key_type>{current(ns), key});
  }
  put_result put(space ns, key_type key, mapped_type value) {
    return store_.put(versioned_key<key_type>{current(ns), std::move(key)}, std::move(value));
  }
  template <class Rep, class Period>
  put_result put(space ns, key_type key, mapped_type value,
                 std::chrono::duration<Rep, Period> ttl) {
    return store_.put(versioned_key<key_type>{current(ns), std::move(key)}, std::move(value), ttl);
  }
  bool erase(space ns, const key_type& key) {
    return store_.erase(versioned_key<key_type>{current(ns), key});
  }

  // Makes every key written to `ns` so far unreachable; returns the new version. O(1).
  std::uint32_t bump(space ns) noexcept {
    return ns.entry_->version.fetch_add(1, std::memory_order_acq_rel) + 1;
  }
  std::uint32_t version(space ns) const noexcept {
    return ns.entry_->version.load(std::memory_order_acquire);
  }

  // The store underneath (its stats, its bounds; its keys are versioned_key).
  Store& store() noexcept { return store_; }
  const Store& store() const noexcept { return store_; }

 private:
  // (id << 32) | version: the space a key of `ns` goes under now.
  static std::uint64_t current(space ns) noexcept {
    return (std::uint64_t{ns.entry_->id} << 32) |
           ns.entry_->version.load(std::memory_order_acquire);
  }

  std::mutex mu_;
  std::deque<typename space::entry> spaces_;  // stable addresses for the handles
  absl::flat_hash_map<std::string, typename space::entry*, string_hash, std::equal_to<>> by_name_;
  Store store_;
};

}  // namespace cachet
