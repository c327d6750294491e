// cachet/redis/cluster_invalidation_listener.hpp — hear every write to a key prefix on every
// primary of a Redis Cluster.
//
// Purpose: the bus of a two-tier cache whose L2 is a redis_store over a cluster. Each primary
// tracks and reports only the keys of its own slots, so one redis_invalidation_listener per
// primary is needed; this class runs them and presents them as one bus with the same handlers and
// the same contract (redis/invalidation_listener.hpp): on_keys with full Redis key names, on_flush
// when a node's database went (a FLUSHALL reaches each node separately: each reports its own),
// on_state(false/true) strictly alternating from down. The bus is up only while *every* primary's
// listener is up: one lost node may have lost invalidations for its slots, so on_state(false)
// comes as soon as any one is lost, and on_state(true) once all are back.
//
// How it works: a background thread asks the seeds (cluster_seeds, then the primaries it knows)
// for CLUSTER SLOTS, collects the distinct primaries, and starts one listener per primary (each
// with that node's endpoint and the same options). Every heartbeat_interval it asks again; when
// the set of primaries changed (a failover promoted a replica, a node was added or removed) it
// reports the bus down, stops the old listeners and starts listeners for the new set, which then
// come up as above. A slot moving between primaries already heard needs nothing: the prefix is
// tracked on all of them. Staleness bound while the topology changes: a write to a new primary
// may be missed until the change is noticed, at most heartbeat_interval plus one CLUSTER SLOTS
// round trip later (and the owner's L1 TTL bounds it too); docs/redis.md has the table.
//
// Wiring: as for redis_invalidation_listener, with this class in its place, and `l2` a
// redis_store with the same cluster options and key_prefix.
//
// Thread safety: the handlers run one at a time (a mutex serializes the node listeners' threads),
// in each node's order; they must not throw and should be quick. stats(), connected() and nodes()
// may be called from any thread.
//
// Exception safety: the constructor throws cachet::invalid_option for a bad option, for options
// without cluster_seeds, or a missing handler; std::system_error if the thread cannot start;
// std::bad_alloc. Nothing else throws: a node that fails is reported through on_state.
#pragma once

#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "cachet/options.hpp"
#include "cachet/redis/detail/connection.hpp"
#include "cachet/redis/invalidation_listener.hpp"
#include "cachet/redis/options.hpp"

namespace cachet {

class redis_cluster_invalidation_listener {
 public:
  // Validates everything (throws invalid_option naming the first bad option or missing handler;
  // `conn.cluster_seeds` must not be empty), then starts the thread, which discovers the
  // primaries in the background. From `conn` it uses the seeds, AUTH, timeouts and key_prefix.
  redis_cluster_invalidation_listener(redis_options conn, invalidation_options opts,
                                      invalidation_handlers handlers)
      : conn_(validated(std::move(conn))), opts_(opts), handlers_(std::move(handlers)) {
    // The node listeners validate opts_ and the handlers themselves, but only later, on the
    // thread: check them here, where an exception can reach the caller.
    check_node_options();
    thread_ = std::thread([this] { run(); });
  }

  redis_cluster_invalidation_listener(const redis_cluster_invalidation_listener&) = delete;
  redis_cluster_invalidation_listener& operator=(const redis_cluster_invalidation_listener&) =
      delete;

  // Stops the thread and every node listener; no handler runs after it returns. May wait for one
  // CLUSTER SLOTS round trip in progress (connect_timeout + command_timeout) and for the node
  // listeners' destructors.
  ~redis_cluster_invalidation_listener() {
    {
      std::lock_guard<std::mutex> lock(wait_mu_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  // Whether every primary's listener is up now (the last on_state said true). Never blocks.
  bool connected() const noexcept { return up_.load(std::memory_order_acquire); }

  // How many primaries the bus listens to: those of the latest discovery (0 before the first).
  // Once connected() has returned true, this counts the primaries whose listeners made it so.
  std::size_t nodes() const noexcept { return node_count_.load(std::memory_order_acquire); }

  // Topology changes seen (each an on_state(false) if the bus was up, and new node listeners).
  std::uint64_t topology_changes() const noexcept {
    return topology_changes_.load(std::memory_order_relaxed);
  }

  // The node listeners' counters summed (those stopped by a topology change included), and
  // `connected` as connected(). Takes a mutex the thread holds while it swaps listeners.
  invalidation_stats stats() const {
    std::lock_guard<std::mutex> lock(listeners_mu_);
    invalidation_stats s = retired_;
    for (const auto& l : listeners_) add(s, l->stats());
    s.connected = connected();
    return s;
  }

  const redis_options& options() const noexcept { return conn_; }

 private:
  using node_listener = redis_invalidation_listener;

  static redis_options validated(redis_options o) {
    detail::validate_connection(o);
    if (o.cluster_seeds.empty()) {
      throw invalid_option("cluster_seeds",
                           "is empty: this listener hears a Redis Cluster; for one server use "
                           "redis_invalidation_listener");
    }
    return o;
  }

  void check_node_options() {
    redis_options one = conn_;
    one.cluster_seeds.clear();
    one.host = conn_.cluster_seeds.front().host;
    one.port = conn_.cluster_seeds.front().port;
    // A throwaway listener would start a thread; validate the way it would instead.
    detail::validate_connection(one);
    invalidation_handlers h = handlers_;
    if (!h.on_keys) throw invalid_option("handlers.on_keys", "is empty: it is required");
    if (!h.on_flush) throw invalid_option("handlers.on_flush", "is empty: it is required");
    if (!h.on_state) throw invalid_option("handlers.on_state", "is empty: it is required");
    detail::check_redis_duration(opts_.heartbeat_interval, "heartbeat_interval");
    detail::check_redis_duration(opts_.heartbeat_timeout, "heartbeat_timeout");
    detail::check_redis_duration(opts_.reconnect_backoff_min, "reconnect_backoff_min");
    detail::check_redis_duration(opts_.reconnect_backoff_max, "reconnect_backoff_max");
    if (opts_.reconnect_backoff_max < opts_.reconnect_backoff_min) {
      throw invalid_option("reconnect_backoff_max", "must be at least reconnect_backoff_min");
    }
  }

  static void add(invalidation_stats& s, const invalidation_stats& t) noexcept {
    s.messages += t.messages;
    s.keys_invalidated += t.keys_invalidated;
    s.flushes += t.flushes;
    s.disconnects += t.disconnects;
    s.reconnects += t.reconnects;
    s.failed_connects += t.failed_connects;
    s.heartbeats_missed += t.heartbeats_missed;
  }

  // The primaries' endpoints, sorted, from the first of `ask` that answers CLUSTER SLOTS; empty if
  // none does.
  std::vector<redis_endpoint> discover(const std::vector<redis_endpoint>& ask) const {
    for (const redis_endpoint& e : ask) {
      redis_options o = conn_;
      o.cluster_seeds.clear();
      o.host = e.host;
      o.port = e.port;
      detail::redis_failure f;
      std::unique_ptr<detail::redis_connection> c = detail::redis_connection::open(o, f);
      if (c == nullptr) continue;
      const detail::redis_result r = c->command({"CLUSTER", "SLOTS"});
      if (!r.ok() || r.reply->type != REDIS_REPLY_ARRAY) continue;
      std::vector<redis_endpoint> out;
      for (std::size_t i = 0; i < r.reply->elements; ++i) {
        const redisReply* range = r.reply->element[i];
        if (range->type != REDIS_REPLY_ARRAY || range->elements < 3) continue;
        const redisReply* p = range->element[2];
        if (p->type != REDIS_REPLY_ARRAY || p->elements < 2 ||
            p->element[0]->type != REDIS_REPLY_STRING ||
            p->element[1]->type != REDIS_REPLY_INTEGER || p->element[1]->integer < 1 ||
            p->element[1]->integer > 65535) {
          continue;
        }
        std::string host(p->element[0]->str, p->element[0]->len);
        if (host.empty() || host == "?") host = e.host;
        out.push_back({std::move(host), static_cast<int>(p->element[1]->integer)});
      }
      std::sort(out.begin(), out.end(), less);
      out.erase(std::unique(out.begin(), out.end(), same), out.end());
      if (!out.empty()) return out;
    }
    return {};
  }

  static bool less(const redis_endpoint& a, const redis_endpoint& b) noexcept {
    return a.host != b.host ? a.host < b.host : a.port < b.port;
  }
  static bool same(const redis_endpoint& a, const redis_endpoint& b) noexcept {
    return a.host == b.host && a.port == b.port;
  }

  // A node listener's on_state: node `i` of generation `gen` is up or down.
  void node_state(std::uint64_t gen, std::size_t i, bool up) {
    std::lock_guard<std::mutex> lock(handler_mu_);
    if (gen != gen_) return;  // a listener being replaced
    if (node_up_[i] == up) return;
    node_up_[i] = up;
    up ? ++nodes_up_ : --nodes_up_;
    if (!up && reported_up_) {
      reported_up_ = false;
      up_.store(false, std::memory_order_release);
      handlers_.on_state(false);
    } else if (up && !reported_up_ && nodes_up_ == node_up_.size()) {
      reported_up_ = true;
      up_.store(true, std::memory_order_release);
      handlers_.on_state(true);
    }
  }

  // Stops the current node listeners and starts one per primary in `primaries`.
  void replace(const std::vector<redis_endpoint>& primaries) {
    std::uint64_t gen = 0;
    {
      std::lock_guard<std::mutex> lock(handler_mu_);
      gen = ++gen_;
      if (reported_up_) {
        reported_up_ = false;
        up_.store(false, std::memory_order_release);
        handlers_.on_state(false);
      }
      node_up_.assign(primaries.size(), false);
      nodes_up_ = 0;
      // Before any new node listener can report: connected() turns true (under this mutex) only
      // after this store, so a caller that saw connected() reads the new count from nodes().
      node_count_.store(primaries.size(), std::memory_order_release);
    }
    std::vector<std::unique_ptr<node_listener>> old;
    {
      std::lock_guard<std::mutex> lock(listeners_mu_);
      old.swap(listeners_);
      for (const auto& l : old) add(retired_, l->stats());
    }
    old.clear();  // joins their threads, outside both mutexes (their handlers take handler_mu_)
    std::vector<std::unique_ptr<node_listener>> fresh;
    for (std::size_t i = 0; i < primaries.size(); ++i) {
      redis_options o = conn_;
      o.cluster_seeds.clear();
      o.host = primaries[i].host;
      o.port = primaries[i].port;
      fresh.push_back(std::make_unique<node_listener>(
          std::move(o), opts_,
          invalidation_handlers{
              .on_keys =
                  [this](std::span<const std::string> keys) {
                    std::lock_guard<std::mutex> lock(handler_mu_);
                    handlers_.on_keys(keys);
                  },
              .on_flush =
                  [this] {
                    std::lock_guard<std::mutex> lock(handler_mu_);
                    handlers_.on_flush();
                  },
              .on_state = [this, gen, i](bool up) { node_state(gen, i, up); },
          }));
    }
    {
      std::lock_guard<std::mutex> lock(listeners_mu_);
      listeners_.swap(fresh);
    }
    known_ = primaries;
    topology_changes_.fetch_add(1, std::memory_order_relaxed);
  }

  // The thread: discover, (re)start the node listeners when the primaries change, every
  // heartbeat_interval; until the destructor. A failure to start a node listener (a thread or
  // pipe the system refused) is retried on the next round.
  void run() noexcept {
    std::unique_lock<std::mutex> wait(wait_mu_);
    while (!stop_) {
      wait.unlock();
      try {
        std::vector<redis_endpoint> ask = known_;
        ask.insert(ask.end(), conn_.cluster_seeds.begin(), conn_.cluster_seeds.end());
        const std::vector<redis_endpoint> primaries = discover(ask);
        if (!primaries.empty() &&
            !std::equal(primaries.begin(), primaries.end(), known_.begin(), known_.end(), same)) {
          replace(primaries);
        }
      } catch (...) {
        known_.clear();  // start over on the next round
      }
      wait.lock();
      wake_.wait_for(wait, opts_.heartbeat_interval, [this] { return stop_; });
    }
    wait.unlock();
    std::vector<std::unique_ptr<node_listener>> last;
    {
      std::lock_guard<std::mutex> lock(listeners_mu_);
      last.swap(listeners_);
      for (const auto& l : last) add(retired_, l->stats());
    }
    last.clear();
  }

  const redis_options conn_;
  const invalidation_options opts_;
  const invalidation_handlers handlers_;

  std::mutex wait_mu_;
  std::condition_variable wake_;
  bool stop_ = false;  // guarded by wait_mu_

  std::mutex handler_mu_;  // serializes the handlers; guards the fields below it
  std::uint64_t gen_ = 0;
  std::vector<bool> node_up_;
  std::size_t nodes_up_ = 0;
  bool reported_up_ = false;

  mutable std::mutex listeners_mu_;
  std::vector<std::unique_ptr<node_listener>> listeners_;  // guarded by listeners_mu_
  invalidation_stats retired_{};                           // guarded by listeners_mu_

  std::vector<redis_endpoint> known_;  // the thread's own
  std::atomic<bool> up_{false};
  std::atomic<std::size_t> node_count_{0};
  std::atomic<std::uint64_t> topology_changes_{0};
  std::thread thread_;
};

}  // namespace cachet
