// cachet/redis/group_bus.hpp: a tag invalidation or a namespace bump announced by one instance
// reaches another instance's tagged_store / versioned_namespaces through its invalidation
// listener, and only that group goes. Two instances in one process, each with its own listener
// connections to one private redis-server; every wait is for an event, bounded by 5 s.
#include <cachet/namespaces.hpp>
#include <cachet/redis/group_bus.hpp>
#include <cachet/redis/invalidation_listener.hpp>
#include <cachet/sharded_store.hpp>
#include <cachet/tags.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <span>
#include <string>

#include "redis_server.hpp"

namespace {
using namespace std::chrono_literals;
using cachet_test::redis_server;

using pages_store = cachet::sharded_store<std::string, cachet::tagged_value<std::string>>;
using ns_store = cachet::sharded_store<cachet::versioned_key<std::string>, std::string>;

cachet::redis_options conn_for(const redis_server& s) {
  cachet::redis_options o = s.options();
  o.key_prefix = "g:";
  return o;
}

// One service instance: local tagged pages and namespaces, told of groups by its own listener.
struct instance {
  explicit instance(const redis_server& s)
      : groups(conn_for(s)),
        bus(conn_for(s), {},
            {
                .on_keys =
                    [this](std::span<const std::string> names) {
                      for (const std::string& n : names) {
                        if (auto g = groups.group_of(n)) {
                          if (g->kind == cachet::group_kind::tag) {
                            pages.invalidate_tag(g->name);
                          } else {
                            spaces.bump(spaces.open(g->name));
                          }
                          heard(*g);
                        } else {
                          std::lock_guard<std::mutex> l(mu);
                          ++other_keys;
                        }
                      }
                    },
                .on_flush = [this] { clear_all(); },
                .on_state =
                    [this](bool up) {
                      if (!up) clear_all();
                      std::lock_guard<std::mutex> l(mu);
                      this->up = up;
                      cv.notify_all();
                    },
            }) {}

  void clear_all() {
    pages.store().clear();
    spaces.store().clear();
  }
  void heard(const cachet::group_event& g) {
    std::lock_guard<std::mutex> l(mu);
    ++(g.kind == cachet::group_kind::tag ? tags_heard : bumps_heard);
    cv.notify_all();
  }
  int others() {
    std::lock_guard<std::mutex> l(mu);
    return other_keys;
  }
  bool wait_up() {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, 5s, [&] { return up; });
  }
  template <class P>
  bool wait(P p) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, 5s, [&] { return p(*this); });
  }

  cachet::tagged_store<pages_store> pages{pages_store::options_type{.max_entries = 1000}};
  cachet::versioned_namespaces<ns_store> spaces{ns_store::options_type{.max_entries = 1000}};
  cachet::redis_group_bus groups;
  std::mutex mu;
  std::condition_variable cv;
  bool up = false;
  int tags_heard = 0, bumps_heard = 0, other_keys = 0;
  cachet::redis_invalidation_listener bus;  // last: its thread stops first
};
}  // namespace

TEST_CASE("redis_group_bus: group_of reads back what announce writes, and nothing else",
          "[redis][groups]") {
  redis_server server;
  cachet::redis_group_bus groups(conn_for(server));
  CHECK(groups.announce_tag("product:42"));
  CHECK(groups.announce_bump("books"));
  CHECK(server.raw({"EXISTS", "g:__cachet_group__:tag:product:42"}).integer == 1);
  CHECK(server.raw({"TTL", "g:__cachet_group__:ns:books"}).integer == -1);  // no TTL

  const auto tag = groups.group_of("g:__cachet_group__:tag:product:42");
  REQUIRE(tag);
  CHECK(tag->kind == cachet::group_kind::tag);
  CHECK(tag->name == "product:42");
  const auto ns = groups.group_of("g:__cachet_group__:ns:books");
  REQUIRE(ns);
  CHECK(ns->kind == cachet::group_kind::space);
  CHECK(ns->name == "books");
  CHECK_FALSE(groups.group_of("g:user:1"));
  CHECK_FALSE(groups.group_of("other:__cachet_group__:tag:x"));  // another prefix
  CHECK_FALSE(groups.group_of("g:__cachet_group__:what:x"));
}

TEST_CASE("redis_group_bus: a tag or a bump announced by one instance drops the group on another",
          "[redis][groups]") {
  redis_server server;
  instance a(server);
  instance b(server);
  REQUIRE(a.wait_up());
  REQUIRE(b.wait_up());

  // b holds pages of two products and a namespace.
  b.pages.put("/p/42", "kettle", {"product:42"});
  b.pages.put("/p/43", "toaster", {"product:43"});
  auto b_books = b.spaces.open("books");
  auto b_music = b.spaces.open("music");
  b.spaces.put(b_books, "isbn:1", "old");
  b.spaces.put(b_music, "cd:1", "kept");

  a.pages.invalidate_tag("product:42");  // a's own copy, at once
  REQUIRE(a.groups.announce_tag("product:42"));
  REQUIRE(b.wait([](instance& i) { return i.tags_heard >= 1; }));
  CHECK_FALSE(b.pages.get("/p/42"));
  CHECK(b.pages.get("/p/43") == "toaster");

  REQUIRE(a.groups.announce_bump("books"));
  REQUIRE(b.wait([](instance& i) { return i.bumps_heard >= 1; }));
  CHECK_FALSE(b.spaces.get(b_books, "isbn:1"));
  CHECK(b.spaces.get(b_music, "cd:1") == "kept");

  // The announcer hears itself too (no NOLOOP): one more local invalidation, nothing stale.
  REQUIRE(a.wait([](instance& i) { return i.tags_heard >= 1 && i.bumps_heard >= 1; }));
  CHECK(a.others() == 0);
  CHECK(b.others() == 0);
}

TEST_CASE("redis_group_bus: an announcement Redis does not take says so", "[redis][groups]") {
  redis_server server;
  cachet::redis_options o = conn_for(server);
  o.connect_timeout = 200ms;
  o.command_timeout = 200ms;
  cachet::redis_group_bus groups(o);
  server.kill();
  CHECK_FALSE(groups.announce_tag("t"));
  CHECK(groups.markers().stats().connection_errors + groups.markers().stats().timeouts > 0);
}
