// cachet/tiered_store.hpp — the near cache: a small, short-lived in-process L1 in front of a shared
// L2 (Redis), that is itself a cachet::store.
//
// Purpose: most reads of a hot key are answered from this process's memory instead of a network
// round trip. tiered_store<L1, L2> reads L1 (a sharded_store), then L2 (any cachet::store:
// redis_store in production), copying what L2 returns into L1 ("promotion"); writes go to L2 and
// then to L1. It meets cachet::store, so cache_aside<tiered_store<...>> and the other patterns that
// take a constructed store run over it unchanged (read_through builds its own sharded_store-shaped
// store and does not). Every L1 entry lives at most `l1_ttl`: that is the bound on how long a write
// made by another process (or behind this object's back) stays invisible here, until the
// invalidation bus calls invalidate_local()/clear_local() on every instance.
//
// Consistency (in this process; the argument is below):
//   - a read that starts after put(), put_if() or erase() of its key returned, or after
//     invalidate_local(key) or clear_local() returned, never gets from L1 a value that L2 held
//     only before that call; a promotion that raced the call is refused (counted in
//     promotions_refused) or removed by it;
//   - racing writers of one key leave L1 holding the value L2 ends with, or nothing;
//   - reads that overlap a write may return the old or the new value.
// Lifetimes: an L1 entry never outlives `l1_ttl`, and never outlives the TTL its write gave it
// when the write came through this tiered_store (L1 gets min(ttl, l1_ttl); for put(k, v) and
// put_if(k, v, c), min(L2's default_ttl when L2 has options().default_ttl, l1_ttl)), each on its
// own tier's clock. A promoted entry gets l1_ttl: L2 does not report what is left of its entry's
// TTL, so a copy may outlive the L2 entry it was read from by up to l1_ttl.
//
// Thread safety: every member may be called from any thread at once. A read blocks as L1's get (a
// shard lock) and, on an L1 miss, on the key's flight (a mutex) and as L2's get (Redis: up to the
// store's connect and command timeouts), or waits for another thread's L2 read of the key; a write
// blocks as L2's write plus one L1 operation.
// L1's removal listener runs on the thread whose operation removed the entry (clear_local()
// included), with no lock of the tier held.
//
// Exception safety: members throw what L1 and L2 throw (std::bad_alloc, the codecs, V's copy);
// put(ttl)/put_if(ttl) throw std::invalid_argument for a ttl that is not positive; the
// constructor throws cachet::invalid_option. A write whose L2 step throws invalidates the key in
// L1 before the exception propagates; so does a write whose L1 step throws after L2 took it (if
// that erase throws too, the old L1 copy may stay until l1_ttl). A promotion that throws stores
// nothing. Operations are not transactional across the tiers: an exception may leave L2 written.
//
// IMPLEMENTATION DETAILS: why a promotion cannot put an old value into L1
// One detail::invalidation_guard (striped tickets plus a global epoch) covers L1.
//   read:   t = ticket(k); v = L2.get(k); L1.put_if(k, v, "ticket(k) == t and not suspended")
//   write:  t0 = ticket(k); L2.write(k); bump(k); L1.put_if(k, v, "ticket(k) == t0 + 1 ...")
//           and if L1 refuses (or the write was an erase, or L2 refused it): L1.erase(k)
//   invalidate_local(k): bump(k); L1.erase(k)     clear_local(): bump all (epoch); L1.clear()
// The bump comes after the L2 change, not before: a promotion whose ticket was taken after the
// bump reads L2 after the change, so it copies the new value (or a later one). A promotion whose
// ticket predates the bump evaluates its condition under L1's lock for k either before the bump
// (then it lands before the writer's L1 step, which replaces or erases it) or after (refused).
// (Bumping only before the L2 change would let a promotion take its ticket after the bump, read the
// old value while L2 is being written, and land after the writer's L1 step.) So once the write
// returns, L1 holds no value that L2 had only before it. A writer's own L1 put needs its ticket
// taken *before* its L2 write and unmoved apart from its own bump: two writers of one key may reach
// L1 in the opposite order to L2, but the later L2 write bumps after the earlier writer's L2 write:
// either the earlier writer's L1 step came before that bump (and the later writer's L1 step
// replaces or erases it), or the bump fell inside the earlier writer's window, so its L1 put is
// refused and it erases instead (an invalidate_local() or clear_local() for a newer value written
// elsewhere refuses it the same way). A refused write costs one L1 miss, never a stale entry.
// Tickets are striped (4096 stripes), so writes of other keys in a stripe also just cost an L1
// miss.
// put_if(k, v, c) forwards c to L2's put_if (so a pattern's fill is refused by L2 under its own
// exclusion) and then checks c again, with the ticket, for the L1 copy.
//
// IMPLEMENTATION DETAILS: one L2 read per miss
// Reads that miss L1 go through a single_flight per key: the first (the leader) looks at L1 once
// more inside the flight (another thread's promotion may have landed since its miss), else reads
// L2 and promotes; the rest wait and share its answer. Each caller takes its ticket before it
// joins. The leader's answer carries the leader's ticket, taken before it read L2. A follower whose
// ticket equals it knows no bump (write, invalidation, clear) came between the two, so any write
// that returned before the follower started had bumped before the leader's ticket, hence changed
// L2 before the leader read it: the answer is fresh enough. Otherwise the follower reads L2 itself
// (as before this existed). An answer from the leader's second look at L1 is not shared: the look
// may predate an invalidation that returned before a follower started (invalidate_local bumps, then
// erases, so an unchanged ticket does not prove the look came after the erase). Such a follower
// looks at L1 again itself, now fresh enough (L1 holds nothing older than a completed write or
// invalidation), and reads L2 if the copy is gone. Writes therefore need no detach() of the flight.
//
// Example:
//   using l1_t = cachet::sharded_store<std::string, std::string>;
//   using l2_t = cachet::redis_store<std::string, std::string>;
//   cachet::tiered_store<l1_t, l2_t> users(
//       {.l1_ttl = std::chrono::seconds(2)},
//       std::tuple{cachet::store_options<std::string, std::string>{.max_entries = 10'000}},
//       std::tuple{cachet::redis_options{.unix_socket = "/run/redis/redis.sock"}});
//   users.put("u:42", "Ada", std::chrono::minutes(10));  // Redis, then L1 for 2 s
//   auto name = users.get("u:42");                      // from L1
//   users.invalidate_local("u:42");                     // what the invalidation bus calls
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cachet/detail/invalidation_guard.hpp"
#include "cachet/detail/saturate.hpp"
#include "cachet/hash.hpp"
#include "cachet/options.hpp"
#include "cachet/single_flight.hpp"
#include "cachet/store.hpp"

namespace cachet {

// Configuration of a tiered_store, validated by its constructor.
struct tiered_options {
  // The L1 lifetime cap: every L1 entry expires at most this long after it was written or
  // promoted. It bounds how long a write made behind this object's back (another process, a direct
  // write to L2) stays invisible here when no invalidation reaches this instance; the shorter, the
  // fresher and the more L2 round trips. Positive and finite (not cachet::no_expiry).
  std::chrono::nanoseconds l1_ttl{std::chrono::seconds(1)};
};

// Counters of a tiered_store; each exact, the snapshot not atomic across them.
struct tiered_stats {
  std::uint64_t l1_hits = 0;              // get() answered from L1
  std::uint64_t l2_hits = 0;              // get() missed L1 (or it was suspended), found in L2
  std::uint64_t misses = 0;               // get() found nothing in either tier
  std::uint64_t promotions = 0;           // L2 hits copied into L1
  std::uint64_t promotions_refused = 0;   // L2 hits not copied: raced a write, an invalidation or
                                          // a suspension, or L1 refused them (full, too heavy)
  std::uint64_t local_invalidations = 0;  // invalidate_local() and invalidate_local_if() calls
  std::uint64_t local_clears = 0;         // clear_local() calls (suspend_local() included)
  std::uint64_t coalesced = 0;  // get() calls that missed L1 and shared another call's L2 read
};

template <class L1, class L2>
class tiered_store {
  static_assert(check_store<L1>());
  static_assert(check_store<L2>());
  static_assert(std::is_same_v<typename L1::key_type, typename L2::key_type>,
                "cachet::tiered_store: L1 and L2 must hold the same key_type");
  static_assert(std::is_same_v<typename L1::mapped_type, typename L2::mapped_type>,
                "cachet::tiered_store: L1 and L2 must hold the same mapped_type");
  static_assert(
      requires(L1 & s) { s.clear(); },
      "cachet::tiered_store: L1 needs clear() (for clear_local and suspend_local): use "
      "a cachet::sharded_store");

 public:
  using key_type = typename L2::key_type;
  using mapped_type = typename L2::mapped_type;
  using clock_type = typename L1::clock_type;  // the clock of l1_ttl
  using hasher = typename L2::hasher;
  using key_equal = typename L2::key_equal;
  using l1_type = L1;
  using l2_type = L2;
  using options_type = tiered_options;

  // The same tiers holding V2.
  template <class V2>
  using rebind_value =
      tiered_store<typename L1::template rebind_value<V2>, typename L2::template rebind_value<V2>>;

  // Validates `opts` (throws invalid_option naming the option), then constructs L1 from the
  // elements of `l1_args` and L2 from those of `l2_args` (std::tuple{...} or
  // std::forward_as_tuple(...)), in place: the stores need not be movable. Allocates the tiers and
  // about 33 KiB of tickets; throws what the stores' constructors throw.
  template <class... A1, class... A2>
  tiered_store(tiered_options opts, std::tuple<A1...> l1_args, std::tuple<A2...> l2_args)
      : opts_(validated(opts)),
        l1_(std::make_from_tuple<L1>(std::move(l1_args))),
        l2_(std::make_from_tuple<L2>(std::move(l2_args))) {}

  // Takes pre-built tiers by move (for stores that are movable; sharded_store and redis_store are
  // not: pass their arguments as tuples instead).
  tiered_store(tiered_options opts, L1&& l1,
               L2&& l2) requires std::move_constructible<L1> && std::move_constructible<L2>
      : opts_(validated(opts)), l1_(std::move(l1)), l2_(std::move(l2)) {}

  tiered_store(const tiered_store&) = delete;
  tiered_store& operator=(const tiered_store&) = delete;

  // ---- reads --------------------------------------------------------------------------------

  // L1, then L2; an L2 hit is promoted into L1 for l1_ttl (unless local_suspended(), or a write
  // or invalidation of the key raced it). Concurrent L1 misses of one key share one L2 read (the
  // first reads and promotes, the others wait for it; see "One L2 read per miss" below), so a hot
  // key costs L2 one read per l1_ttl per process, however many threads read it. Counts l1_hits,
  // l2_hits or misses, and coalesced for a read answered by another thread's L2 read (L1's and
  // L2's own get() count too). Blocks as L1's get, and on an L1 miss as L2's get and L1's put_if,
  // or as long as the L2 read it waits for. Throws what L2's get throws (to every caller that
  // shared that read).
  std::optional<mapped_type> get(const key_type& key) {
    const bool local = !local_suspended();
    if (local) {
      if (std::optional<mapped_type> v = l1_.get(key)) {
        count(&slot::l1_hits);
        return v;
      }
    }
    const std::uint64_t t = guard_.begin(key);  // before L2 is read: see the file comment
    bool led = false;  // this call ran the flight (its second look at L1, and its L2 read if any)
    const std::optional<shared_read> r = reads_.load(
        key,
        [&]() -> std::optional<std::optional<shared_read>> {
          // Inside the flight: a read that missed L1 just as another's promotion landed.
          led = true;
          if (local_suspended()) return std::nullopt;
          std::optional<mapped_type> v = l1_.peek(key);
          if (!v) return std::nullopt;
          return std::optional<shared_read>(shared_read{std::move(v), t, true});
        },
        [&] {
          std::optional<mapped_type> v = l2_.get(key);
          if (v && local) promote(key, *v, t);
          return shared_read{std::move(v), t, false};
        });
    if (!led && r->from_l1) {
      // The leader found the key in L1, perhaps before an invalidation that preceded this call's
      // start (see "One L2 read per miss"): look again.
      if (!local_suspended()) {
        if (std::optional<mapped_type> v = l1_.peek(key)) {
          count(&slot::coalesced);
          count(&slot::l1_hits);
          return v;
        }
      }
    }
    if (!led && (r->from_l1 || r->token != t)) {
      // The shared read began before a write or invalidation that preceded this call's start (or
      // of a key sharing the stripe), or found an L1 copy that is gone now: it may hold the old
      // row. Read L2 afresh.
      std::optional<mapped_type> v = l2_.get(key);
      count(v ? &slot::l2_hits : &slot::misses);
      if (v && local) promote(key, *v, t);
      return v;
    }
    if (!led) count(&slot::coalesced);
    count(r->from_l1 ? &slot::l1_hits : r->value ? &slot::l2_hits : &slot::misses);
    return r->value;
  }

  // get() without side effects: L1's peek, then L2's peek; promotes nothing and counts nothing
  // (neither here nor in the tiers). The loading patterns' second look inside a load.
  std::optional<mapped_type> peek(const key_type& key) {
    if (!local_suspended()) {
      if (std::optional<mapped_type> v = l1_.peek(key)) return v;
    }
    return l2_.peek(key);
  }

  // True if L1 (unless suspended) or L2 holds the key. Promotes and counts nothing.
  bool contains(const key_type& key) {
    if (!local_suspended() && static_cast<bool>(l1_.contains(key))) return true;
    return static_cast<bool>(l2_.contains(key));
  }

  // ---- writes -------------------------------------------------------------------------------

  // L2's put(key, value) (its default TTL), then L1 for min(L2's default TTL if known, l1_ttl).
  // Returns L2's result; if L2 did not store the value, the key is erased from L1. Copies the key
  // and the value once (L1 keeps the copies).
  put_result put(key_type key, mapped_type value) {
    const std::uint64_t t0 = guard_.begin(key);
    return write_through(key, std::move(value), t0, l1_ttl_for_default(), l2_attempt(key, [&] {
                           return l2_.put(key_type(key), mapped_type(value));
                         }));
  }

  // L2's put(key, value, ttl), then L1 for min(ttl, l1_ttl). `ttl` is any positive duration or
  // cachet::no_expiry; throws std::invalid_argument otherwise (before touching either tier).
  template <class Rep, class Period>
  put_result put(key_type key, mapped_type value, std::chrono::duration<Rep, Period> ttl) {
    const std::chrono::nanoseconds n = detail::checked_ttl(ttl, "tiered_store::put");
    const std::uint64_t t0 = guard_.begin(key);
    return write_through(key, std::move(value), t0, std::min(n, opts_.l1_ttl), l2_attempt(key, [&] {
                           return l2_.put(key_type(key), mapped_type(value), n);
                         }));
  }

  // The guarded fill: L2's put_if(key, value, [ttl,] still_valid), so `still_valid` is checked
  // under L2's exclusion for the key; if L2 stored the value, L1 gets it through its own put_if,
  // whose condition is still_valid() again and the key's L1 ticket (as put()). Returns L2's result.
  // rejected_stale from L2 leaves L1 as it was (nothing changed); any other refusal erases the key
  // from L1. `still_valid` must be noexcept and cheap and must not call into either store.
  template <detail::nothrow_condition Pred>
  put_result put_if(key_type key, mapped_type value, Pred still_valid) {
    const std::uint64_t t0 = guard_.begin(key);
    return write_through(key, std::move(value), t0, l1_ttl_for_default(),
                         l2_attempt(key,
                                    [&] {
                                      return l2_.put_if(
                                          key_type(key), mapped_type(value),
                                          [&still_valid]() noexcept { return still_valid(); });
                                    }),
                         still_valid);
  }
  template <class Rep, class Period, detail::nothrow_condition Pred>
  put_result put_if(key_type key, mapped_type value, std::chrono::duration<Rep, Period> ttl,
                    Pred still_valid) {
    const std::chrono::nanoseconds n = detail::checked_ttl(ttl, "tiered_store::put_if");
    const std::uint64_t t0 = guard_.begin(key);
    return write_through(key, std::move(value), t0, std::min(n, opts_.l1_ttl),
                         l2_attempt(key,
                                    [&] {
                                      return l2_.put_if(
                                          key_type(key), mapped_type(value), n,
                                          [&still_valid]() noexcept { return still_valid(); });
                                    }),
                         still_valid);
  }

  // L2's erase, then the key's L1 ticket is bumped and its L1 copy erased. Returns L2's answer
  // (whether L2 removed a live entry).
  bool erase(const key_type& key) {
    const bool removed = l2_attempt(key, [&] { return static_cast<bool>(l2_.erase(key)); });
    invalidate_l1(key);
    return removed;
  }

  // ---- local invalidation (the invalidation bus) ---------------------------------------------

  // Drops `key` from L1 only (L2 is not touched): a promotion of `key` in flight is refused, and a
  // read that starts after this returned reads L2. Blocks on one L1 shard lock.
  void invalidate_local(const key_type& key) {
    invalidate_l1(key);
    count(&slot::local_invalidations);
  }

  // Drops from L1 only every entry whose key satisfies pred(key): what a change-data-capture
  // consumer or an operator applies from outside for a group of keys (a prefix, a tenant, a
  // table). Every promotion and L1 write in flight is refused (of any key: the guard has no
  // per-group ticket, so a refused unrelated promotion costs one later L1 miss), then L1 is
  // scanned with sharded_store::erase_if (O(L1 entries); pred runs outside L1's locks, on copies).
  // A read of a matching key that starts after this returned reads L2. Returns how many entries
  // were dropped. Throws what pred throws and std::bad_alloc (what was dropped stays dropped).
  template <class Pred>
  std::size_t invalidate_local_if(Pred pred) {
    guard_.invalidate_all();  // first: a promotion that checks after this is refused
    const std::size_t n =
        l1_.erase_if([&pred](const key_type& k, const mapped_type&) { return pred(k); });
    count(&slot::local_invalidations);
    return n;
  }

  // Drops everything from L1 only: every promotion and L1 write in flight is refused, and reads
  // that start after this returned go to L2 (key by key, until L1 fills again). Locks each L1
  // shard in turn.
  void clear_local() {
    guard_.invalidate_all();  // first: a fill that checks after this is refused, before clear()
    l1_.clear();
    count(&slot::local_clears);
  }

  // Stops using L1 (e.g. while the invalidation bus is disconnected and L1 could go stale): from
  // now on every read goes to L2 and nothing is put into L1; clears L1 (as clear_local()). Calls
  // nest: L1 is used again after as many resume_local() calls.
  void suspend_local() {
    suspended_.fetch_add(1, std::memory_order_seq_cst);
    clear_local();
  }

  // Undoes one suspend_local(); a call with none outstanding does nothing. L1 starts empty.
  void resume_local() noexcept {
    std::uint32_t n = suspended_.load(std::memory_order_seq_cst);
    while (n != 0 && !suspended_.compare_exchange_weak(n, n - 1, std::memory_order_seq_cst)) {
    }
  }

  // True while at least one suspend_local() is not resumed.
  bool local_suspended() const noexcept { return suspended_.load(std::memory_order_seq_cst) != 0; }

  // ---- observers ----------------------------------------------------------------------------

  L1& l1() noexcept { return l1_; }
  const L1& l1() const noexcept { return l1_; }
  L2& l2() noexcept { return l2_; }
  const L2& l2() const noexcept { return l2_; }
  const tiered_options& options() const noexcept { return opts_; }
  const clock_type& clock() const noexcept { return l1_.clock(); }

  // The shared L2 reads of L1 misses: `loads` L2 reads led, `coalesced` get() calls that waited
  // for another's (counted when they start waiting), the L2 read latency. See single_flight_stats.
  single_flight_stats l2_read_stats() const noexcept { return reads_.stats(); }

  // The tier's counters (see tiered_stats); L1's and L2's own are at l1().stats(), l2().stats().
  // Lock-free, weakly consistent.
  tiered_stats stats() const noexcept {
    tiered_stats st;
    for (const slot& s : slots_) {
      st.l1_hits += s.l1_hits.load(std::memory_order_relaxed);
      st.l2_hits += s.l2_hits.load(std::memory_order_relaxed);
      st.misses += s.misses.load(std::memory_order_relaxed);
      st.promotions += s.promotions.load(std::memory_order_relaxed);
      st.promotions_refused += s.promotions_refused.load(std::memory_order_relaxed);
      st.local_invalidations += s.local_invalidations.load(std::memory_order_relaxed);
      st.local_clears += s.local_clears.load(std::memory_order_relaxed);
      st.coalesced += s.coalesced.load(std::memory_order_relaxed);
    }
    return st;
  }

 private:
  // Counters, one slot per thread (by a thread-local index) on a line of its own, so hits on many
  // cores do not bounce one line.
  struct alignas(64) slot {
    std::atomic<std::uint64_t> l1_hits{0}, l2_hits{0}, misses{0}, promotions{0},
        promotions_refused{0}, local_invalidations{0}, local_clears{0}, coalesced{0};
  };

  // What one L2 read (or the flight's second look at L1) found, shared with the callers that
  // joined it; `token` is the guard's token of the key taken before L2 was read.
  struct shared_read {
    std::optional<mapped_type> value;
    std::uint64_t token = 0;
    bool from_l1 = false;
  };
  static constexpr std::size_t k_slots = 16;

  static tiered_options validated(tiered_options o) {
    if (!(o.l1_ttl > std::chrono::nanoseconds::zero()) || o.l1_ttl == no_expiry) {
      throw invalid_option("l1_ttl",
                           "= " + std::to_string(o.l1_ttl.count()) +
                               " ns: must be positive and finite (not cachet::no_expiry): it "
                               "bounds how long L1 serves a value changed elsewhere");
    }
    return o;
  }

  void count(std::atomic<std::uint64_t> slot::*counter) noexcept {
    (slots_[detail::thread_stripe(k_slots)].*counter).fetch_add(1, std::memory_order_relaxed);
  }

  // The L1 lifetime of a write with L2's default TTL: L2's options().default_ttl when it has one
  // (zero or no_expiry: none), capped by l1_ttl.
  std::chrono::nanoseconds l1_ttl_for_default() const noexcept {
    if constexpr (requires(const L2& s) {
                    { s.options().default_ttl } -> std::convertible_to<std::chrono::nanoseconds>;
                  }) {
      const std::chrono::nanoseconds d = l2_.options().default_ttl;
      if (d > std::chrono::nanoseconds::zero()) return std::min(d, opts_.l1_ttl);
    }
    return opts_.l1_ttl;
  }

  // Runs the L2 step of a write of `key`; if it throws, invalidates the key's L1 copy before the
  // exception propagates (L2 may or may not have changed).
  template <class F>
  auto l2_attempt(const key_type& key, F&& f) -> std::invoke_result_t<F&> {
    try {
      return f();
    } catch (...) {
      invalidate_l1(key);
      throw;
    }
  }

  // The L1 half of every write. `t0` was taken before the L2 write, `r` is L2's answer. The bump
  // comes now, after the L2 change; the L1 copy lands only if no other bump (of this key's stripe,
  // or of the epoch) came since t0 besides ours, and L1 is not suspended.
  template <class Pred = detail::store_condition_archetype>
  put_result write_through(const key_type& key, mapped_type&& value, std::uint64_t t0,
                           std::chrono::nanoseconds l1_ttl, put_result r, Pred&& extra = Pred{}) {
    if (r == put_result::rejected_stale) return r;  // L2 changed nothing
    guard_.invalidate(key);
    if (!stored(r) || local_suspended()) {
      l1_.erase(key);
      return r;
    }
    try {
      const put_result r1 =
          l1_.put_if(key_type(key), std::move(value), l1_ttl, [this, &key, t0, &extra]() noexcept {
            return !guard_.raced(key, t0 + 1) && !local_suspended() && extra();
          });
      if (!stored(r1)) l1_.erase(key);
    } catch (...) {
      l1_.erase(key);
      throw;
    }
    return r;
  }

  // Bumps the key's ticket and erases its L1 copy.
  void invalidate_l1(const key_type& key) {
    guard_.invalidate(key);
    l1_.erase(key);
  }

  // Copies an L2 hit into L1 unless a bump came since `t` (taken before L2 was read).
  void promote(const key_type& key, const mapped_type& value, std::uint64_t t) {
    const put_result r = l1_.put_if(
        key_type(key), mapped_type(value), opts_.l1_ttl,
        [this, &key, t]() noexcept { return !guard_.raced(key, t) && !local_suspended(); });
    count(stored(r) ? &slot::promotions : &slot::promotions_refused);
  }

  tiered_options opts_;
  L1 l1_;
  L2 l2_;
  detail::invalidation_guard<hasher> guard_;
  single_flight<key_type, shared_read, hasher, key_equal> reads_;
  alignas(64) std::atomic<std::uint32_t> suspended_{0};
  std::array<slot, k_slots> slots_{};
};

}  // namespace cachet
