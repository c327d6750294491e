// A randomized concurrent history checker over the four access patterns (issue 13's contract).
//
// Writers update rows through the pattern (cache_aside, read_through: the table, then invalidate;
// write_through, write_back: put/erase) while readers read them, over a few keys and a cache small
// enough that entries are evicted all the time. One global atomic sequence stamps the start and the
// end of every operation. Each key has exactly one writer, so its writes are totally ordered and
// their versions (1, 2, 3, ... the value written is the version; a remove is a version too) grow
// with time. After the run, every read is checked:
//   - a value v: the write of v happened (a put, not a remove), began before the read ended, and
//     is not older than the newest write of that key that completed before the read started;
//   - nothing (nullopt): the newest write completed before the read started is a remove, or a
//     remove of that key overlapped the read.
// That is the contract of docs/consistency.md: a read that starts after a write has returned
// never returns the value the write replaced; overlapping reads may see the old or the new value.
// Loads yield at random after reading their row to widen the load-to-fill window, and the readers
// move the manual clock on now and then so TTLs, stale-while-revalidate and XFetch all take part.
//
// Bounded: fixed operation counts (2 writers + 2 readers x 2,000 ops over 8 keys, two cache sizes),
// so the whole case runs in a few seconds under ThreadSanitizer on 2 cores. Tagged [stress].
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "pattern_fixture.hpp"

namespace {

using namespace cachet_patterns;

constexpr int k_keys = 8;
constexpr int k_writers = 2;
constexpr int k_readers = 2;
constexpr int k_ops = 2000;

struct write_rec {
  int version;
  bool removed;
  std::uint64_t start;
  std::uint64_t end;
};

struct read_rec {
  int key;
  std::uint64_t start;
  std::uint64_t end;
  std::optional<int> value;
};

// xorshift64*: a small deterministic generator per thread.
struct rng {
  std::uint64_t s;
  std::uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1DULL;
  }
  int below(int n) { return static_cast<int>(next() % static_cast<std::uint64_t>(n)); }
};

config history_config(std::size_t max_entries) {
  config c;
  c.max_entries = max_entries;
  c.shards = 1;
  // read_through: short TTLs on the manual clock the readers advance, with every refresh path on.
  c.ttl = std::chrono::seconds(8);
  c.negative_ttl = std::chrono::seconds(2);
  c.stale_while_revalidate = std::chrono::seconds(4);
  c.xfetch_beta = 1.0;
  c.seed = 0x5EED + max_entries;
  // write_back: a busy flusher (small batches, 1 ms delay), so loads read what it flushed.
  c.write_back.max_batch = 4;
  c.write_back.max_dirty = 64;
  c.write_back.max_delay = std::chrono::milliseconds(1);
  return c;
}

struct history {
  std::vector<std::vector<write_rec>> writes;  // by key, in version order
  std::vector<read_rec> reads;
  int read_errors = 0;
};

template <class Adapter>
history run_history(std::size_t max_entries, std::uint64_t seed) {
  table t;
  t.set_jitter(true);
  history h;
  h.writes.resize(k_keys);
  for (int k = 0; k < k_keys; ++k) {
    t.store(k, 0);
    h.writes[k].push_back(write_rec{0, false, 0, 0});  // the initial row, version 0
  }
  cachet::manual_clock clock;
  std::atomic<std::uint64_t> seq{1};
  const auto stamp = [&] { return seq.fetch_add(1, std::memory_order_seq_cst); };
  // Pacing, so reads and writes interleave all along instead of one side finishing first on two
  // cores: neither side runs more than k_slack operations per thread ahead of the other. (It
  // cannot deadlock: a writer waits only for reads and a reader only for writes, and both bounds
  // trail their own counts by k_slack.)
  constexpr int k_slack = 16;
  std::atomic<int> writes_done{0}, reads_done{0};
  const auto pace = [](const std::atomic<int>& other, int needed) {
    while (other.load(std::memory_order_relaxed) < needed) std::this_thread::yield();
  };
  std::vector<std::vector<read_rec>> reads(k_readers);
  std::vector<int> errors(k_readers, 0);
  {
    Adapter p(t, clock, history_config(max_entries));
    std::vector<std::thread> threads;
    for (int w = 0; w < k_writers; ++w) {
      // Writer w owns the keys k with k % k_writers == w: only it appends to h.writes[k].
      threads.emplace_back([&, w] {
        rng r{seed * 31 + static_cast<std::uint64_t>(w) + 1};
        constexpr int k_owned = k_keys / k_writers;
        for (int i = 0; i < k_ops; ++i) {
          pace(reads_done, (i - k_slack) * k_readers);
          const int k = w + k_writers * r.below(k_owned);
          auto& log = h.writes[k];
          const int version = log.back().version + 1;
          const bool remove = r.below(8) == 0;
          const std::uint64_t start = stamp();
          if (remove) {
            p.remove(k);
          } else if constexpr (requires { p.write(k, version, std::chrono::seconds(3)); }) {
            if (r.below(4) == 0) {
              p.write(k, version, std::chrono::seconds(3));  // write_back with a TTL
            } else {
              p.write(k, version);
            }
          } else {
            p.write(k, version);
          }
          log.push_back(write_rec{version, remove, start, stamp()});
          writes_done.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
    for (int rd = 0; rd < k_readers; ++rd) {
      threads.emplace_back([&, rd] {
        rng r{seed * 131 + static_cast<std::uint64_t>(rd) + 7};
        auto& log = reads[rd];
        log.reserve(k_ops * 2);
        for (int i = 0; i < k_ops; ++i) {
          pace(writes_done, (i - k_slack) * k_writers);
          if (rd == 0 && i % 32 == 31) clock.advance(std::chrono::seconds(1));
          try {
            if (Adapter::has_bulk && r.below(4) == 0) {
              const int a = r.below(k_keys);
              const int b = (a + 1 + r.below(k_keys - 1)) % k_keys;
              const int keys[] = {a, b};
              const std::uint64_t start = stamp();
              const opt_ints got = p.read_all(keys);
              const std::uint64_t end = stamp();
              log.push_back(read_rec{a, start, end, got.at(0)});
              log.push_back(read_rec{b, start, end, got.at(1)});
            } else {
              const int k = r.below(k_keys);
              const std::uint64_t start = stamp();
              const std::optional<int> got = p.read(k);
              log.push_back(read_rec{k, start, stamp(), got});
            }
          } catch (...) {
            ++errors[rd];
          }
          reads_done.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
    for (auto& th : threads) th.join();
  }
  for (int rd = 0; rd < k_readers; ++rd) {
    h.reads.insert(h.reads.end(), reads[rd].begin(), reads[rd].end());
    h.read_errors += errors[rd];
  }
  return h;
}

// The violations of the contract in `h`, described; empty if there are none.
std::vector<std::string> check(const history& h) {
  std::vector<std::string> out;
  for (const read_rec& rd : h.reads) {
    const std::vector<write_rec>& ws = h.writes[rd.key];
    // The newest write completed before the read started (ends grow with versions: one writer).
    std::size_t newest = 0;
    {
      std::size_t lo = 0, hi = ws.size();  // ws[0].end == 0 < every start
      while (hi - lo > 1) {
        const std::size_t mid = (lo + hi) / 2;
        if (ws[mid].end < rd.start) {
          lo = mid;
        } else {
          hi = mid;
        }
      }
      newest = lo;
    }
    std::string why;
    if (rd.value) {
      const int v = *rd.value;
      if (v < 0 || static_cast<std::size_t>(v) >= ws.size()) {
        why = "a version never written";
      } else if (ws[v].removed) {
        why = "the version of a remove";
      } else if (ws[v].start > rd.end) {
        why = "a write that began after the read ended";
      } else if (static_cast<std::size_t>(v) < newest) {
        why = "a value replaced by a write that completed before the read started";
      }
    } else {
      bool explained = ws[newest].removed;
      for (std::size_t j = newest + 1; !explained && j < ws.size() && ws[j].start < rd.end; ++j) {
        explained = ws[j].removed;
      }
      if (!explained) why = "nothing, though the key was written and not removed since";
    }
    if (!why.empty()) {
      std::ostringstream s;
      s << "key " << rd.key << ", read [" << rd.start << ", " << rd.end << "] got "
        << show(rd.value) << ": " << why << " (newest completed write: version "
        << ws[newest].version << (ws[newest].removed ? " (remove)" : "") << ", ended at "
        << ws[newest].end << ")";
      out.push_back(s.str());
    }
  }
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE(
    "patterns history: no read returns a value older than a write that completed before it "
    "started",
    "[stress][patterns]", CACHET_PATTERN_ADAPTERS) {
  const std::size_t max_entries = GENERATE(std::size_t{4}, std::size_t{6});
  INFO(TestType::name << ", max_entries " << max_entries);
  const history h = run_history<TestType>(max_entries, 0x9E3779B9ULL + max_entries);
  CHECK(h.read_errors == 0);
  std::size_t nulls = 0;
  for (const read_rec& r : h.reads) nulls += r.value ? 0 : 1;
  std::uint64_t last_write = 0;
  for (const auto& ws : h.writes) last_write = std::max(last_write, ws.back().end);
  std::size_t overlapping = 0;  // reads that started while writes were still going on
  for (const read_rec& r : h.reads) overlapping += r.start < last_write ? 1 : 0;
  INFO(h.reads.size() << " reads (" << nulls << " found nothing, " << overlapping
                      << " started before the last write ended)");
  const std::vector<std::string> bad = check(h);
  std::ostringstream first;
  for (std::size_t i = 0; i < bad.size() && i < 5; ++i) first << "\n  " << bad[i];
  INFO(bad.size() << " stale reads; the first:" << first.str());
  CHECK(bad.empty());
}
