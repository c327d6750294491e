// cachet/detail/epoch.hpp — epoch-based memory reclamation (EBR) for lock-free readers.
//
// Purpose: lets readers walk nodes without a lock while writers unlink and retire them; a retired
// node is destroyed only after every reader that could still hold a pointer to it has left its
// read-side critical section. One `epoch_domain` per data structure (per store), not a global.
//
//   epoch_domain domain;
//   std::atomic<node*> head;
//   {  // reader
//     auto guard = domain.pin();
//     node* n = head.load(std::memory_order_acquire);
//     use(*n);  // n stays alive until the guard is gone
//   }
//   node* old = head.exchange(fresh, std::memory_order_acq_rel);  // writer (its own lock)
//   domain.retire(old);  // `delete old` once no reader can see it
//
// Thread safety: every member is thread-safe except the destructor, which the caller must run
// when no thread is pinned in or retiring into the domain (threads that merely used it earlier may
// still be alive, or exit at the same time). A guard is released on the thread that pinned it.
// Exception safety: pin() may throw (std::bad_alloc, std::length_error) only on a thread's first
// pin or retire in a domain, when it registers; try_pin() never throws. retire() never throws: on
// std::bad_alloc it waits for a grace period and destroys the object at once (see below). The
// constructor throws std::invalid_argument for a bad option and std::bad_alloc.
//
// IMPLEMENTATION DETAILS
// The scheme is Fraser's epoch-based reclamation ("Practical lock-freedom", Cambridge TR-579,
// 2004; compared with hazard pointers and quiescent-state RCU by Hart, McKenney, Demke Brown,
// Walpole, "Performance of memory reclamation for lockless synchronization", JPDC 2007), in the
// shape crossbeam-epoch gives it: a global epoch counter, one slot per registered thread holding
// "pinned at epoch e" or "not pinned", and per-thread limbo lists of retired objects tagged with
// the global epoch read when they were retired.
//
//   pin:      e = global (relaxed); slot = e<<1 | 1 (release); seq_cst fence   [depth 0 -> 1]
//   unpin:    slot = 0 (release)                                                 [depth 1 -> 0]
//   retire:   seq_cst fence; r = global (relaxed); limbo += (p, r)
//   advance:  e = global (relaxed); seq_cst fence; every pinned slot == e (acquire loads)?
//             then CAS global e -> e+1 (acq_rel)
//   free:     g = global (acquire); destroy every limbo entry with r + 2 <= g
//
// Why an object tagged r is safe to destroy once the global epoch is r + 2 (C++20
// [atomics.order]/4, the fence rules): let reader R pin (store S, fence F_R) and then load a
// pointer to the object, reading a value older than the writer's unlink U; the writer's retire
// runs fence F_W after U and then reads r. (1) F_R precedes F_W in the single order S of seq_cst
// operations; otherwise R's load, after F_R, would have to see U. (2) R's pinned epoch p <= r: R
// read p before F_R and the writer read r after F_W, so p > r would make the writer's read
// coherence-ordered before R's and force F_W before F_R, against (1). (3) The thread that advanced
// r+1 -> r+2 read r+1 before its fence F_A, after the writer read r, so F_W precedes F_A; then F_R
// precedes F_A and its scan sees S or a later store of R's slot. S says "pinned at p", p <= r <
// r+1, which blocks that advance; so the scan saw R unpinned (or pinned again, which needs an
// unpin first) and R's critical section was over. The release store of the unpin (or of the
// re-pin), the scan's acquire load, the acq_rel CAS and the freeing thread's acquire load of the
// epoch carry happens-before from R's last read to the destroy: the edges ThreadSanitizer sees,
// since it does not model fences (so the fence is built with -Wtsan silenced there).
//
// Fast path: pin and unpin touch only the thread's own slot (its own cache line: a store, and the
// fence) plus a read of the global epoch, which changes once per advance. The thread finds its
// slot through a 4-entry thread-local cache keyed by the domain's unique id; on a miss it looks in
// its thread registry, and only the first time it registers (under a process-wide mutex).
//
// Reclamation is amortised: each thread, after every `reclaim_period` of its own retires, tries
// one advance and frees what is two epochs old in its own limbo list and in the domain's orphan
// list (lists of threads that exited). Bound at steady state: while no reader stays pinned for
// long, an advance succeeds within about one period of retires, so a thread's limbo list holds
// at most about 3 x reclaim_period entries (the unexamined period plus the two newest epochs), and
// the domain at most that times the number of threads that retire, plus orphans awaiting the next
// collection. A reader that stays pinned stalls every advance: then memory grows without bound
// (the price of EBR; keep critical sections short, never block while pinned). An entry costs 32
// bytes in a vector that grows by doubling and never shrinks.
//
// Threads: each registers lazily in a fixed array of `max_threads` slots (default 256). When
// all are taken, pin() throws std::length_error naming the option, try_pin() returns an empty
// guard (a caller such as a store then takes its locked path), and retire() falls back to waiting
// out a grace period and destroying at once. A thread-local registry lists the thread's slots; its
// destructor, at thread exit, releases each slot of every domain still alive (a process-wide set
// of live domain ids, consulted under the process-wide mutex that the domain's destructor also
// takes, settles the race between a thread's exit and a domain's destruction). The exiting
// thread's limbo list moves to the domain's orphan list, or, when that list is busy or cannot
// grow, stays in the slot for the slot's next owner (or the destructor) to free. After its
// registry is gone (later thread_local destructors) a thread cannot register again: try_pin()
// returns empty, pin() throws std::logic_error, retire() takes the grace-period path.
//
// Out of memory in retire(): the object is already unlinked, so it can neither be dropped (a leak)
// nor freed now. If the limbo list cannot grow, retire() waits until the global epoch is two past
// the object's tag (advancing it itself, yielding while readers finish) and then destroys it. That
// wait would never end if the caller itself were pinned in this domain, so retiring while pinned
// is allowed, but if memory then runs out the process is terminated (std::terminate): retire from
// outside a critical section (a store's writers, serialised by the shard lock, need no pin).
//
// Deleters must not throw, must not retire into or destroy the domain while it is being
// destroyed, and may run on any thread (inside retire(), collect() or synchronize()), sometimes
// while an internal lock of the domain is held: they may pin and retire (into this domain, except
// during its destruction) but must not wait on another thread.
#pragma once

#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

namespace cachet::detail {

// A full sequentially consistent fence. GCC's ThreadSanitizer does not model fences and warns
// about them (-Wtsan); the protocol above gives it acquire/release edges to follow instead.
inline void epoch_seq_cst_fence() noexcept {
#if defined(__SANITIZE_THREAD__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wtsan"
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
#pragma GCC diagnostic pop
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

// Destroys a retired object: `p` as given to retire(), `ctx` its context. Must not throw.
using epoch_reclaim_fn = void (*)(void* p, void* ctx) noexcept;

struct epoch_retired {
  void* p;
  void* ctx;
  epoch_reclaim_fn reclaim;
  std::uint64_t epoch;  // the global epoch read when retired
};

// One registered thread's state in one domain, on its own cache line.
struct alignas(64) epoch_slot {
  // (epoch << 1) | 1 while pinned, 0 while not. Written only by the owner; read by advancers.
  std::atomic<std::uint64_t> state{0};
  // The rest belongs to the owning thread (to the registry mutex's holder while unowned).
  std::uint32_t depth = 0;           // nesting of pins
  std::uint32_t since_collect = 0;   // retires since the last collection
  bool owned = false;                // guarded by the process-wide registry mutex
  bool collecting = false;           // a collection runs deleters: do not start another
  std::vector<epoch_retired> limbo;  // tags non-decreasing
};

class epoch_domain;

// Process-wide: the live domains (by id, never reused) and the id counter. Immortal, so that
// threads exiting during or after static destruction can still consult it.
struct epoch_global_registry {
  std::mutex mu;
  std::unordered_set<std::uint64_t> live;
  std::uint64_t next_id = 1;
};

inline epoch_global_registry& epoch_registry() {
  static epoch_global_registry* const r = new epoch_global_registry;
  return *r;
}

// Per thread: the slots this thread holds, released by the destructor at thread exit.
struct epoch_thread_registry {
  struct entry {
    std::uint64_t id;
    epoch_domain* domain;
    epoch_slot* slot;
  };
  std::vector<entry> entries;

  epoch_thread_registry() noexcept = default;
  epoch_thread_registry(const epoch_thread_registry&) = delete;
  epoch_thread_registry& operator=(const epoch_thread_registry&) = delete;
  ~epoch_thread_registry();  // defined after epoch_domain
};

// The thread-local cache of (domain id -> this thread's slot): constant-initialised, so reading
// it needs no guard or TLS wrapper call. Id 0 is never a domain's.
struct epoch_slot_cache_entry {
  std::uint64_t id;
  epoch_slot* slot;
};
inline constexpr std::size_t k_epoch_cache_ways = 4;
inline thread_local epoch_slot_cache_entry tl_epoch_cache[k_epoch_cache_ways] = {};
// Set once this thread's epoch_thread_registry has been destroyed (the thread is exiting).
inline thread_local bool tl_epoch_registry_gone = false;

inline epoch_thread_registry& this_thread_epoch_registry() noexcept {
  thread_local epoch_thread_registry registry;
  return registry;
}

// RAII read-side critical section: while it is alive, no object retired into its domain after it
// was pinned is destroyed (nor any retired shortly before; see the essay). Move-only; empty when
// default-constructed, moved from, or returned by a failed try_pin().
class epoch_guard {
 public:
  epoch_guard() noexcept = default;
  epoch_guard(epoch_guard&& o) noexcept : slot_(std::exchange(o.slot_, nullptr)) {}
  epoch_guard& operator=(epoch_guard&& o) noexcept {
    if (this != &o) {
      reset();
      slot_ = std::exchange(o.slot_, nullptr);
    }
    return *this;
  }
  epoch_guard(const epoch_guard&) = delete;
  epoch_guard& operator=(const epoch_guard&) = delete;
  ~epoch_guard() { reset(); }

  explicit operator bool() const noexcept { return slot_ != nullptr; }

  // Leaves the critical section now (the outermost guard of the thread unpins it).
  void reset() noexcept {
    if (slot_ != nullptr) {
      if (--slot_->depth == 0) slot_->state.store(0, std::memory_order_release);
      slot_ = nullptr;
    }
  }

 private:
  friend class epoch_domain;
  explicit epoch_guard(epoch_slot* s) noexcept : slot_(s) {}
  epoch_slot* slot_ = nullptr;
};

class epoch_domain {
 public:
  static constexpr std::size_t k_default_max_threads = 256;
  static constexpr std::size_t k_max_max_threads = 65536;
  static constexpr std::uint32_t k_default_reclaim_period = 64;
  static constexpr std::uint32_t k_max_reclaim_period = 1u << 20;

  // `max_threads`: threads that may be registered at once, in [1, 65536] (64 bytes each, and the
  // cost of each advance scans the slots ever used). `reclaim_period`: retires by one thread
  // between its attempts to advance and free, in [1, 2^20]; larger amortises the scan over more
  // retires and holds more garbage (about 3 x period per retiring thread). Throws
  // std::invalid_argument naming the option, or std::bad_alloc.
  explicit epoch_domain(std::size_t max_threads = k_default_max_threads,
                        std::uint32_t reclaim_period = k_default_reclaim_period)
      : max_threads_(max_threads), reclaim_period_(reclaim_period) {
    if (max_threads < 1 || max_threads > k_max_max_threads) {
      throw std::invalid_argument("cachet::detail::epoch_domain: max_threads is " +
                                  std::to_string(max_threads) + "; allowed range [1, 65536]");
    }
    if (reclaim_period < 1 || reclaim_period > k_max_reclaim_period) {
      throw std::invalid_argument("cachet::detail::epoch_domain: reclaim_period is " +
                                  std::to_string(reclaim_period) + "; allowed range [1, 2^20]");
    }
    slots_ = std::make_unique<epoch_slot[]>(max_threads);
    epoch_global_registry& reg = epoch_registry();
    std::lock_guard lock(reg.mu);
    id_ = reg.next_id++;
    reg.live.insert(id_);
  }

  epoch_domain(const epoch_domain&) = delete;
  epoch_domain& operator=(const epoch_domain&) = delete;

  // Destroys every object still retired. Precondition: no thread is pinned in or retiring into
  // this domain. Threads that hold a slot may exit concurrently.
  ~epoch_domain() {
    {
      epoch_global_registry& reg = epoch_registry();
      std::lock_guard lock(reg.mu);
      reg.live.erase(id_);
    }
    // From here no exiting thread touches this domain, and by the precondition nobody else does.
    const std::size_t n = high_water_.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < n; ++i) destroy_all(slots_[i].limbo);
    std::lock_guard lock(orphan_mu_);
    destroy_all(orphans_);
  }

  // Enters a read-side critical section (nesting allowed). Cheap after the thread's first call:
  // a thread-local lookup, a load of the global epoch, a store to the thread's own slot and a
  // fence. Throws only when the thread registers: std::bad_alloc, std::length_error (all
  // max_threads slots taken), std::logic_error (the thread is exiting and its registry is gone).
  [[nodiscard]] epoch_guard pin() {
    epoch_slot* s = cached_slot();
    if (s == nullptr) s = register_thread(true);
    enter(*s);
    return epoch_guard(s);
  }

  // As pin(), but returns an empty guard instead of throwing (the caller then must not read
  // shared nodes: take a lock instead).
  [[nodiscard]] epoch_guard try_pin() noexcept {
    epoch_slot* s = cached_slot();
    if (s == nullptr) {
      try {
        s = register_thread(false);
      } catch (...) {
        s = nullptr;
      }
      if (s == nullptr) return epoch_guard();
    }
    enter(*s);
    return epoch_guard(s);
  }

  // Whether the calling thread is inside a critical section of this domain. Never registers.
  bool pinned() const noexcept {
    const epoch_slot* s = find_slot();
    return s != nullptr && s->depth != 0;
  }

  // Hands `p`, already unreachable to readers that pin from now on, to the domain, which calls
  // reclaim(p, ctx) once every reader that could have seen it has unpinned. Amortised O(1); every
  // reclaim_period-th call by a thread tries to advance and frees what is ready. Never throws;
  // when memory or slots run out it waits for a grace period (advancing the epoch itself, yielding
  // to readers) and destroys `p` at once; that path terminates the process if the caller is pinned
  // in this domain (see the essay).
  void retire(void* p, epoch_reclaim_fn reclaim, void* ctx = nullptr) noexcept {
    epoch_slot* s = cached_slot();
    if (s == nullptr) {
      try {
        s = register_thread(false);
      } catch (...) {
        s = nullptr;
      }
    }
    if (s == nullptr) {  // not registered, so not pinned here either
      epoch_seq_cst_fence();
      wait_for_epoch(global_.load(std::memory_order_relaxed) + 2);
      reclaim(p, ctx);
      return;
    }
    epoch_seq_cst_fence();
    const std::uint64_t tag = global_.load(std::memory_order_relaxed);
    try {
      s->limbo.push_back(epoch_retired{p, ctx, reclaim, tag});
    } catch (const std::bad_alloc&) {
      if (s->depth != 0) std::terminate();  // the wait below would wait for ourselves
      wait_for_epoch(tag + 2);
      reclaim(p, ctx);
      return;
    }
    if (++s->since_collect >= reclaim_period_) collect_slot(*s);
  }

  // retire() for an object made with `new T`: `delete p` when safe.
  template <class T>
  void retire(T* p) noexcept {
    static_assert(std::is_nothrow_destructible_v<T>, "retired objects must not throw on delete");
    retire(static_cast<void*>(const_cast<std::remove_cv_t<T>*>(p)), &delete_as<T>, nullptr);
  }

  // retire() with a stateless deleter (a captureless lambda or empty function object), called as
  // Deleter{}(p).
  template <class T, class Deleter>
  requires(std::is_empty_v<Deleter>&& std::is_default_constructible_v<Deleter>&&
               std::is_nothrow_invocable_v<Deleter, T*>) void retire(T* p, Deleter) noexcept {
    retire(static_cast<void*>(const_cast<std::remove_cv_t<T>*>(p)), &delete_with<T, Deleter>,
           nullptr);
  }

  // Tries to advance the global epoch once, then frees whatever of the calling thread's limbo list
  // and of the orphan list is two epochs old. Never blocks (the orphan list is taken with
  // try_lock). Registers the thread if needed; a no-op if it cannot.
  void collect() noexcept {
    epoch_slot* s = cached_slot();
    if (s == nullptr) {
      try {
        s = register_thread(false);
      } catch (...) {
        s = nullptr;
      }
    }
    if (s != nullptr) {
      collect_slot(*s);
    } else {
      try_advance();
      collect_orphans(global_.load(std::memory_order_acquire));
    }
  }

  // Waits until every object retired before the call (by any thread) may be destroyed, and
  // destroys those in the caller's limbo list and the orphan list; objects in other threads'
  // lists are destroyed by their owners' next collection. Blocks while readers stay pinned
  // (yielding). Precondition: the calling thread is not pinned in this domain.
  void synchronize() noexcept {
    assert(!pinned() && "epoch_domain::synchronize() called inside a critical section");
    epoch_seq_cst_fence();
    wait_for_epoch(global_.load(std::memory_order_relaxed) + 2);
    collect();
  }

  // Tries once to move the global epoch forward by one: succeeds when every pinned thread has
  // pinned at the current epoch. Returns whether the epoch moved past the value it read (by this
  // call or another thread's).
  bool try_advance() noexcept {
    std::uint64_t e = global_.load(std::memory_order_relaxed);
    epoch_seq_cst_fence();
    const std::size_t n = high_water_.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t st = slots_[i].state.load(std::memory_order_acquire);
      if ((st & 1) != 0 && (st >> 1) != e) return false;
    }
    // A failed CAS means another thread advanced it, which is as good.
    global_.compare_exchange_strong(e, e + 1, std::memory_order_acq_rel, std::memory_order_acquire);
    return true;
  }

  // The global epoch (diagnostics and tests).
  std::uint64_t epoch() const noexcept { return global_.load(std::memory_order_acquire); }

  // Retired objects waiting in the calling thread's limbo list (0 if it is not registered).
  std::size_t pending_local() const noexcept {
    const epoch_slot* s = find_slot();
    return s == nullptr ? 0 : s->limbo.size();
  }

  std::size_t max_threads() const noexcept { return max_threads_; }
  std::uint32_t reclaim_period() const noexcept { return reclaim_period_; }

 private:
  friend struct epoch_thread_registry;

  template <class T>
  static void delete_as(void* p, void*) noexcept {
    delete static_cast<T*>(p);
  }
  template <class T, class Deleter>
  static void delete_with(void* p, void*) noexcept {
    Deleter{}(static_cast<T*>(p));
  }

  // The pin itself (see the essay): only the outermost pin publishes the epoch.
  void enter(epoch_slot& s) const noexcept {
    if (s.depth++ == 0) {
      const std::uint64_t e = global_.load(std::memory_order_relaxed);
      s.state.store((e << 1) | 1, std::memory_order_release);
      epoch_seq_cst_fence();
    }
  }

  epoch_slot* cached_slot() const noexcept {
    const epoch_slot_cache_entry& c = tl_epoch_cache[id_ & (k_epoch_cache_ways - 1)];
    return c.id == id_ ? c.slot : nullptr;
  }

  // This thread's slot here, from the cache or the thread registry; nullptr if not registered.
  epoch_slot* find_slot() const noexcept {
    if (epoch_slot* s = cached_slot()) return s;
    if (tl_epoch_registry_gone) return nullptr;
    for (const auto& e : this_thread_epoch_registry().entries) {
      if (e.id == id_) return e.slot;
    }
    return nullptr;
  }

  // The slow path of pin(): finds or claims this thread's slot and caches it. Returns nullptr
  // (when !throw_on_failure) or throws when no slot can be had; may throw std::bad_alloc.
  epoch_slot* register_thread(bool throw_on_failure) {
    epoch_slot* s = find_slot();
    if (s == nullptr) {
      if (tl_epoch_registry_gone) {
        if (!throw_on_failure) return nullptr;
        throw std::logic_error(
            "cachet::detail::epoch_domain: pin() on a thread whose epoch registry was already "
            "destroyed (called from a thread_local destructor at thread exit)");
      }
      epoch_thread_registry& mine = this_thread_epoch_registry();
      epoch_global_registry& reg = epoch_registry();
      std::lock_guard lock(reg.mu);
      // Forget slots of domains that no longer exist (their ids are never reused).
      std::erase_if(mine.entries, [&](const auto& e) { return reg.live.count(e.id) == 0; });
      mine.entries.reserve(mine.entries.size() + 1);  // may throw; nothing claimed yet
      for (std::size_t i = 0; i < max_threads_; ++i) {
        if (!slots_[i].owned) {
          s = &slots_[i];
          break;
        }
      }
      if (s == nullptr) {
        if (!throw_on_failure) return nullptr;
        throw std::length_error("cachet::detail::epoch_domain: all " +
                                std::to_string(max_threads_) +
                                " thread slots are in use; raise max_threads (at most 65536)");
      }
      s->owned = true;
      s->depth = 0;
      s->since_collect = 0;
      s->state.store(0, std::memory_order_relaxed);
      const std::size_t index = static_cast<std::size_t>(s - slots_.get());
      if (index >= high_water_.load(std::memory_order_relaxed)) {
        high_water_.store(index + 1, std::memory_order_release);
      }
      mine.entries.push_back({id_, this, s});  // capacity reserved above: no throw
    }
    tl_epoch_cache[id_ & (k_epoch_cache_ways - 1)] = {id_, s};
    return s;
  }

  // At thread exit, under the registry mutex: gives the slot back. Runs no deleter (a deleter
  // might need the registry mutex); the limbo list moves to the orphans if that is possible
  // without waiting, else stays in the slot for its next owner or the destructor.
  void release_slot(epoch_slot& s) noexcept {
    assert(s.depth == 0 && "a thread exited while pinned");
    s.depth = 0;
    s.state.store(0, std::memory_order_release);
    if (!s.limbo.empty() && orphan_mu_.try_lock()) {
      try {
        if (orphans_.empty()) {
          orphans_.swap(s.limbo);
        } else {
          orphans_.insert(orphans_.end(), s.limbo.begin(), s.limbo.end());
          s.limbo.clear();
        }
        orphan_count_.store(orphans_.size(), std::memory_order_relaxed);
      } catch (const std::bad_alloc&) {
        // keep them in the slot
      }
      orphan_mu_.unlock();
    }
    s.since_collect = 0;
    s.owned = false;
  }

  void collect_slot(epoch_slot& s) noexcept {
    if (s.collecting) return;  // a deleter retired into this domain: the outer call frees
    s.collecting = true;
    s.since_collect = 0;
    try_advance();
    const std::uint64_t g = global_.load(std::memory_order_acquire);
    destroy_ready(s.limbo, g);
    collect_orphans(g);
    s.collecting = false;
  }

  void collect_orphans(std::uint64_t g) noexcept {
    if (orphan_count_.load(std::memory_order_relaxed) == 0) return;
    if (!orphan_mu_.try_lock()) return;
    destroy_ready(orphans_, g);
    orphan_count_.store(orphans_.size(), std::memory_order_relaxed);
    orphan_mu_.unlock();
  }

  // Destroys the entries of `v` tagged two or more epochs before `g`, keeping the others in order.
  // Indexes rather than iterators: a deleter may retire, appending to `v` (if `v` is the caller's
  // limbo list); those appended entries are kept.
  static void destroy_ready(std::vector<epoch_retired>& v, std::uint64_t g) noexcept {
    const std::size_t n = v.size();
    std::size_t kept = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const epoch_retired r = v[i];
      if (r.epoch + 2 <= g) {
        r.reclaim(r.p, r.ctx);
      } else {
        v[kept++] = r;
      }
    }
    v.erase(v.begin() + static_cast<std::ptrdiff_t>(kept),
            v.begin() + static_cast<std::ptrdiff_t>(n));
  }

  static void destroy_all(std::vector<epoch_retired>& v) noexcept {
    for (const epoch_retired& r : v) r.reclaim(r.p, r.ctx);
    v.clear();
  }

  // Blocks until the global epoch reaches `target`, advancing it, yielding while readers hold it.
  void wait_for_epoch(std::uint64_t target) noexcept {
    while (global_.load(std::memory_order_acquire) < target) {
      if (!try_advance()) std::this_thread::yield();
    }
  }

  // Read by every pin, written once per advance; its line also holds the read-mostly fields.
  alignas(64) std::atomic<std::uint64_t> global_{1};
  std::uint64_t id_ = 0;
  std::size_t max_threads_;
  std::uint32_t reclaim_period_;
  std::unique_ptr<epoch_slot[]> slots_;
  std::atomic<std::size_t> high_water_{0};  // slots [0, high_water_) have ever been claimed
  alignas(64) std::mutex orphan_mu_;        // off the epoch's line: collections write it
  std::vector<epoch_retired> orphans_;      // under orphan_mu_; tags in any order
  std::atomic<std::size_t> orphan_count_{0};
};

inline epoch_thread_registry::~epoch_thread_registry() {
  tl_epoch_registry_gone = true;
  for (auto& c : tl_epoch_cache) c = {};
  epoch_global_registry& reg = epoch_registry();
  std::lock_guard lock(reg.mu);
  for (const entry& e : entries) {
    if (reg.live.count(e.id) != 0) e.domain->release_slot(*e.slot);
  }
}

}  // namespace cachet::detail
