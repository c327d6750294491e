// The README's example, compiled so that it cannot rot. Exits non-zero if the store misbehaves.
#include <cachet/cachet.hpp>

#include <chrono>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

int main() {
  using namespace std::chrono_literals;
  cachet::sharded_store<std::string, std::string, cachet::lru> users({
      .max_entries = 100'000,
      .on_removal = [](const std::string& key, const std::string&, cachet::removal_cause why) {
        std::cout << "removed " << key << " (" << cachet::to_string(why) << ")\n";  // no lock held
      },
  });
  users.put("user:42", "Ada Lovelace", 5min);        // expires 5 minutes from now
  const std::string_view key = "user:42";            // lookups build no temporary std::string
  std::optional<std::string> name = users.get(key);  // a copy of the value, or std::nullopt
  std::cout << key << " -> " << name.value_or("(miss)") << "\n";
  users.erase(key);                                  // the listener prints "removed user:42"
  const bool gone = !users.get(key);                 // a miss now
  const cachet::cache_stats st = users.stats();
  std::cout << "hits " << st.hits << ", misses " << st.misses << ", hit ratio "
            << 100 * st.hit_ratio() << " %\n";
  return name == "Ada Lovelace" && gone && st.hits == 1 && st.misses == 1 ? 0 : 1;
}
