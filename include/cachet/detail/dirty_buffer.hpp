// cachet/detail/dirty_buffer.hpp — write_back's dirty buffer: the unflushed writes, their queues,
// and the rules that decide which of them a batch takes.
//
// IMPLEMENTATION DETAILS
// The buffer is 64 shards, picked by the top 6 bits of the key's hash (the map inside a shard uses
// the low bits). Each shard, under its own mutex, holds
//
//     map    key -> entry { value (nullopt = erase), ticket, deadline }
//     queue  [ {k1, t1, e1, s1}  {k2, t2, e2, s2}  {k1, t3, e3, s3} ... ]   oldest at the front
//              ^ live while map[k1].ticket == t1; stale (skipped) otherwise
//
// Rules:
//   1. Tickets. Every push onto a queue takes the shard's next ticket and stores it in the key's
//      entry, so the entry names its key's one live queue item. A queue item whose ticket differs
//      from its entry's (or whose key is gone) is stale: collect() and covered() pop it and go on.
//      This is lazy deletion [1]: a deque cannot drop an item from its middle, so a superseded item
//      is left where it is and costs one look when it reaches the front. Ticket 0 means "taken":
//      the flusher holds the key's value in a batch and nothing newer is queued.
//   2. Coalescing. A write of a key with a live item replaces the entry's value in place; the item
//      keeps its place, its epoch and its `since`, so the key is written once, with the last
//      value, max_delay after it *first* became dirty (a hot key cannot postpone itself). A write
//      of a key whose value is in flight (ticket 0) cannot change what the Source is being sent: it
//      queues a new item behind, and complete() of the flight keeps the entry for it. Writes to one
//      key therefore reach the Source in order, and only the last of a coalesced run does [2][3].
//   3. Epochs and flush(). A queued item records the epoch current when it was queued. flush()
//      calls next_epoch(), which closes the current epoch and returns it as the target: every
//      write recorded before that call sits in an item of epoch <= target (a coalesced write rides
//      in an older item), or in a batch in flight. Pushes at the back take the current epoch, which
//      only grows, and requeues at the front keep theirs (rule 4), so each queue is sorted by
//      epoch; covered(target) therefore looks only at each shard's first live item. collect()
//      takes items of epoch <= target whether due or not, so a flush() is not kept waiting by
//      max_delay, and writes made after it do not hold it up.
//   4. A failed write goes back to the front, with its epoch and its `since`. It is older than
//      anything queued behind it since it was collected, so the front keeps each queue in epoch
//      order: at the back with its old epoch it would hide behind newer items and covered() could
//      report a flush() done while it is still unwritten; with a fresh epoch, a flush() that was
//      waiting for it would not wait any more. It stays due, so the next batch retries it first
//      (after the caller's backoff). If the key was written again while the batch was out, that
//      write queued an item at the back; the requeued item takes the entry's ticket, the back item
//      goes stale, and the entry's value (the newer write) is what the retry sends: the failed
//      value is superseded without reaching the Source, which is coalescing too [3].
//   5. Slots. size() counts dirty keys, in flight included; record() reserves a slot (a CAS
//      against the capacity, so no two shards both take the last one) before it inserts a new key,
//      and complete() releases it when the key leaves the map. What to do when there is no slot
//      (wait for the flusher, write the Source directly) is the caller's policy: record() reports
//      `full` and changes nothing.
//   6. Due time. An item is due at since + max_delay (saturating, so a max_delay of hours::max()
//      means "never by time"). collect() takes a shard's items from the front while the batch has
//      room and the item is due, or covered by the flush target, or the caller signals pressure
//      (a full backlog, a full batch); the first item it leaves behind in a shard sets next_due.
//      Shards are visited round-robin from a cursor that moves one shard per call, so a busy shard
//      cannot starve the rest of a bounded batch.
//
// Threads: record(), lookup(), with_lock(), next_epoch() and size() may be called from any thread.
// collect() moves the round-robin cursor and must not run concurrently with itself; the flusher is
// its only caller, and the one that completes or requeues every item it collected, exactly once.
// Callbacks run under a shard mutex (std::mutex, not recursive): they must not call this object.
//
// References:
//   [1] Lazy deletion in priority queues: leave a superseded element in place and skip it when it
//       surfaces (the usual Dijkstra-with-binary-heap implementation; Sedgewick & Wayne,
//       Algorithms 4th ed., §4.4).
//   [2] Oracle Coherence, "Write-Behind Caching": a write-behind queue keyed by entry, where later
//       updates of a queued entry replace its value, and failed stores are requeued.
//   [3] Ehcache 2, write-behind with writeCoalescing: only the latest of several queued writes of
//       one key is written.
#pragma once

#include <absl/container/flat_hash_map.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "cachet/detail/saturate.hpp"

namespace cachet::detail {

// What dirty_buffer::record() did (one type for every instantiation).
enum class dirty_record_status : unsigned char {
  added,          // a new dirty key; queued
  coalesced,      // replaced a queued value the flusher had not taken yet
  queued_behind,  // the key's older value is in flight; this one is queued after it
  full,           // a new key, and `capacity` keys are dirty: nothing was recorded
};
struct dirty_record_result {
  dirty_record_status status;
  std::size_t size = 0;  // for `added`: dirty keys counting this one (its slot's number)
};

template <class K, class V, class Hash, class KeyEqual>
class dirty_buffer {
 public:
  using key_type = K;
  using mapped_type = V;
  using time_point = std::chrono::steady_clock::time_point;

  static constexpr std::size_t k_shards = 64;  // = 2^6, see shard_of()
  // A deadline meaning "the store's default TTL". Deadlines are kept for the caller, not read here.
  static constexpr std::int64_t k_no_deadline = std::numeric_limits<std::int64_t>::min();

  using record_status = dirty_record_status;
  using record_result = dirty_record_result;

  // One write taken by collect(): the key and the value (nullopt = erase) to send to the Source.
  // Hand it back exactly once, to complete() when the Source has it or to requeue() when not.
  class item {
   public:
    key_type key;
    std::optional<mapped_type> value;
    std::uint64_t epoch() const noexcept { return epoch_; }  // as queued; kept across requeues
    time_point since() const noexcept { return since_; }     // when queued; kept too

   private:
    friend class dirty_buffer;
    item(const key_type& k, const std::optional<mapped_type>& v, std::size_t shard,
         std::uint64_t epoch, time_point since)
        : key(k), value(v), shard_(shard), epoch_(epoch), since_(since) {}
    std::size_t shard_;
    std::uint64_t epoch_;
    time_point since_;
  };

  // At most `capacity` dirty keys; a queued write is due `max_delay` after it was queued. The
  // caller validates both (> 0). Allocates the shards' empty tables.
  dirty_buffer(std::size_t capacity, std::chrono::nanoseconds max_delay)
      : capacity_(capacity), max_delay_(max_delay) {}

  dirty_buffer(const dirty_buffer&) = delete;
  dirty_buffer& operator=(const dirty_buffer&) = delete;

  // Records a write of `key` (`value` nullopt for an erase), keeping `deadline` for lookup(), then
  // runs `on_recorded()` under the same shard lock, so a caller's cache step is atomic with the
  // record. `now` is the time the write is queued at: a time_point, or a callable returning one,
  // called only if the write is queued (a coalesced write reads no clock). Returns what happened;
  // on `full` nothing changed (`value` is not moved from, on_recorded is not run) and the caller
  // decides whether to wait for a slot or not record at all. Blocks on the key's shard mutex.
  // Allocates when it queues (the deque) or adds a key (the map, and two copies of the key).
  // Exception safety: if the hash, the equality, a copy of the key or an allocation throws,
  // nothing changed (this needs the key's move constructor not to throw); once the write is
  // recorded only on_recorded() can throw, and the write stays recorded.
  template <class Now, class OnRecorded = void (*)() noexcept>
  record_result record(const key_type& key, std::optional<mapped_type>&& value,
                       std::int64_t deadline, Now&& now, OnRecorded&& on_recorded = no_op) {
    shard& s = shard_of(key);
    std::lock_guard<std::mutex> g(s.mu);
    auto it = s.map.find(key);
    record_result r{record_status::coalesced};
    if (it == s.map.end()) {
      if (!reserve_slot(r.size)) return {record_status::full};
      it = add(s, key, time_of(now));
      r.status = record_status::added;
    } else if (it->second.ticket == 0) {  // the flusher is writing an older value: queue after it
      push(s, it, time_of(now));
      r.status = record_status::queued_behind;
    }
    // Recorded: nothing below throws but on_recorded().
    it->second.value = std::move(value);
    it->second.deadline = deadline;
    on_recorded();
    return r;
  }

  // If `key` is dirty, runs `on_dirty(const std::optional<V>& value, std::int64_t deadline)` under
  // its shard lock (where the caller may re-cache the value, ordered with the writes of `key`) and
  // returns true; else returns false. Blocks on the key's shard mutex; allocates nothing; throws
  // what the hash, the equality or on_dirty throw.
  template <class OnDirty>
  bool lookup(const key_type& key, OnDirty&& on_dirty) {
    shard& s = shard_of(key);
    std::lock_guard<std::mutex> g(s.mu);
    auto it = s.map.find(key);
    if (it == s.map.end()) return false;
    const entry& e = it->second;
    on_dirty(e.value, e.deadline);
    return true;
  }

  // Runs `f()` under `key`'s shard lock, ordered with record() and lookup() of the key, and
  // returns what it returns. For a cache step of a write that is not recorded here.
  template <class F>
  decltype(auto) with_lock(const key_type& key, F&& f) {
    shard& s = shard_of(key);
    std::lock_guard<std::mutex> g(s.mu);
    return std::forward<F>(f)();
  }

  // Closes the current epoch and returns it (the first is 1): every write recorded before this
  // call is in a queue item of epoch <= the result, or in a batch taken by collect(). The caller
  // passes the result to collect() and covered() as `target`. Lock-free.
  std::uint64_t next_epoch() noexcept { return epoch_.fetch_add(1); }

  // Dirty keys, including those in a batch in flight. Lock-free.
  std::size_t size() const noexcept { return size_.load(); }

  // Replaces `batch` with up to `max` queued writes that may be written now: due (since +
  // max_delay <= now), or of epoch <= target, or any while `pressure`; oldest first per shard.
  // Marks them in flight: a later write of their keys queues behind them. Sets `next_due` to the
  // earliest due time of the writes it looked at and left queued, if that is earlier than
  // `next_due` already is; when the batch is not full it looked at every queue, so `next_due` is
  // when the next write becomes due (the caller's wake-up time; nullopt: nothing queued). Takes
  // each shard's mutex in turn. Allocates only if `batch` has less capacity than `max`. If copying
  // a key or value throws, the write being copied stays queued, the ones already in `batch` are in
  // flight (requeue them), and the exception propagates.
  void collect(std::vector<item>& batch, std::size_t max, std::uint64_t target, bool pressure,
               time_point now, std::optional<time_point>& next_due) {
    batch.clear();
    for (std::size_t k = 0; k < k_shards && batch.size() < max; ++k) {
      const std::size_t si = (next_shard_ + k) % k_shards;
      shard& s = shards_[si];
      std::lock_guard<std::mutex> g(s.mu);
      while (!s.queue.empty()) {
        queued& q = s.queue.front();
        auto it = s.map.find(q.key);
        if (it == s.map.end() || it->second.ticket != q.ticket) {  // stale
          s.queue.pop_front();
          continue;
        }
        const time_point due = saturating_after(q.since, max_delay_);
        if (batch.size() >= max || !(pressure || q.epoch <= target || due <= now)) {
          if (!next_due || due < *next_due) next_due = due;
          break;
        }
        batch.push_back(item(q.key, it->second.value, si, q.epoch, q.since));  // may throw
        it->second.ticket = 0;
        s.queue.pop_front();
      }
    }
    next_shard_ = (next_shard_ + 1) % k_shards;
  }

  // The Source has `i`: drops its key and frees the key's slot, unless a newer write of the key
  // was queued while `i` was in flight. Returns whether the key was dropped. Blocks on the shard
  // mutex; allocates nothing; throws what the hash or the equality throw.
  bool complete(const item& i) {
    if (!drop(i)) return false;
    size_.fetch_sub(1);
    return true;
  }
  // complete() of each of `done`, with one update of size() at the end. Returns how many keys
  // were dropped. If the hash or the equality throws, the items before it are completed.
  std::size_t complete(std::span<const item> done) {
    std::size_t freed = 0;
    try {
      for (const item& i : done) freed += drop(i) ? 1 : 0;
    } catch (...) {
      size_.fetch_sub(freed);
      throw;
    }
    if (freed > 0) size_.fetch_sub(freed);
    return freed;
  }

  // The Source did not take `i`: puts it back at the front of its queue with its epoch and its
  // `since` (rule 4), moving from i.key. Returns true if a newer write of the key was queued
  // meanwhile, whose item the requeued one replaces (the failed value coalesced into it). Requeue
  // the items of a failed batch last first, to keep their order. Blocks on the shard mutex; may
  // throw std::bad_alloc (the deque) and what the hash or the equality throw.
  bool requeue(item& i) {
    shard& s = shards_[i.shard_];
    std::lock_guard<std::mutex> g(s.mu);
    auto it = s.map.find(i.key);
    const bool superseded = it->second.ticket != 0;
    const std::uint64_t ticket = s.next_ticket++;
    s.queue.push_front(queued{std::move(i.key), ticket, i.epoch_, i.since_});
    it->second.ticket = ticket;
    return superseded;
  }

  // True if no queued write has an epoch <= target; skips (and pops) stale items on the way. With
  // no batch in flight, that means every write recorded before next_epoch() returned `target` has
  // been completed. Takes each shard's mutex in turn; allocates nothing.
  bool covered(std::uint64_t target) {
    for (shard& s : shards_) {
      std::lock_guard<std::mutex> g(s.mu);
      while (!s.queue.empty()) {
        const queued& q = s.queue.front();
        auto it = s.map.find(q.key);
        if (it != s.map.end() && it->second.ticket == q.ticket) break;
        s.queue.pop_front();  // stale
      }
      if (!s.queue.empty() && s.queue.front().epoch <= target) return false;
    }
    return true;
  }

 private:
  friend struct dirty_buffer_test_access;  // tests only: looks at queues, changes nothing

  // A key's unflushed write. `ticket` names the key's live queue item; 0: taken by collect() and
  // no newer write queued. `deadline` belongs to the caller (write_back: when the value's cache
  // entry expires, on the store's clock).
  struct entry {
    std::optional<mapped_type> value;
    std::uint64_t ticket = 0;
    std::int64_t deadline = k_no_deadline;
  };
  // A key waiting in a shard's queue.
  struct queued {
    key_type key;
    std::uint64_t ticket;
    std::uint64_t epoch;
    time_point since;
  };
  using map_type = absl::flat_hash_map<key_type, entry, Hash, KeyEqual>;
  using map_iterator = typename map_type::iterator;
  struct alignas(64) shard {
    std::mutex mu;
    map_type map;
    std::deque<queued> queue;
    std::uint64_t next_ticket = 1;
  };

  static void no_op() noexcept {}

  template <class Now>
  static time_point time_of(Now& now) {
    if constexpr (std::is_invocable_r_v<time_point, Now&>) {
      return now();
    } else {
      return now;
    }
  }

  // The top bits pick the shard: the tables inside use the low ones.
  shard& shard_of(const key_type& key) {
    return shards_[static_cast<std::size_t>(static_cast<std::uint64_t>(hash_(key)) >> 58)];
  }

  // record()'s slow paths, out of line so that its common one (a coalescing write) inlines into
  // the caller's write path.

  // Inserts `key`, whose slot is reserved, and queues it. Gives the slot back if it throws.
  [[gnu::noinline]] map_iterator add(shard& s, const key_type& key, time_point since) {
    try {
      // The map claims its slot before it builds the key there, so a key copy that throws inside
      // try_emplace() would leave a claimed, unbuilt slot. The copies are made out here and the
      // map's is moved in.
      key_type own(key);
      s.queue.push_back(queued{key, s.next_ticket, epoch_.load(), since});
      try {
        const map_iterator it = s.map.try_emplace(std::move(own)).first;
        it->second.ticket = s.next_ticket++;
        return it;
      } catch (...) {  // std::bad_alloc, before any slot was claimed
        s.queue.pop_back();
        throw;
      }
    } catch (...) {
      size_.fetch_sub(1);
      throw;
    }
  }

  // Queues the write of a dirty key as its live item.
  [[gnu::noinline]] void push(shard& s, map_iterator it, time_point since) {
    s.queue.push_back(queued{it->first, s.next_ticket, epoch_.load(), since});
    it->second.ticket = s.next_ticket++;
  }

  // Erases the key of `i` unless a newer write of it is queued; size() is the caller's.
  bool drop(const item& i) {
    shard& s = shards_[i.shard_];
    std::lock_guard<std::mutex> g(s.mu);
    auto it = s.map.find(i.key);
    if (it->second.ticket != 0) return false;
    s.map.erase(it);
    return true;
  }

  // Counts one more dirty key unless that would pass the capacity; `count` gets the new total.
  bool reserve_slot(std::size_t& count) noexcept {
    std::size_t n = size_.load();
    do {
      if (n >= capacity_) return false;
    } while (!size_.compare_exchange_weak(n, n + 1));
    count = n + 1;
    return true;
  }

  const std::size_t capacity_;
  const std::chrono::nanoseconds max_delay_;
  Hash hash_{};
  std::array<shard, k_shards> shards_;
  std::atomic<std::size_t> size_{0};
  std::atomic<std::uint64_t> epoch_{1};
  std::size_t next_shard_ = 0;  // collect()'s cursor
};

}  // namespace cachet::detail
