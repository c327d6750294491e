// Test fixture: a private Redis Cluster of three primaries (no replicas), started and always
// killed by RAII.
//
// redis_cluster starts three redis_server::cluster_node()s (free 127.0.0.1 ports), joins them with
// `redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes` (at most 60 s; the test
// FAILS with redis-cli's output otherwise) and waits, at most 30 s, until every node says
// cluster_state:ok and knows all 16384 slots. The servers die with their redis_server objects
// (SIGKILL, also when a test fails); redis-cli is killed if it runs past its bound.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cachet/redis/options.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "redis_server.hpp"

namespace cachet_test {

class redis_cluster {
 public:
  static constexpr std::size_t k_nodes = 3;

  redis_cluster() {
    for (std::size_t i = 0; i < k_nodes; ++i) nodes_.push_back(redis_server::cluster_node());
    create();
    wait_until_ok();
  }

  // Options whose cluster_seeds name the first node only (the map names the others).
  cachet::redis_options options() const {
    cachet::redis_options o;
    o.cluster_seeds = {{"127.0.0.1", nodes_[0]->port()}};
    return o;
  }

  redis_server& node(std::size_t i) { return *nodes_.at(i); }
  std::size_t size() const { return nodes_.size(); }

  std::string id(std::size_t i) const { return nodes_.at(i)->raw({"CLUSTER", "MYID"}).str; }

  // The hash slot of `key`, as the server computes it.
  long long slot_of(const std::string& key) const {
    return nodes_[0]->raw({"CLUSTER", "KEYSLOT", key}).integer;
  }

  // The index of the node serving `slot`, per node 0's view of the map.
  std::size_t owner(long long slot) const {
    const raw_reply map = nodes_[0]->raw({"CLUSTER", "SLOTS"});
    for (const raw_reply& range : map.elements) {
      if (range.elements.size() < 3) continue;
      if (slot < range.elements[0].integer || slot > range.elements[1].integer) continue;
      const long long port = range.elements[2].elements.at(1).integer;
      for (std::size_t i = 0; i < nodes_.size(); ++i) {
        if (nodes_[i]->port() == port) return i;
      }
    }
    FAIL("no node serves slot " << slot);
    return 0;
  }

  // GET `key` on node `i` directly: the value, nil, or a MOVED error if `i` does not serve it.
  raw_reply get_on(std::size_t i, const std::string& key) const {
    return nodes_.at(i)->raw({"GET", key});
  }

  // Moves `slot` from node `from` to node `to` step by step, as redis-cli --cluster reshard does:
  // begin() marks it importing on `to` and migrating on `from`; migrate(keys) moves keys;
  // finish() moves what is left and assigns the slot to `to` on every node.
  void begin_move(long long slot, std::size_t from, std::size_t to) {
    const std::string s = std::to_string(slot);
    REQUIRE(nodes_[to]->raw({"CLUSTER", "SETSLOT", s, "IMPORTING", id(from)}).str == "OK");
    REQUIRE(nodes_[from]->raw({"CLUSTER", "SETSLOT", s, "MIGRATING", id(to)}).str == "OK");
  }
  void migrate(std::size_t from, std::size_t to, const std::vector<std::string>& keys) {
    if (keys.empty()) return;
    std::vector<std::string> args{
        "MIGRATE", "127.0.0.1", std::to_string(nodes_[to]->port()), "", "0", "5000", "KEYS"};
    args.insert(args.end(), keys.begin(), keys.end());
    const raw_reply r = nodes_[from]->raw(args);
    REQUIRE((r.str == "OK" || r.str == "NOKEY"));
  }
  void finish_move(long long slot, std::size_t from, std::size_t to) {
    const std::string s = std::to_string(slot);
    for (int round = 0; round < 1000; ++round) {
      const raw_reply left = nodes_[from]->raw({"CLUSTER", "GETKEYSINSLOT", s, "100"});
      if (left.elements.empty()) break;
      std::vector<std::string> keys;
      for (const raw_reply& k : left.elements) keys.push_back(k.str);
      migrate(from, to, keys);
    }
    // The new owner first, then the old one (it stops serving the slot), then the rest.
    REQUIRE(nodes_[to]->raw({"CLUSTER", "SETSLOT", s, "NODE", id(to)}).str == "OK");
    REQUIRE(nodes_[from]->raw({"CLUSTER", "SETSLOT", s, "NODE", id(to)}).str == "OK");
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      if (i != from && i != to) nodes_[i]->raw({"CLUSTER", "SETSLOT", s, "NODE", id(to)});
    }
  }

 private:
  void create() {
    std::vector<std::string> args{"redis-cli", "--cluster", "create"};
    for (const auto& n : nodes_)
      args.push_back(std::string("127.0.0.1:") + std::to_string(n->port()));
    args.insert(args.end(), {"--cluster-replicas", "0", "--cluster-yes"});
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    char log_name[] = "/tmp/cachet-redis-cli-XXXXXX";
    const int log = ::mkstemp(log_name);
    REQUIRE(log >= 0);
    ::unlink(log_name);  // the descriptor keeps it readable
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::dup2(log, 1);
      ::dup2(log, 2);
      const int devnull = ::open("/dev/null", O_RDONLY);
      if (devnull >= 0) ::dup2(devnull, 0);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    int status = 0;
    bool exited = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        exited = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!exited) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
    }
    std::string output(4096, '\0');
    const ssize_t n = ::pread(log, output.data(), output.size(), 0);
    output.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    ::close(log);
    if (!exited || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      FAIL("redis-cli --cluster create failed" << (exited ? "" : " (killed after 60 s)")
                                               << "; its output:\n"
                                               << output);
    }
  }

  void wait_until_ok() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      bool ok = true;
      for (const auto& n : nodes_) {
        const std::string info = n->raw({"CLUSTER", "INFO"}).str;
        ok = ok && info.find("cluster_state:ok") != std::string::npos &&
             info.find("cluster_slots_assigned:16384") != std::string::npos &&
             info.find("cluster_known_nodes:3") != std::string::npos;
      }
      if (ok) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL("the cluster did not reach cluster_state:ok within 30 s");
  }

  std::vector<std::unique_ptr<redis_server>> nodes_;
};

}  // namespace cachet_test
