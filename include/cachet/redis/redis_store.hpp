// cachet/redis/redis_store.hpp — a cachet::store kept in Redis, that a down, slow or refusing Redis
// cannot take down.
//
// Purpose: the shared tier. redis_store<K, V> meets cachet::store, so every access pattern works
// over it unchanged (cache_aside<redis_store<...>>). Keys become `key_prefix + KeyCodec(key)`,
// values ValueCodec(value) (cachet/codec.hpp); everything is sent with hiredis's length-prefixed
// Argv calls, so both may hold any bytes. get = GET, contains = EXISTS, put = SET [PX ms],
// erase = DEL, get_all = one MGET, put_all = pipelined SETs. Needs hiredis (link cachet::redis).
//
// Redis Cluster: with redis_options::cluster_seeds set, every command goes to the primary that
// serves its key's hash slot (redis/detail/redis_nodes.hpp keeps the map; {hash tags} honoured),
// MOVED and ASK are followed, get_all and put_all become one pipeline per node, and each primary
// has its own pool and breaker. docs/redis.md ("Redis Cluster") has the rules.
//
// Failure behaviour (docs/redis.md has the table): every command waits at most command_timeout
// per socket read or write. A circuit breaker opens after breaker.failures_to_open consecutive
// failures (timeouts, connection errors); while open, every call fails at once without touching
// the network; after breaker.open_for (on the store's Clock) one probe goes through, and its
// outcome closes or re-opens it. Reads never throw for a Redis failure: they answer a miss. Writes
// return put_result::rejected_unavailable. A failed erase() returns false and records the key as
// a pending invalidation: until a DEL of it succeeds, reads of the key from this process answer a
// miss (never the value erase() meant to remove), and the DEL is retried when Redis answers again
// (up to k_drain_per_call keys after each successful call, and at once when the key is read). A
// failed put() or put_all() over a key does the same (the value it meant to replace must not be
// served). A value that does not decode (or is not a string) is counted, deleted, and read as a
// miss. A write Redis refuses (an error reply such as OOM under maxmemory noeviction) is counted
// in server_errors and returns rejected_unavailable.
//
// put_if(key, value, [ttl,] still_valid): the store's guarded fill. The key's stripe mutex (one of
// k_stripes, by key hash) is held from still_valid() to the end of the SET, and erase() of the key
// holds it around its DEL, so in this process an erase can neither slip between the check and the
// write nor be overtaken by it. Across processes this is eventual: another process's DEL may reach
// Redis before our SET of a row we loaded earlier; the TTL bounds how long that row is served. A
// write that timed out may still be applied by a
// server that was only slow; the TTL bounds that too.
//
// try_lease(key, token, lease) / release_lease(key, token): a per-key lease for one load across
// processes (SET <lease key> token NX PX, and a compare-and-delete script), under
// `lease_prefix + "{" + data key + "}"`; redis/lease_loader.hpp builds the stampede guard on them.
//
// Thread safety: every member is safe to call from any thread at once. A call holds one pooled
// connection for its commands only; a write holds its key's stripe mutex for its SET/DEL (a
// put_all holds the stripes of all its keys, taken in order).
//
// Blocking: a call may block up to connect_timeout (a new connection, then AUTH/SELECT) plus
// command_timeout per socket read or write, plus up to command_timeout waiting for a free pooled
// connection; a write also waits for its key's stripe mutex, which another write of a key in that
// stripe holds for at most as long. A call refused by the open breaker blocks on nothing.
//
// Exception safety: members throw std::bad_alloc, what the codecs throw, and what V's move throws;
// put(key, value, ttl) throws std::invalid_argument for a ttl that is not positive; the
// constructor throws cachet::invalid_option for a bad option. A Redis failure never throws.
//
// Example:
//   cachet::redis_store<std::string, std::string> users({
//       .unix_socket = "/run/redis/redis.sock",
//       .key_prefix = "users:",
//       .default_ttl = std::chrono::minutes(10),
//   });
//   users.put("u:42", "Ada");                      // SET users:u:42 Ada PX 600000
//   if (auto name = users.get("u:42")) use(*name);  // nullopt if absent, or if Redis is down
//   users.erase("u:42");
#pragma once

#include <absl/hash/hash.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "cachet/clock.hpp"
#include "cachet/codec.hpp"
#include "cachet/detail/saturate.hpp"
#include "cachet/hash.hpp"
#include "cachet/options.hpp"
#include "cachet/redis/detail/circuit_breaker.hpp"
#include "cachet/redis/detail/cluster_slots.hpp"
#include "cachet/redis/detail/connection.hpp"
#include "cachet/redis/detail/connection_pool.hpp"
#include "cachet/redis/detail/pending_invalidations.hpp"
#include "cachet/redis/detail/redis_nodes.hpp"
#include "cachet/redis/options.hpp"
#include "cachet/store.hpp"

namespace cachet {

template <class K, class V, class ValueCodec = default_codec<V>,
          class KeyCodec = default_key_codec<K>, class Clock = coarse_steady_clock>
requires clock<Clock>
class redis_store {
  static_assert(codec<ValueCodec, V>,
                "cachet::redis_store: ValueCodec must meet cachet::codec<ValueCodec, V>; V has no "
                "default codec unless it is std::string or trivially copyable (see "
                "cachet/codec.hpp)");
  static_assert(codec<KeyCodec, K>,
                "cachet::redis_store: KeyCodec must meet cachet::codec<KeyCodec, K>; K has no "
                "default key codec unless it is std::string, an integer or trivially copyable");

  using breaker_type = detail::circuit_breaker<Clock>;
  using admit = typename breaker_type::admit;
  using nodes_type = detail::redis_nodes<Clock>;
  using node = typename nodes_type::node;

 public:
  using key_type = K;
  using mapped_type = V;
  using clock_type = Clock;
  using hasher = cachet::hash<K>;
  using key_equal = std::equal_to<K>;
  using value_codec = ValueCodec;
  using key_codec = KeyCodec;
  using options_type = redis_options;

  // The same store holding V2, with V2's default codec.
  template <class V2>
  using rebind_value = redis_store<K, V2, default_codec<V2>, KeyCodec, Clock>;

  // Stripe mutexes that order put_if()/put()/erase() of one key in this process. A put_all holds
  // up to all of them at once, plus the cluster map's and a pool's mutex: ThreadSanitizer aborts a
  // thread that holds more than 64 mutexes (its deadlock detector's limit), so users' TSan builds
  // need the total well under that (with 64 stripes, put_all of 200 keys on a cluster hit it).
  static constexpr std::size_t k_stripes = 32;
  // Pending invalidations retried after each successful call, at most.
  static constexpr std::size_t k_drain_per_call = 4;
  // MOVED/ASK redirections one command follows before the last error reply stands.
  static constexpr int k_max_redirects = 5;

  // Validates `opts` (throws invalid_option naming the first bad one). Connects nothing: the first
  // call does. Allocates the pool's bookkeeping; throws std::bad_alloc.
  explicit redis_store(redis_options opts, Clock clock = Clock{})
      : opts_(validated(std::move(opts))),
        clock_(clock),
        nodes_(opts_, clock_),
        pending_(opts_.max_pending_invalidations) {}

  redis_store(const redis_store&) = delete;
  redis_store& operator=(const redis_store&) = delete;

  // GET: the value, or nullopt if absent, undecodable, pending invalidation, or Redis failed (see
  // the file comment). Counted as a hit or a miss. Blocks as the file comment says.
  std::optional<V> get(const K& key) { return read(key, true); }

  // get() without counting a hit or miss.
  std::optional<V> peek(const K& key) { return read(key, false); }

  // EXISTS: true if Redis holds the key and it is not a pending invalidation; false on failure.
  bool contains(const K& key) {
    const std::string rk = redis_key(key);
    if (pending_.contains(rk)) {
      retry_pending(rk);
      return false;
    }
    attempt a(*this, rk);
    if (!a) return false;
    const detail::redis_result r = a.command({"EXISTS", std::string_view(rk)});
    bool found = false;
    if (r.ok()) {
      a.succeed();
      found = r.reply->type == REDIS_REPLY_INTEGER && r.reply->integer > 0;
    } else if (r.failure == detail::redis_failure::server) {
      a.server_error();
    }
    drain(a);
    return found && !pending_.contains(rk);
  }

  // SET with the default TTL. inserted if Redis took it (redis_store does not ask whether the key
  // was there: every success is `inserted`), rejected_unavailable otherwise (and the key becomes
  // a pending invalidation, so the value it meant to replace is not served from here).
  put_result put(K key, V value) { return put(std::move(key), std::move(value), default_ttl()); }

  // SET key value PX ms: `ttl` positive (rounded up to whole milliseconds, sub-millisecond = 1 ms,
  // saturating) or cachet::no_expiry (no PX). Throws std::invalid_argument if ttl is not positive.
  template <class Rep, class Period>
  put_result put(K key, V value, std::chrono::duration<Rep, Period> ttl) {
    return write(redis_key(key), encode_value(value), detail::checked_ttl(ttl, "redis_store::put"),
                 always{}, false);
  }

  // The guarded fill: SET only if `still_valid()` returns true while the key's stripe mutex is
  // held; the mutex is held until the SET is answered, and erase() takes it around its DEL. False:
  // rejected_stale and nothing sent. A failed fill is rejected_unavailable and is *not* recorded
  // as a pending invalidation (a fill replaces nothing this process wrote). `still_valid` must be
  // noexcept and cheap and must not call into the store.
  template <detail::nothrow_condition Pred>
  put_result put_if(K key, V value, Pred still_valid) {
    return write(redis_key(key), encode_value(value), default_ttl(), still_valid, true);
  }
  template <class Rep, class Period, detail::nothrow_condition Pred>
  put_result put_if(K key, V value, std::chrono::duration<Rep, Period> ttl, Pred still_valid) {
    return write(redis_key(key), encode_value(value),
                 detail::checked_ttl(ttl, "redis_store::put_if"), still_valid, true);
  }

  // SET key value [PX ms] NX GET (Redis 7.0+), under the key's stripe mutex: writes `value` if
  // Redis holds nothing under the key and returns nullopt; otherwise writes nothing and returns the
  // value Redis holds (not counted as a hit), as sharded_store::put_if_absent does, atomically
  // across every process that uses the server. nullopt also when nothing could be written: Redis
  // is unreachable or the breaker is open (counted as errors), the key is a pending invalidation
  // that cannot be deleted yet (the value there is one this process meant to remove), or Redis
  // holds something that does not decode (counted in decode_failures and deleted, as get() does).
  // contains() tells those apart from an insert. A write whose answer is lost (a timeout) may or
  // may not have landed; either way nothing this process meant to remove is left readable, so it
  // adds no pending invalidation (unlike put()). `ttl` as in put().
  std::optional<V> put_if_absent(K key, V value) {
    return write_absent(redis_key(key), encode_value(value), default_ttl());
  }
  template <class Rep, class Period>
  std::optional<V> put_if_absent(K key, V value, std::chrono::duration<Rep, Period> ttl) {
    return write_absent(redis_key(key), encode_value(value),
                        detail::checked_ttl(ttl, "redis_store::put_if_absent"));
  }

  // Compare-and-set in one script (EVAL) under the key's stripe mutex: if Redis holds `expected`
  // under the key (compared as encoded bytes), writes `desired` with the default TTL and returns
  // true; otherwise writes nothing and returns false, as sharded_store::replace does, atomically
  // across processes. false also when Redis is unreachable (after a timeout the script may or may
  // not have run: `desired` or `expected` is there, nothing older) or the key is a pending
  // invalidation that cannot be deleted yet.
  bool replace(const K& key, const V& expected, V desired) {
    return compare_and_set(redis_key(key), encode_value(expected), encode_value(desired),
                           default_ttl());
  }

  // For a layer that loads a value outside the patterns and writes it here itself (lease_loader):
  // write_mark(key) before it reads the origin, put_unless_written(key, value, mark) after. The
  // second is put(key, value) unless a put(), put_all() or erase() of a key in `key`'s stripe came
  // in between from this process (a pattern's write or invalidate(), say): then nothing is sent
  // and the result is rejected_stale, so a row read before a write never lands after it. Checked
  // under the stripe mutex, like put_if(). Both block on that mutex; a failed write adds no
  // pending invalidation (as a fill).
  std::uint64_t write_mark(const K& key) {
    const std::size_t i = stripe_index(redis_key(key));
    std::lock_guard<std::mutex> lock(stripes_[i]);
    return stripe_writes_[i];
  }
  put_result put_unless_written(K key, V value, std::uint64_t mark) {
    std::string rk = redis_key(key);
    const std::size_t i = stripe_index(rk);
    return write(
        std::move(rk), encode_value(value), default_ttl(),
        [this, i, mark]() noexcept { return stripe_writes_[i] == mark; }, true);
  }

  // DEL under the key's stripe mutex: true if Redis removed a key. On failure false, and the key
  // becomes a pending invalidation (reads of it from this process miss until a DEL succeeds); if
  // the pending set is full the invalidation is lost (counted).
  bool erase(const K& key) {
    const std::string rk = redis_key(key);
    bool removed = false;
    std::unique_lock<std::mutex> lock(stripe(rk));
    ++stripe_writes_[stripe_index(rk)];
    attempt a(*this, rk);
    if (a) {
      const detail::redis_result r = a.command({"DEL", std::string_view(rk)});
      if (r.ok()) {
        a.succeed();
        pending_.remove(rk);
        removed = r.reply->type == REDIS_REPLY_INTEGER && r.reply->integer > 0;
      } else {
        if (r.failure == detail::redis_failure::server) a.server_error();
        pending_.add(rk);
      }
    } else {
      pending_.add(rk);
    }
    lock.unlock();
    drain(a);
    return removed;
  }

  // result[i] is get(keys[i]) (counted as hits and misses). One server: one MGET, and on a
  // failure every key is a miss; blocks as one call. A cluster: the keys are grouped by the node
  // that serves them and each group is one pipeline of GETs (MGET needs its keys in one slot); a
  // key redirected by MOVED or ASK is read again alone, following the redirection; a failed node
  // makes its keys misses. Blocks as one call per node.
  std::vector<std::optional<V>> get_all(std::span<const K> keys) {
    std::vector<std::optional<V>> out(keys.size());
    if (keys.empty()) return out;
    std::vector<std::string> rks;
    rks.reserve(keys.size());
    for (const K& k : keys) rks.push_back(redis_key(k));
    if (nodes_.cluster()) return get_all_cluster(keys, rks, std::move(out));
    std::uint64_t hits = 0;
    attempt a(*this, nodes_[0]);
    if (a) {
      std::vector<std::string_view> args;
      args.reserve(rks.size() + 1);
      args.push_back("MGET");
      for (const std::string& rk : rks) args.push_back(rk);
      const detail::redis_result r = a.command(args);
      if (r.ok() && r.reply->type == REDIS_REPLY_ARRAY && r.reply->elements == rks.size()) {
        a.succeed();
        std::vector<std::string_view> garbage{"DEL"};
        for (std::size_t i = 0; i < rks.size(); ++i) {
          const redisReply* e = r.reply->element[i];
          if (e->type != REDIS_REPLY_STRING || pending_.contains(rks[i])) continue;
          out[i] = ValueCodec::decode(std::string_view(e->str, e->len));
          if (out[i]) {
            ++hits;
          } else {
            counters_.decode_failures.fetch_add(1, std::memory_order_relaxed);
            garbage.push_back(rks[i]);
          }
        }
        if (garbage.size() > 1) a.command(garbage);
      } else if (r.ok() || r.failure == detail::redis_failure::server) {
        a.server_error();
      }
    }
    counters_.hits.fetch_add(hits, std::memory_order_relaxed);
    counters_.misses.fetch_add(keys.size() - hits, std::memory_order_relaxed);
    drain(a);
    return out;
  }

  // put() for every item, as pipelined SETs on one connection (one round trip), with the default
  // TTL or `ttl`. result[i] is items[i]'s outcome. Holds the stripe mutexes of all the keys (in
  // index order) until the replies are in.
  std::vector<put_result> put_all(std::span<const std::pair<K, V>> items) {
    return write_all(items, default_ttl());
  }
  template <class Rep, class Period>
  std::vector<put_result> put_all(std::span<const std::pair<K, V>> items,
                                  std::chrono::duration<Rep, Period> ttl) {
    return write_all(items, detail::checked_ttl(ttl, "redis_store::put_all"));
  }

  // The lease of `key` for a cross-process load (redis/lease_loader.hpp): SET <lease key> token
  // NX PX lease, where the lease key is options().lease_prefix + "{" + key_prefix +
  // KeyCodec(key) + "}". acquired: the lease is `token`'s for `lease` (or until released);
  // held: another token holds it; unavailable: Redis failed, refused it (counted in
  // server_errors), or the breaker is open. Goes through the breaker and counts like every call;
  // blocks as one. Throws std::invalid_argument if `lease` is not positive or `token` is empty,
  // std::bad_alloc, and what KeyCodec throws.
  lease_result try_lease(const K& key, std::string_view token, std::chrono::milliseconds lease) {
    if (lease <= std::chrono::milliseconds::zero()) {
      throw std::invalid_argument("redis_store::try_lease: lease must be positive");
    }
    if (token.empty()) throw std::invalid_argument("redis_store::try_lease: token is empty");
    const std::string lk = lease_key(key);
    const std::string px = std::to_string(lease.count());
    lease_result out = lease_result::unavailable;
    attempt a(*this, lk);
    if (a) {
      const detail::redis_result r =
          a.command({"SET", std::string_view(lk), token, "NX", "PX", std::string_view(px)});
      if (r.ok()) {
        a.succeed();
        if (r.reply->type == REDIS_REPLY_STATUS) {
          out = lease_result::acquired;
          counters_.leases_acquired.fetch_add(1, std::memory_order_relaxed);
        } else if (r.reply->type == REDIS_REPLY_NIL) {
          out = lease_result::held;
          counters_.leases_contended.fetch_add(1, std::memory_order_relaxed);
        } else {
          a.server_error();
        }
      } else if (r.failure == detail::redis_failure::server) {
        a.server_error();
      }
    }
    drain(a);
    return out;
  }

  // Gives back the lease of `key` if `token` still holds it: one EVAL of a compare-and-delete
  // script, so a lease that expired and was taken by another token is left alone. True: deleted
  // (counted in leases_released). False: `token` did not hold it (expired, or taken over: counted
  // in lease_release_lost), or Redis failed (then the lease runs out by itself). Blocks as one
  // call; throws std::bad_alloc and what KeyCodec throws.
  bool release_lease(const K& key, std::string_view token) {
    static constexpr std::string_view k_script =
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
        "else return 0 end";
    const std::string lk = lease_key(key);
    bool released = false;
    attempt a(*this, lk);
    if (a) {
      const detail::redis_result r =
          a.command({"EVAL", k_script, "1", std::string_view(lk), token});
      if (r.ok() && r.reply->type == REDIS_REPLY_INTEGER) {
        a.succeed();
        released = r.reply->integer == 1;
        (released ? counters_.leases_released : counters_.lease_release_lost)
            .fetch_add(1, std::memory_order_relaxed);
      } else if (r.ok() || r.failure == detail::redis_failure::server) {
        a.server_error();
      }
    }
    drain(a);
    return released;
  }

  // The Redis name of `key`'s lease (see try_lease). Throws std::bad_alloc.
  std::string lease_key(const K& key) const {
    std::string lk;
    lk.reserve(opts_.lease_prefix.size() + opts_.key_prefix.size() + 18);
    lk.append(opts_.lease_prefix);
    lk.push_back('{');
    lk.append(opts_.key_prefix);
    KeyCodec::encode(key, lk);
    lk.push_back('}');
    return lk;
  }

  // A snapshot of the counters (relaxed loads; each exact, not atomic as a set). Never blocks.
  redis_stats stats() const noexcept {
    redis_stats s;
    s.hits = counters_.hits.load(std::memory_order_relaxed);
    s.misses = counters_.misses.load(std::memory_order_relaxed);
    s.timeouts = counters_.timeouts.load(std::memory_order_relaxed);
    s.connection_errors = counters_.connection_errors.load(std::memory_order_relaxed);
    s.server_errors = counters_.server_errors.load(std::memory_order_relaxed);
    s.decode_failures = counters_.decode_failures.load(std::memory_order_relaxed);
    s.connect_attempts = counters_.connect_attempts.load(std::memory_order_relaxed);
    // The worst breaker of all nodes (open, then half_open, then closed); transitions summed.
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      const breaker_type& b = nodes_[i].breaker;
      const breaker_state st = b.state();
      if (st == breaker_state::open ||
          (st == breaker_state::half_open && s.breaker == breaker_state::closed)) {
        s.breaker = st;
      }
      s.breaker_opened += b.opened_count();
      s.breaker_closed += b.closed_count();
    }
    s.fast_failures = counters_.fast_failures.load(std::memory_order_relaxed);
    s.pending_invalidations = pending_.size();
    s.lost_invalidations = pending_.lost();
    s.leases_acquired = counters_.leases_acquired.load(std::memory_order_relaxed);
    s.leases_contended = counters_.leases_contended.load(std::memory_order_relaxed);
    s.leases_released = counters_.leases_released.load(std::memory_order_relaxed);
    s.lease_release_lost = counters_.lease_release_lost.load(std::memory_order_relaxed);
    s.moved_redirects = counters_.moved.load(std::memory_order_relaxed);
    s.ask_redirects = counters_.asks.load(std::memory_order_relaxed);
    s.slot_map_refreshes = nodes_.refreshes();
    s.cluster_nodes = nodes_.primaries();
    return s;
  }

  const Clock& clock() const noexcept { return clock_; }
  const redis_options& options() const noexcept { return opts_; }

  // The key whose Redis name is `redis_key` (key_prefix + KeyCodec(key)): nullopt if the name does
  // not start with key_prefix or KeyCodec refuses the rest. For turning the names an invalidation
  // listener reports into keys (redis/invalidation_listener.hpp). Never blocks; throws what
  // KeyCodec::decode throws (std::bad_alloc).
  std::optional<K> key_from_redis(std::string_view redis_key) const {
    if (!redis_key.starts_with(opts_.key_prefix)) return std::nullopt;
    return KeyCodec::decode(redis_key.substr(opts_.key_prefix.size()));
  }

 private:
  struct counters {
    std::atomic<std::uint64_t> hits{0};
    std::atomic<std::uint64_t> misses{0};
    std::atomic<std::uint64_t> timeouts{0};
    std::atomic<std::uint64_t> connection_errors{0};
    std::atomic<std::uint64_t> server_errors{0};
    std::atomic<std::uint64_t> decode_failures{0};
    std::atomic<std::uint64_t> connect_attempts{0};
    std::atomic<std::uint64_t> fast_failures{0};
    std::atomic<std::uint64_t> leases_acquired{0};
    std::atomic<std::uint64_t> leases_contended{0};
    std::atomic<std::uint64_t> leases_released{0};
    std::atomic<std::uint64_t> lease_release_lost{0};
    std::atomic<std::uint64_t> moved{0};
    std::atomic<std::uint64_t> asks{0};
  };

  // One call's way to Redis: the node that serves the call's key (the only one, for a single
  // server), that node's breaker's admission, then one of its pooled connections. Converts to
  // false if the call cannot go out (refused by the breaker, or no connection: counted and
  // reported). Every failure of a command it runs is counted and reported to the node's breaker;
  // a failure after the call's admission was already reported as a success counts as a fresh
  // failure. In a cluster, command() follows MOVED and ASK: the node that redirected is reported a
  // success (it answered), and the attempt moves to the node named, through that node's breaker.
  class attempt {
   public:
    // To the node that serves the Redis key `rk`.
    attempt(redis_store& s, std::string_view rk) : s_(s) {
      enter(s_.nodes_.for_key(rk, s_.on_connect()));
    }
    // To `n` (a cluster's per-node pipelines).
    attempt(redis_store& s, node& n) : s_(s) { enter(n); }
    attempt(const attempt&) = delete;
    attempt& operator=(const attempt&) = delete;

    explicit operator bool() const noexcept { return conn_ && !conn_->broken(); }

    node& where() const noexcept { return *node_; }

    detail::redis_result command(std::span<const std::string_view> args) {
      for (int hop = 0;; ++hop) {
        detail::redis_result r = asking_ ? asking(args) : conn_->command(args);
        if (r.failure == detail::redis_failure::timeout ||
            r.failure == detail::redis_failure::connection) {
          fail(r.failure);
          return r;
        }
        if (r.failure != detail::redis_failure::server || hop == k_max_redirects ||
            !s_.nodes_.cluster() || !follow(r)) {
          return r;
        }
        if (!*this) return {nullptr, detail::redis_failure::connection};
      }
    }
    detail::redis_result command(std::initializer_list<std::string_view> args) {
      return command(std::span<const std::string_view>(args.begin(), args.size()));
    }
    bool append(std::span<const std::string_view> args) {
      if (conn_->append(args)) return true;
      fail(detail::redis_failure::connection);
      return false;
    }
    detail::redis_result read_reply() {
      detail::redis_result r = conn_->read_reply();
      if (r.failure == detail::redis_failure::timeout ||
          r.failure == detail::redis_failure::connection) {
        fail(r.failure);
      }
      return r;
    }

    // Redis answered: the breaker hears a success (once).
    void succeed() noexcept {
      if (!reported_) permit_->success();
      reported_ = true;
    }
    // Redis answered with an error reply: counted; for the breaker Redis is up.
    void server_error() noexcept {
      s_.counters_.server_errors.fetch_add(1, std::memory_order_relaxed);
      succeed();
    }

   private:
    void enter(node& n) {
      node_ = &n;
      reported_ = false;
      permit_.emplace(n.breaker, n.breaker.acquire());
      if (permit_->kind() == admit::refused) {
        s_.counters_.fast_failures.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      detail::redis_failure f;
      conn_ = n.pool.acquire(f, s_.on_connect());
      if (!conn_) fail(f);
    }

    // `r` is an error reply: if it is MOVED or ASK, move to the node it names and say true (the
    // command is to be sent again there, ASK: preceded by ASKING); else false.
    bool follow(const detail::redis_result& r) {
      detail::cluster_redirect to =
          detail::parse_redirect(std::string_view(r.reply->str, r.reply->len));
      if (to.type == detail::cluster_redirect::kind::none) return false;
      node* target = s_.nodes_.at(to.host.empty() ? node_->opts.host : to.host, to.port);
      if (target == nullptr) return false;  // k_max_nodes known: the error reply stands
      succeed();
      if (to.type == detail::cluster_redirect::kind::moved) {
        s_.counters_.moved.fetch_add(1, std::memory_order_relaxed);
        s_.nodes_.moved(to.slot, *target);
        asking_ = false;
      } else {
        s_.counters_.asks.fetch_add(1, std::memory_order_relaxed);
        asking_ = true;
      }
      conn_ = {};
      permit_.reset();
      enter(*target);
      return true;
    }

    // ASKING, then the command, in one round trip: the reply to the command.
    detail::redis_result asking(std::span<const std::string_view> args) {
      static constexpr std::array<std::string_view, 1> k_asking{"ASKING"};
      if (!conn_->append(k_asking) || !conn_->append(args)) {
        return {nullptr, detail::redis_failure::connection};
      }
      detail::redis_result first = conn_->read_reply();
      if (first.failure == detail::redis_failure::timeout ||
          first.failure == detail::redis_failure::connection) {
        return first;
      }
      return conn_->read_reply();
    }

    void fail(detail::redis_failure f) noexcept {
      if (f == detail::redis_failure::timeout) {
        s_.counters_.timeouts.fetch_add(1, std::memory_order_relaxed);
      } else {
        s_.counters_.connection_errors.fetch_add(1, std::memory_order_relaxed);
      }
      if (!reported_) {
        permit_->failure();
      } else {
        node_->breaker.on_failure(admit::closed);
      }
      reported_ = true;
      s_.nodes_.lost();
      // The node's idle connections are likely as dead as this one (a restart kills them all).
      if (f == detail::redis_failure::connection) node_->pool.discard_idle();
    }

    redis_store& s_;
    node* node_ = nullptr;
    // Declared before conn_: destroyed after it, so the connection is back in its pool before an
    // unreported probe is abandoned (and the next caller probes).
    std::optional<typename breaker_type::probe_guard> permit_;
    detail::redis_pool::lease conn_;
    bool reported_ = false;
    bool asking_ = false;
  };

  // Counts a connection attempt (the pools call it before they connect).
  auto on_connect() noexcept {
    return [this] { counters_.connect_attempts.fetch_add(1, std::memory_order_relaxed); };
  }

  // The condition of a plain put(): always true.
  struct always {
    bool operator()() const noexcept { return true; }
  };

  static redis_options validated(redis_options o) {
    detail::validate_connection(o);
    if (o.pool_size < 1 || o.pool_size > 1024) {
      throw invalid_option("pool_size",
                           "= " + std::to_string(o.pool_size) + ": must be in [1, 1024]");
    }
    if (o.default_ttl <= std::chrono::nanoseconds::zero()) {
      throw invalid_option("default_ttl",
                           "is not positive: must be > 0, or cachet::no_expiry for none");
    }
    if (o.breaker.failures_to_open < 1 || o.breaker.failures_to_open > 0x7fffffffu) {
      throw invalid_option(
          "breaker.failures_to_open",
          "= " + std::to_string(o.breaker.failures_to_open) + ": must be in [1, 2^31)");
    }
    if (o.breaker.open_for <= std::chrono::nanoseconds::zero()) {
      throw invalid_option("breaker.open_for", "is not positive: must be > 0");
    }
    if (o.max_pending_invalidations < 1 || o.max_pending_invalidations > (std::size_t{1} << 24)) {
      throw invalid_option(
          "max_pending_invalidations",
          "= " + std::to_string(o.max_pending_invalidations) + ": must be in [1, 2^24]");
    }
    if (o.lease_prefix.empty() || o.lease_prefix.find_first_of("{}") != std::string::npos) {
      throw invalid_option("lease_prefix", "must be non-empty and hold no '{' or '}'");
    }
    if (!o.key_prefix.empty() &&
        (o.lease_prefix.starts_with(o.key_prefix) || o.key_prefix.starts_with(o.lease_prefix))) {
      throw invalid_option("lease_prefix",
                           "and key_prefix are prefixes of one another: a data key could be "
                           "named like a lease");
    }
    return o;
  }

  std::string redis_key(const K& key) const {
    std::string rk;
    rk.reserve(opts_.key_prefix.size() + 16);
    rk.append(opts_.key_prefix);
    KeyCodec::encode(key, rk);
    return rk;
  }
  static std::string encode_value(const V& value) {
    std::string bytes;
    ValueCodec::encode(value, bytes);
    return bytes;
  }

  std::mutex& stripe(std::string_view rk) noexcept { return stripes_[stripe_index(rk)]; }

  std::chrono::nanoseconds default_ttl() const noexcept { return opts_.default_ttl; }

  // The PX argument for `ttl`: whole milliseconds rounded up; empty for no_expiry.
  static std::string px_of(std::chrono::nanoseconds ttl) {
    if (ttl == no_expiry) return {};
    const std::int64_t ns = ttl.count();
    const std::int64_t ms = ns / 1'000'000 + (ns % 1'000'000 != 0 ? 1 : 0);
    return std::to_string(std::max<std::int64_t>(ms, 1));
  }

  // The value in a reply that answers with the key's old value or nil (GET; SET ... GET), settling
  // the attempt. Garbage under the key (bytes that do not decode, or WRONGTYPE: a list, a
  // hash...) is counted and DELeted, and read as no value. Any other error reply is the server
  // refusing (LOADING, a changed ACL...): no value.
  std::optional<V> value_of(attempt& a, const detail::redis_result& r, std::string_view rk) {
    std::optional<V> out;
    bool garbage = false;
    if (r.ok()) {
      a.succeed();
      if (r.reply->type == REDIS_REPLY_STRING) {
        out = ValueCodec::decode(std::string_view(r.reply->str, r.reply->len));
        garbage = !out;
      } else if (r.reply->type != REDIS_REPLY_NIL) {
        garbage = true;
      }
    } else if (r.failure == detail::redis_failure::server) {
      garbage = std::string_view(r.reply->str, r.reply->len).starts_with("WRONGTYPE");
      garbage ? a.succeed() : a.server_error();
    }
    if (garbage) {
      counters_.decode_failures.fetch_add(1, std::memory_order_relaxed);
      if (a) a.command({"DEL", rk});
    }
    return out;
  }

  std::optional<V> read(const K& key, bool count) {
    const std::string rk = redis_key(key);
    std::optional<V> out;
    if (pending_.contains(rk)) {
      retry_pending(rk);
    } else {
      attempt a(*this, rk);
      if (a) {
        out = value_of(a, a.command({"GET", std::string_view(rk)}), rk);
        drain(a);
      }
      // An erase() that failed while our GET was in flight: do not serve what it meant to remove.
      if (out && pending_.contains(rk)) out.reset();
    }
    if (count) (out ? counters_.hits : counters_.misses).fetch_add(1, std::memory_order_relaxed);
    return out;
  }

  template <class Pred>
  put_result write(std::string rk, std::string value, std::chrono::nanoseconds ttl,
                   Pred&& still_valid, bool fill) {
    std::unique_lock<std::mutex> lock(stripe(rk));
    if (!still_valid()) return put_result::rejected_stale;
    if (!fill) ++stripe_writes_[stripe_index(rk)];
    const std::string px = px_of(ttl);
    put_result result = put_result::rejected_unavailable;
    attempt a(*this, rk);
    if (a) {
      const detail::redis_result r =
          px.empty() ? a.command({"SET", std::string_view(rk), std::string_view(value)})
                     : a.command({"SET", std::string_view(rk), std::string_view(value), "PX",
                                  std::string_view(px)});
      if (r.ok()) {
        a.succeed();
        pending_.remove(rk);
        result = put_result::inserted;
      } else if (r.failure == detail::redis_failure::server) {
        a.server_error();
      }
    }
    if (result != put_result::inserted && !fill) pending_.add(rk);
    lock.unlock();
    drain(a);
    return result;
  }

  // The frame of put_if_absent() and replace(): retries a pending invalidation of the key, then
  // under its stripe mutex (and not while the invalidation stands: `unanswered` then) counts a
  // write of the stripe and calls `run(attempt&)` on a healthy attempt; `unanswered` without
  // one. Drains pending invalidations after.
  template <class R, class Run>
  R atomic_write(const std::string& rk, R unanswered, Run run) {
    if (pending_.contains(rk)) retry_pending(rk);
    std::unique_lock<std::mutex> lock(stripe(rk));
    if (pending_.contains(rk)) return unanswered;  // its DEL has not succeeded yet
    ++stripe_writes_[stripe_index(rk)];
    R result = unanswered;
    attempt a(*this, rk);
    if (a) result = run(a);
    lock.unlock();
    drain(a);
    return result;
  }

  // put_if_absent(): see there.
  std::optional<V> write_absent(std::string rk, std::string value, std::chrono::nanoseconds ttl) {
    const std::string px = px_of(ttl);
    return atomic_write(rk, std::optional<V>(), [&](attempt& a) {
      return value_of(a,
                      px.empty() ? a.command({"SET", std::string_view(rk), std::string_view(value),
                                              "NX", "GET"})
                                 : a.command({"SET", std::string_view(rk), std::string_view(value),
                                              "PX", std::string_view(px), "NX", "GET"}),
                      rk);
    });
  }

  // replace(): GET and compare and SET in one script, so no other client's write comes between.
  bool compare_and_set(std::string rk, std::string expected, std::string desired,
                       std::chrono::nanoseconds ttl) {
    static constexpr std::string_view script =
        "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
        "if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[2]) "
        "else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end return 1";
    const std::string px = px_of(ttl);
    return atomic_write(rk, false, [&](attempt& a) {
      const detail::redis_result r =
          a.command({"EVAL", script, "1", std::string_view(rk), std::string_view(expected),
                     std::string_view(desired), std::string_view(px)});
      if (r.ok()) {
        a.succeed();
        return r.reply->type == REDIS_REPLY_INTEGER && r.reply->integer == 1;
      }
      if (r.failure == detail::redis_failure::server) a.server_error();
      return false;
    });
  }

  std::vector<put_result> write_all(std::span<const std::pair<K, V>> items,
                                    std::chrono::nanoseconds ttl) {
    std::vector<put_result> out(items.size(), put_result::rejected_unavailable);
    if (items.empty()) return out;
    std::vector<std::string> rks;
    std::vector<std::string> values;
    rks.reserve(items.size());
    values.reserve(items.size());
    for (const auto& [k, v] : items) {
      rks.push_back(redis_key(k));
      values.push_back(encode_value(v));
    }
    const std::string px = px_of(ttl);

    // Lock every stripe the keys fall in, in index order (deadlock-free against other put_alls;
    // single-key writers hold one stripe and never wait for a second).
    std::array<bool, k_stripes> need{};
    for (const std::string& rk : rks) need[stripe_index(rk)] = true;
    std::vector<std::unique_lock<std::mutex>> locks;
    for (std::size_t i = 0; i < k_stripes; ++i) {
      if (!need[i]) continue;
      locks.emplace_back(stripes_[i]);
      ++stripe_writes_[i];
    }

    const auto set_args = [&](std::size_t i) {
      return std::array<std::string_view, 5>{"SET", rks[i], values[i], "PX", px};
    };
    const std::size_t argc = px.empty() ? 3 : 5;
    std::vector<std::size_t> redirected;  // cluster: items a node sent elsewhere
    bool healthy = false;                 // some node ended the call answering
    for (auto& [where, idx] : group_by_node(rks)) {
      attempt a(*this, *where);
      std::size_t sent = 0;
      if (a) {
        for (std::size_t i : idx) {
          const auto args = set_args(i);
          if (!a.append(std::span<const std::string_view>(args.data(), argc))) break;
          ++sent;
        }
        for (std::size_t k = 0; k < sent; ++k) {
          const std::size_t i = idx[k];
          const detail::redis_result r = a.read_reply();
          if (r.ok()) {
            a.succeed();
            out[i] = put_result::inserted;
            pending_.remove(rks[i]);
          } else if (r.failure == detail::redis_failure::server) {
            if (is_redirect(r, a.where())) {
              a.succeed();
              redirected.push_back(i);
            } else {
              a.server_error();
            }
          } else {
            break;  // the connection is gone: the rest are unknown
          }
        }
      }
      healthy = healthy || static_cast<bool>(a);
    }
    // Each redirected SET again, alone, following MOVED/ASK (the stripes are still held).
    for (std::size_t i : redirected) {
      attempt a(*this, rks[i]);
      if (!a) continue;
      const auto args = set_args(i);
      const detail::redis_result r =
          a.command(std::span<const std::string_view>(args.data(), argc));
      if (r.ok()) {
        a.succeed();
        out[i] = put_result::inserted;
        pending_.remove(rks[i]);
      } else if (r.failure == detail::redis_failure::server) {
        a.server_error();
      }
    }
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (out[i] != put_result::inserted) pending_.add(rks[i]);
    }
    locks.clear();
    if (healthy) drain_any();
    return out;
  }

  // get_all() on a cluster: one pipeline of GETs per node, redirected keys read again alone.
  std::vector<std::optional<V>> get_all_cluster(std::span<const K> keys,
                                                const std::vector<std::string>& rks,
                                                std::vector<std::optional<V>> out) {
    std::uint64_t hits = 0;
    std::vector<std::size_t> redirected;
    bool healthy = false;
    for (auto& [where, idx] : group_by_node(rks)) {
      attempt a(*this, *where);
      std::size_t sent = 0;
      if (a) {
        for (std::size_t i : idx) {
          const std::array<std::string_view, 2> args{"GET", rks[i]};
          if (!a.append(args)) break;
          ++sent;
        }
      }
      std::vector<std::string_view> garbage{"DEL"};
      for (std::size_t k = 0; k < sent; ++k) {
        const std::size_t i = idx[k];
        const detail::redis_result r = a.read_reply();
        if (!r.ok() && r.failure != detail::redis_failure::server) break;
        if (r.failure == detail::redis_failure::server && is_redirect(r, a.where())) {
          a.succeed();
          redirected.push_back(i);
          continue;
        }
        if (r.failure == detail::redis_failure::server) {
          const bool wrongtype =
              std::string_view(r.reply->str, r.reply->len).starts_with("WRONGTYPE");
          wrongtype ? a.succeed() : a.server_error();
          if (!wrongtype) continue;
        } else {
          a.succeed();
          if (r.reply->type == REDIS_REPLY_NIL || pending_.contains(rks[i])) continue;
          if (r.reply->type == REDIS_REPLY_STRING) {
            out[i] = ValueCodec::decode(std::string_view(r.reply->str, r.reply->len));
            if (out[i]) {
              ++hits;
              continue;
            }
          }
        }
        counters_.decode_failures.fetch_add(1, std::memory_order_relaxed);
        garbage.push_back(rks[i]);
      }
      // Each key of the group hashes to this node; a MOVED here is followed like any command.
      if (garbage.size() > 1 && a) {
        for (std::size_t g = 1; g < garbage.size(); ++g) a.command({"DEL", garbage[g]});
      }
      healthy = healthy || static_cast<bool>(a);
    }
    for (std::size_t i : redirected) {
      out[i] = read(keys[i], false);
      if (out[i]) ++hits;
    }
    counters_.hits.fetch_add(hits, std::memory_order_relaxed);
    counters_.misses.fetch_add(keys.size() - hits, std::memory_order_relaxed);
    if (healthy) drain_any();
    return out;
  }

  // The indexes of `rks` grouped by the node that serves each (one group for a single server),
  // groups in order of first appearance, indexes ascending within each.
  std::vector<std::pair<node*, std::vector<std::size_t>>> group_by_node(
      const std::vector<std::string>& rks) {
    std::vector<std::pair<node*, std::vector<std::size_t>>> groups;
    for (std::size_t i = 0; i < rks.size(); ++i) {
      node* n = &nodes_.for_key(rks[i], on_connect());
      auto it =
          std::find_if(groups.begin(), groups.end(), [n](const auto& g) { return g.first == n; });
      if (it == groups.end()) {
        groups.emplace_back(n, std::vector<std::size_t>{});
        it = groups.end() - 1;
      }
      it->second.push_back(i);
    }
    return groups;
  }

  // Whether the error reply `r` (to one command of a pipeline, from `answered`) is MOVED or ASK;
  // counted, and a MOVED updates the slot map, as attempt::command() does for its own commands.
  bool is_redirect(const detail::redis_result& r, const node& answered) {
    const detail::cluster_redirect to =
        detail::parse_redirect(std::string_view(r.reply->str, r.reply->len));
    if (to.type == detail::cluster_redirect::kind::none) return false;
    if (to.type == detail::cluster_redirect::kind::ask) {
      counters_.asks.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    counters_.moved.fetch_add(1, std::memory_order_relaxed);
    if (node* target = nodes_.at(to.host.empty() ? answered.opts.host : to.host, to.port)) {
      nodes_.moved(to.slot, *target);
    }
    return true;
  }

  // drain() on a fresh attempt, when there is anything to drain (after a multi-node call that
  // found some node answering).
  void drain_any() {
    if (pending_.size() == 0) return;
    const std::vector<std::string> keys = pending_.sample(1);
    if (keys.empty()) return;
    attempt a(*this, keys.front());
    drain(a);
  }

  std::size_t stripe_index(std::string_view rk) const noexcept {
    return absl::Hash<std::string_view>{}(rk) % k_stripes;
  }

  // A read of a pending key: try its DEL now (the read answers a miss either way).
  void retry_pending(const std::string& rk) {
    attempt a(*this, rk);
    drain(a, rk);
  }

  // Retries the DEL of up to k_drain_per_call pending keys (`first` first) on a's connection, if it
  // is healthy. Never waits for a stripe: a key whose stripe is busy is left for later. Called
  // with no stripe held.
  void drain(attempt& a, std::string_view first = {}) {
    if (!a || (first.empty() && pending_.size() == 0)) return;
    std::vector<std::string> keys = pending_.sample(k_drain_per_call);
    if (!first.empty()) keys.insert(keys.begin(), std::string(first));
    for (const std::string& rk : keys) {
      std::unique_lock<std::mutex> lock(stripe(rk), std::try_to_lock);
      if (!lock.owns_lock() || !pending_.contains(rk)) continue;
      const detail::redis_result r = a.command({"DEL", std::string_view(rk)});
      if (r.ok()) {
        a.succeed();
        pending_.remove(rk);
      } else {
        if (r.failure == detail::redis_failure::server) a.server_error();
        return;
      }
    }
  }

  const redis_options opts_;
  Clock clock_;
  nodes_type nodes_;
  detail::pending_invalidations pending_;
  std::array<std::mutex, k_stripes> stripes_;
  // put(), put_all() and erase() calls per stripe, each under its stripe mutex (write_mark()).
  std::array<std::uint64_t, k_stripes> stripe_writes_{};
  counters counters_;
};

}  // namespace cachet
