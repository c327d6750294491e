// XFetch keeping a hot key warm, over SQLite as the source of truth.
//
// Four threads read one hot product for ten TTL periods of simulated time: a manual clock that a
// std::barrier moves 5 ms after every round of reads (25 per thread), and that every database
// query moves by the 10 ms it "takes". With XFetch (xfetch_beta = 1), shortly before the product
// expires one reader refreshes it while the others keep reading the cached row, so after the first
// (cold) read no read waits for the database. Without it (xfetch_beta = 0) every expiry makes a
// read miss and wait for the query, with whichever readers arrive meanwhile (in real time the
// query is instantaneous here, so few do; bench/stampede_bench.cpp measures the real herd).
//
// The checks do not depend on timing or on how the threads interleave: they are the library's
// counting identities, plus "no read missed after the cold one", which with XFetch fails only if
// the refresh is drawn later than two query times before expiry. Each read draws it with
// probability exp(-gap / 10 ms), and ~100 reads per 5 ms round would all have to decline it from
// 200 ms down to 20 ms before expiry: a probability under 1e-9 per period.
#include <sqlite3.h>

#include <atomic>
#include <barrier>
#include <cachet/cachet.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

struct product {
  std::string name;
  int price_cents = 0;
};

// One in-memory connection shared by the threads, serialized by a mutex. Each query advances the
// shared manual clock by its simulated duration and is counted.
class products_db {
 public:
  explicit products_db(cachet::manual_clock clock) : clock_(clock) {
    if (sqlite3_open(":memory:", &db_) != SQLITE_OK) throw std::runtime_error(sqlite3_errmsg(db_));
    check(sqlite3_exec(db_,
                       "CREATE TABLE products(id INTEGER PRIMARY KEY, name TEXT, price_cents INT);"
                       "INSERT INTO products VALUES (7, 'espresso', 250), (8, 'latte', 380);",
                       nullptr, nullptr, nullptr));
    check(sqlite3_prepare_v2(db_, "SELECT name, price_cents FROM products WHERE id = ?", -1, &find_,
                             nullptr));
  }
  ~products_db() {
    sqlite3_finalize(find_);
    sqlite3_close(db_);
  }
  std::optional<product> find(int id) {
    std::lock_guard<std::mutex> g(mu_);
    ++queries_;
    clock_.advance(10ms);  // the query's simulated duration: XFetch's delta
    check(sqlite3_bind_int(find_, 1, id));
    const int rc = sqlite3_step(find_);
    std::optional<product> p;
    if (rc == SQLITE_ROW) {
      p = product{reinterpret_cast<const char*>(sqlite3_column_text(find_, 0)),
                  sqlite3_column_int(find_, 1)};
    }
    sqlite3_reset(find_);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) throw std::runtime_error(sqlite3_errmsg(db_));
    return p;
  }
  int queries() const { return queries_; }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK) throw std::runtime_error(sqlite3_errmsg(db_));
  }
  cachet::manual_clock clock_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* find_ = nullptr;
  std::mutex mu_;
  std::atomic<int> queries_{0};
};

struct outcome {
  int queries = 0, wrong_reads = 0;
  cachet::read_through_stats stats;
};

outcome read_hot_product(double xfetch_beta) {
  constexpr int k_threads = 4, k_reads_per_round = 25, k_rounds = 400;  // 400 x 5 ms = 10 TTLs
  cachet::manual_clock clock;
  products_db db(clock);
  auto load = [&db](const int& id) { return db.find(id); };
  cachet::read_through<cachet::sharded_store<int, product, cachet::lru, cachet::manual_clock>,
                       decltype(load)>
      products({.max_entries = 1'000, .ttl = 200ms, .xfetch_beta = xfetch_beta, .seed = 42}, load,
               clock);

  std::atomic<int> wrong{0};
  auto read = [&] {
    const std::optional<product> p = products.get(7);
    wrong += !p || p->name != "espresso" || p->price_cents != 250;
  };
  read();  // the cold read: one query, one miss
  std::barrier round_done(k_threads, [&]() noexcept { clock.advance(5ms); });
  std::vector<std::thread> readers;
  for (int t = 0; t < k_threads; ++t) {
    readers.emplace_back([&] {
      for (int r = 0; r < k_rounds; ++r) {
        for (int i = 0; i < k_reads_per_round; ++i) read();
        round_done.arrive_and_wait();
      }
    });
  }
  for (auto& th : readers) th.join();
  return {db.queries(), wrong.load(), products.stats()};
}

void print(const char* what, const outcome& o) {
  std::printf(
      "%-18s %3d queries: %3llu early refreshes, %3llu misses (%3llu waited for another "
      "reader's query, %3llu found it just done), %llu reads\n",
      what, o.queries, static_cast<unsigned long long>(o.stats.early_refreshes),
      static_cast<unsigned long long>(o.stats.misses),
      static_cast<unsigned long long>(o.stats.loads.coalesced),
      static_cast<unsigned long long>(o.stats.loads.answered),
      static_cast<unsigned long long>(o.stats.hits + o.stats.misses));
}

}  // namespace

int main() {
  const outcome with = read_hot_product(1.0);
  const outcome without = read_hot_product(0.0);
  print("xfetch_beta = 1:", with);
  print("xfetch_beta = 0:", without);

  // With XFetch: only the cold read missed; every other query was an early refresh; the product
  // never expired, so it was refreshed at least once per TTL + query time (2.01 s / 210 ms).
  const bool warm = with.stats.misses == 1 && with.stats.loads.coalesced == 0 &&
                    with.queries == 1 + static_cast<int>(with.stats.early_refreshes) &&
                    with.stats.early_refreshes >= 9;
  // Without: no early refresh; every query came from a miss, and every miss ran a query, waited
  // for one, or found the value another reader's query had just cached; the product expired and
  // was reloaded.
  const bool cold = without.stats.early_refreshes == 0 &&
                    without.stats.misses == static_cast<std::uint64_t>(without.queries) +
                                                without.stats.loads.coalesced +
                                                without.stats.loads.answered &&
                    without.queries > 1;
  const bool correct = with.wrong_reads == 0 && without.wrong_reads == 0;
  if (!warm || !cold || !correct)
    std::printf("FAILED: warm %d, cold %d, correct %d\n", warm, cold, correct);
  return warm && cold && correct ? 0 : 1;
}
