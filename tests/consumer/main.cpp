// Minimal program that uses cachet exactly as a downstream project would.
#include <cachet/cachet.hpp>

#include <string>

int main() {
  cachet::sharded_store<std::string, int> s(
      cachet::store_options<std::string, int>{.max_entries = 100});
  s.put("a", 1);
  return s.get("a").value_or(0) == 1 ? 0 : 1;
}
