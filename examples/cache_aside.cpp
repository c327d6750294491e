// cache-aside with stampede defence: 32 threads miss one cold key, the database sees one query;
// then a write + invalidate, and the next read loads the new row.
// (An in-memory map stands in for the database here; it counts the queries it serves.)
#include <atomic>
#include <cachet/cachet.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

struct user {
  int id;
  std::string name;
};

class user_db {
 public:
  std::optional<user> find(int id) {
    ++queries_;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a slow query
    std::lock_guard<std::mutex> g(mu_);
    auto it = rows_.find(id);
    if (it == rows_.end()) return std::nullopt;
    return user{id, it->second};
  }
  void rename(int id, std::string name) {
    std::lock_guard<std::mutex> g(mu_);
    rows_[id] = std::move(name);
  }
  int queries() const { return queries_; }

 private:
  std::mutex mu_;
  std::map<int, std::string> rows_{{42, "Ada"}};
  std::atomic<int> queries_{0};
};

}  // namespace

int main() {
  user_db db;
  cachet::cache_aside<cachet::sharded_store<int, user>> users(cachet::store_options<int, user>{
      .max_entries = 10'000, .default_ttl = std::chrono::minutes(5)});
  auto load = [&](int id) { return db.find(id); };

  std::vector<std::thread> threads;
  std::atomic<int> served{0};
  for (int t = 0; t < 32; ++t) {
    threads.emplace_back([&] {
      if (auto u = users.get_or_load(42, load); u && u->name == "Ada") ++served;
    });
  }
  for (auto& th : threads) th.join();
  std::printf("32 concurrent reads of a cold key: %d served, %d database queries\n", served.load(),
              db.queries());

  db.rename(42, "Ada Lovelace");  // write the database first...
  users.invalidate(42);           // ...then invalidate: never set the cache on a write
  const auto u = users.get_or_load(42, load);
  std::printf("after rename + invalidate: %s (%d queries in all)\n", u ? u->name.c_str() : "-",
              db.queries());
  return served == 32 && db.queries() == 2 && u && u->name == "Ada Lovelace" ? 0 : 1;
}
