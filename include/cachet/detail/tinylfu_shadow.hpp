// cachet/detail/tinylfu_shadow.hpp — a W-TinyLFU over key hashes alone, no values: the model
// cache that w_tinylfu_adaptive (eviction/w_tinylfu.hpp) runs beside the real one to learn which
// window size and admission margin its traffic wants.
//
// IMPLEMENTATION DETAILS
// A shadow holds up to `capacity` 32-bit key hashes in the three queues of W-TinyLFU (an LRU
// window, then a segmented-LRU main space of probation and protected) and follows the real
// policy's rules exactly: a new hash enters the window; window overflow enters probation while
// the shadow is filling, and once it is full the window's least recent hash duels with main's
// victim (probation's least recent, else protected's) through the owner's count-min sketch,
// which the owner has already counted this access in. The candidate wins if its estimate exceeds
// the victim's by more than `margin`; a loser with an estimate above `warm` still wins with
// probability 1 / (random_mask + 1) (the hash-flooding defence). A hit in probation promotes to
// protected, and protected's overflow drops to probation. The shadow counts its accesses and hits.
//
// The shadow shares the owner's sketch rather than keeping one: every access is counted in the
// sketch whatever the cache does with it, so the sketch the shadow would have kept is the same.
// With margin 0, the real policy's window and protected sizes and every access fed in order, a
// shadow makes exactly the real static policy's decisions (tests check this) apart from the
// random admissions, which draw from separate generators.
//
// Layout: nodes of 8 bytes (hash, two 16-bit links) plus a 1-byte queue id, and a linear-probing
// index of 16-bit slots, at least twice the capacity (deletion by backward shift, so no
// tombstones). About 13 to 17 bytes per hash; capacity at most 65,534. Everything is allocated in
// reset(); access() never allocates.
//
// Exception safety: reset() allocates (std::bad_alloc; the shadow is then empty, capacity 0);
// everything else is noexcept. Thread safety: none; the owner synchronises.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace cachet::detail {

class tinylfu_shadow {
 public:
  static constexpr std::uint32_t k_max_capacity = 65534;

  struct shape {
    std::uint32_t capacity = 0;  // hashes held, at most k_max_capacity
    std::uint32_t window = 1;    // window size, >= 1
    std::uint32_t protect = 0;   // protected's share of main
    std::uint32_t margin = 0;    // the candidate must beat the victim by more than this
  };

  tinylfu_shadow() noexcept = default;

  // Empties the shadow and gives it this shape. Throws std::bad_alloc (then capacity is 0 and
  // every access is a miss that stores nothing).
  void reset(const shape& s, std::uint64_t seed) {
    nodes_.reset();
    queue_.reset();
    index_.reset();
    shape_ = {};
    for (list& l : lists_) l = {};
    free_ = k_npos;
    used_ = 0;
    hits_ = 0;
    accesses_ = 0;
    rng_ = seed | 1;
    if (s.capacity == 0) return;
    const std::uint32_t cap = s.capacity < k_max_capacity ? s.capacity : k_max_capacity;
    const std::size_t slots = std::bit_ceil(std::size_t{2} * cap);
    nodes_ = std::make_unique<node[]>(cap);
    queue_ = std::make_unique<std::uint8_t[]>(cap);
    index_ = std::make_unique<std::uint16_t[]>(slots);  // value-initialised: all empty
    shift_ = static_cast<std::uint32_t>(32 - std::countr_zero(slots));
    mask_ = slots - 1;
    shape_ = s;
    shape_.capacity = cap;
  }

  // Feeds one access to the key with this hash; `estimate(hash)` is the owner's sketch, already
  // counting this access. Returns whether it was a hit.
  template <class Estimate>
  bool access(std::uint32_t hash, const Estimate& estimate, std::uint32_t warm,
              std::uint32_t random_mask) noexcept {
    ++accesses_;
    if (shape_.capacity == 0) return false;
    const std::size_t slot = find(hash);
    if (index_[slot] != 0) {
      const std::uint16_t i = static_cast<std::uint16_t>(index_[slot] - 1);
      ++hits_;
      if (queue_[i] == k_window) {
        move_front(i, k_window);
      } else {
        move_front(i, k_protected);
        while (lists_[k_protected].size > shape_.protect) {
          move_front(lists_[k_protected].tail, k_probation);
        }
      }
      return true;
    }
    if (size() >= shape_.capacity) {
      const std::uint16_t v = main_victim();
      if (lists_[k_window].size < shape_.window) {
        evict(v != k_npos ? v : lists_[k_window].tail);
      } else {
        const std::uint16_t c = lists_[k_window].tail;
        if (v == k_npos || !admit(estimate, nodes_[c].hash, nodes_[v].hash, warm, random_mask)) {
          evict(c);
        } else {
          move_front(c, k_probation);
          evict(v);
        }
      }
    }
    std::uint16_t i;
    if (free_ != k_npos) {
      i = free_;
      free_ = nodes_[i].next;
    } else {
      i = static_cast<std::uint16_t>(used_++);
    }
    nodes_[i].hash = hash;
    index_[find(hash)] = static_cast<std::uint16_t>(i + 1);
    push_front(i, k_window);
    while (lists_[k_window].size > shape_.window) {
      move_front(lists_[k_window].tail, k_probation);
    }
    return false;
  }

  std::uint64_t hits() const noexcept { return hits_; }
  std::uint64_t accesses() const noexcept { return accesses_; }
  std::uint32_t size() const noexcept {
    return lists_[k_window].size + lists_[k_probation].size + lists_[k_protected].size;
  }
  const shape& shape_of() const noexcept { return shape_; }
  bool contains(std::uint32_t hash) const noexcept {
    return shape_.capacity != 0 && index_[find(hash)] != 0;
  }

 private:
  static constexpr std::uint16_t k_npos = 0xFFFF;
  static constexpr std::uint8_t k_window = 0, k_probation = 1, k_protected = 2;
  struct node {
    std::uint32_t hash;
    std::uint16_t prev, next;
  };
  struct list {
    std::uint16_t head = k_npos, tail = k_npos;
    std::uint32_t size = 0;
  };

  template <class Estimate>
  bool admit(const Estimate& estimate, std::uint32_t candidate, std::uint32_t victim,
             std::uint32_t warm, std::uint32_t random_mask) noexcept {
    const std::uint32_t fc = estimate(candidate);
    if (fc > estimate(victim) + shape_.margin) return true;
    if (fc <= warm) return false;
    return ((next_random() >> 32) & random_mask) == 0;
  }
  std::uint64_t next_random() noexcept {  // xorshift64*
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    return rng_ * 0x2545F4914F6CDD1DULL;
  }

  std::uint16_t main_victim() const noexcept {
    return lists_[k_probation].tail != k_npos ? lists_[k_probation].tail : lists_[k_protected].tail;
  }

  // The slot holding `hash`, or the empty slot where it would go.
  std::size_t find(std::uint32_t hash) const noexcept {
    std::size_t s = (hash * 0x9E3779B1u) >> shift_;
    while (index_[s] != 0 && nodes_[index_[s] - 1].hash != hash) s = (s + 1) & mask_;
    return s;
  }
  void erase_slot(std::size_t s) noexcept {  // backward-shift deletion
    std::size_t next = (s + 1) & mask_;
    while (index_[next] != 0) {
      const std::size_t home = (nodes_[index_[next] - 1].hash * 0x9E3779B1u) >> shift_;
      // The entry at `next` may move back to `s` if its home is not in (s, next].
      if (((next - home) & mask_) >= ((next - s) & mask_)) {
        index_[s] = index_[next];
        s = next;
      }
      next = (next + 1) & mask_;
    }
    index_[s] = 0;
  }

  void unlink(std::uint16_t i) noexcept {
    list& l = lists_[queue_[i]];
    const node& n = nodes_[i];
    if (n.prev != k_npos)
      nodes_[n.prev].next = n.next;
    else
      l.head = n.next;
    if (n.next != k_npos)
      nodes_[n.next].prev = n.prev;
    else
      l.tail = n.prev;
    --l.size;
  }
  void push_front(std::uint16_t i, std::uint8_t q) noexcept {
    list& l = lists_[q];
    queue_[i] = q;
    nodes_[i].prev = k_npos;
    nodes_[i].next = l.head;
    if (l.head != k_npos)
      nodes_[l.head].prev = i;
    else
      l.tail = i;
    l.head = i;
    ++l.size;
  }
  void move_front(std::uint16_t i, std::uint8_t q) noexcept {
    unlink(i);
    push_front(i, q);
  }
  void evict(std::uint16_t i) noexcept {
    unlink(i);
    erase_slot(find(nodes_[i].hash));
    nodes_[i].next = free_;
    free_ = i;
  }

  std::unique_ptr<node[]> nodes_;
  std::unique_ptr<std::uint8_t[]> queue_;
  std::unique_ptr<std::uint16_t[]> index_;
  shape shape_;
  list lists_[3];
  std::uint16_t free_ = k_npos;
  std::uint32_t used_ = 0;
  std::uint32_t shift_ = 32;
  std::size_t mask_ = 0;
  std::uint64_t hits_ = 0;
  std::uint64_t accesses_ = 0;
  std::uint64_t rng_ = 1;
};

}  // namespace cachet::detail
