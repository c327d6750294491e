// cachet/redis/detail/redis_nodes.hpp — the servers a redis_store talks to: one, or the primaries
// of a Redis Cluster and the map of which serves each hash slot.
//
// IMPLEMENTATION DETAILS
// A node is an endpoint with its own connection pool and its own circuit breaker, so one dead
// primary of a cluster fails fast for its slots only. A single server is one node and no map.
//
// In cluster mode the map is 16384 atomic node indexes (k_unknown: nobody known), read without a
// lock on every call. It is written (1) whole, by refresh_if_due(), from a CLUSTER SLOTS reply of
// any node that answers, and (2) one slot at a time by moved(), when a node answered MOVED; moved()
// and a lost node also make a refresh due. Refreshes are serialized by a mutex taken with try_lock
// (a thread that finds one running goes on with the old map) and spaced by at least
// cluster_refresh_interval (real time, std::chrono::steady_clock: the store's Clock may be a
// manual test clock), so a storm of MOVED replies costs one CLUSTER SLOTS per interval. Between
// refreshes a stale map costs one redirection per call, never a wrong answer: the node that does
// not own a slot says so.
//
// Nodes are added (from the seeds, the map, or a redirection) and never removed while the store
// lives; at most k_max_nodes. `table_` publishes them to lock-free readers: a node is fully built
// before its pointer is stored (release) and the map names its index only after that.
#pragma once

#include <hiredis/hiredis.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cachet/clock.hpp"
#include "cachet/redis/detail/circuit_breaker.hpp"
#include "cachet/redis/detail/cluster_slots.hpp"
#include "cachet/redis/detail/connection.hpp"
#include "cachet/redis/detail/connection_pool.hpp"
#include "cachet/redis/options.hpp"

namespace cachet::detail {

template <class Clock>
requires cachet::clock<Clock>
class redis_nodes {
 public:
  static constexpr std::uint16_t k_unknown = 0xffff;
  static constexpr std::size_t k_max_nodes = 1024;

  struct node {
    node(redis_options o, std::uint16_t i, const Clock& c)
        : opts(std::move(o)), index(i), breaker(opts.breaker, c), pool(opts) {}
    const redis_options opts;  // the store's options, with this node's host and port
    const std::uint16_t index;
    circuit_breaker<Clock> breaker;
    redis_pool pool;
  };

  // Standalone: one node, the endpoint of `o`. Cluster (o.cluster_seeds not empty): one node per
  // distinct seed, and an empty map (the first call fetches it). Throws std::bad_alloc.
  redis_nodes(const redis_options& o, const Clock& clock)
      : base_(o), clock_(clock), cluster_(!o.cluster_seeds.empty()) {
    table_ = std::make_unique<std::atomic<node*>[]>(cluster_ ? k_max_nodes : 1);
    if (!cluster_) {
      owned_.push_back(std::make_unique<node>(o, 0, clock_));
      table_[0].store(owned_.back().get(), std::memory_order_release);
      count_.store(1, std::memory_order_release);
      return;
    }
    slots_ = std::make_unique<std::atomic<std::uint16_t>[]>(k_cluster_slots);
    for (std::size_t s = 0; s < k_cluster_slots; ++s) {
      slots_[s].store(k_unknown, std::memory_order_relaxed);
    }
    for (const redis_endpoint& e : o.cluster_seeds) at(e.host, e.port);
  }

  redis_nodes(const redis_nodes&) = delete;
  redis_nodes& operator=(const redis_nodes&) = delete;

  bool cluster() const noexcept { return cluster_; }

  // The node that serves the Redis key `rk`: the only one, or its slot's per the map. Fetches the
  // map first when a fetch is due (see refresh_if_due). A slot nobody is known to serve goes to a
  // node whose breaker is not open (the first node if all are): its MOVED reply says where the
  // slot lives. Blocks only in a fetch; throws std::bad_alloc.
  template <class OnConnect>
  node& for_key(std::string_view rk, OnConnect&& on_connect) {
    if (!cluster_) return *table_[0].load(std::memory_order_relaxed);
    refresh_if_due(on_connect);
    const std::uint16_t slot = key_slot(rk);
    std::uint16_t i = slots_[slot].load(std::memory_order_acquire);
    if (i == k_unknown) {
      refresh_due_.store(true, std::memory_order_relaxed);
      return any_node();
    }
    return *table_[i].load(std::memory_order_acquire);
  }

  // The node at host:port, added if it is new; nullptr if k_max_nodes are known already. Takes a
  // mutex; throws std::bad_alloc.
  node* at(std::string_view host, int port) {
    std::lock_guard<std::mutex> lock(nodes_mu_);
    for (const auto& n : owned_) {
      if (n->opts.port == port && n->opts.host == host) return n.get();
    }
    if (owned_.size() >= (cluster_ ? k_max_nodes : 1)) return nullptr;
    redis_options o = base_;
    o.host.assign(host);
    o.port = port;
    o.unix_socket.clear();
    owned_.push_back(
        std::make_unique<node>(std::move(o), static_cast<std::uint16_t>(owned_.size()), clock_));
    node* n = owned_.back().get();
    table_[n->index].store(n, std::memory_order_release);
    count_.store(owned_.size(), std::memory_order_release);
    return n;
  }

  // A node answered MOVED: `slot` lives on `n` now. The whole map is due for a fetch, too.
  void moved(std::uint16_t slot, const node& n) noexcept {
    slots_[slot].store(n.index, std::memory_order_release);
    refresh_due_.store(true, std::memory_order_relaxed);
  }

  // A node failed (timeout or connection): in a cluster its slots may have a new primary.
  void lost() noexcept {
    if (cluster_) refresh_due_.store(true, std::memory_order_relaxed);
  }

  // Fetches the map (CLUSTER SLOTS) if one is due (never fetched, or MOVED / a lost node since the
  // last) and the last attempt is at least cluster_refresh_interval old, and no other thread is
  // fetching. Asks the known nodes in turn (skipping those whose breaker is open) until one
  // answers; its answer replaces the map whole (slots it does not list become unknown). Calls
  // on_connect() before opening a connection. Blocks for the commands it sends; throws bad_alloc.
  template <class OnConnect>
  void refresh_if_due(OnConnect&& on_connect) {
    if (!cluster_ || !refresh_due_.load(std::memory_order_relaxed)) return;
    std::unique_lock<std::mutex> lock(refresh_mu_, std::try_to_lock);
    if (!lock.owns_lock()) return;
    const auto now = std::chrono::steady_clock::now();
    if (tried_once_ && now - last_try_ < base_.cluster_refresh_interval) return;
    tried_once_ = true;
    last_try_ = now;
    const std::size_t n = count_.load(std::memory_order_acquire);
    for (std::size_t k = 0; k < n; ++k) {
      node& from = *table_[(next_ + k) % n].load(std::memory_order_acquire);
      if (from.breaker.state() != breaker_state::closed) continue;
      if (fetch_map(from, on_connect)) {
        next_ = from.index;  // ask the one that answered first next time
        refresh_due_.store(false, std::memory_order_relaxed);
        refreshes_.fetch_add(1, std::memory_order_relaxed);
        return;
      }
    }
  }

  // Every node in index order (for stats); the count only grows.
  std::size_t size() const noexcept { return count_.load(std::memory_order_acquire); }
  const node& operator[](std::size_t i) const noexcept {
    return *table_[i].load(std::memory_order_acquire);
  }
  node& operator[](std::size_t i) noexcept { return *table_[i].load(std::memory_order_acquire); }

  std::uint64_t refreshes() const noexcept { return refreshes_.load(std::memory_order_relaxed); }

  // How many nodes the map names now (1 for a single server).
  std::uint64_t primaries() const noexcept {
    return cluster_ ? primaries_.load(std::memory_order_relaxed) : 1;
  }

 private:
  node& any_node() noexcept {
    const std::size_t n = count_.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < n; ++i) {
      node& c = *table_[i].load(std::memory_order_acquire);
      if (c.breaker.state() != breaker_state::open) return c;
    }
    return *table_[0].load(std::memory_order_acquire);
  }

  template <class OnConnect>
  bool fetch_map(node& from, OnConnect& on_connect) {
    redis_failure f;
    redis_pool::lease conn = from.pool.acquire(f, on_connect);
    if (!conn) return false;
    const redis_result r = conn->command({"CLUSTER", "SLOTS"});
    if (!r.ok() || r.reply->type != REDIS_REPLY_ARRAY) return false;
    std::vector<std::uint16_t> map(k_cluster_slots, k_unknown);
    std::vector<bool> named(k_max_nodes, false);
    std::uint64_t primaries = 0;
    for (std::size_t e = 0; e < r.reply->elements; ++e) {
      const redisReply* range = r.reply->element[e];
      if (range->type != REDIS_REPLY_ARRAY || range->elements < 3) continue;
      const redisReply* lo = range->element[0];
      const redisReply* hi = range->element[1];
      const redisReply* primary = range->element[2];
      if (lo->type != REDIS_REPLY_INTEGER || hi->type != REDIS_REPLY_INTEGER ||
          primary->type != REDIS_REPLY_ARRAY || primary->elements < 2 ||
          primary->element[0]->type != REDIS_REPLY_STRING ||
          primary->element[1]->type != REDIS_REPLY_INTEGER || lo->integer < 0 ||
          hi->integer < lo->integer || hi->integer >= static_cast<long long>(k_cluster_slots)) {
        continue;
      }
      std::string_view host(primary->element[0]->str, primary->element[0]->len);
      // Redis 7 answers "" or "?" for an endpoint it does not know: the node we asked.
      if (host.empty() || host == "?") host = from.opts.host;
      const long long port = primary->element[1]->integer;
      if (port < 1 || port > 65535) continue;
      node* owner = at(host, static_cast<int>(port));
      if (owner == nullptr) continue;
      if (!named[owner->index]) ++primaries;
      named[owner->index] = true;
      std::fill(map.begin() + lo->integer, map.begin() + hi->integer + 1, owner->index);
    }
    for (std::size_t s = 0; s < k_cluster_slots; ++s) {
      slots_[s].store(map[s], std::memory_order_release);
    }
    primaries_.store(primaries, std::memory_order_relaxed);
    return true;
  }

  const redis_options base_;
  Clock clock_;
  const bool cluster_;
  std::unique_ptr<std::atomic<node*>[]> table_;          // [index] -> node, published with release
  std::unique_ptr<std::atomic<std::uint16_t>[]> slots_;  // cluster only: slot -> node index
  std::atomic<std::size_t> count_{0};
  std::mutex nodes_mu_;
  std::vector<std::unique_ptr<node>> owned_;  // guarded by nodes_mu_
  std::atomic<bool> refresh_due_{true};
  std::mutex refresh_mu_;
  bool tried_once_ = false;                         // guarded by refresh_mu_
  std::chrono::steady_clock::time_point last_try_;  // guarded by refresh_mu_
  std::size_t next_ = 0;                            // guarded by refresh_mu_
  std::atomic<std::uint64_t> refreshes_{0};
  std::atomic<std::uint64_t> primaries_{0};
};

}  // namespace cachet::detail
