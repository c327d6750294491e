// Group invalidation and tenants: a product catalogue cached per page, where a price change must
// drop every page that shows the product (tags), a redeploy drops a whole namespace (versioned
// namespaces), and two shops share one cache without reading or evicting each other (tenants).
// Checks what it prints and exits 1 if anything is off; the last lines are the exported metrics.
#include <cachet/eviction/no_eviction.hpp>
#include <cachet/metrics.hpp>
#include <cachet/namespaces.hpp>
#include <cachet/sharded_store.hpp>
#include <cachet/tags.hpp>
#include <cachet/tenants.hpp>
#include <cstdio>
#include <string>

namespace {
int failures = 0;
void expect(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++failures;
}
std::string page(const char* prefix, int i) {
  std::string s = prefix;
  s.append(std::to_string(i));
  return s;
}
}  // namespace

int main() {
  // Tags: each rendered page carries the products it shows and its category.
  using pages_store = cachet::sharded_store<std::string, cachet::tagged_value<std::string>>;
  cachet::tagged_store<pages_store> pages(pages_store::options_type{.max_entries = 10'000});
  pages.put("/product/42", "<h1>Kettle</h1>", {"product:42", "category:kitchen"});
  pages.put("/product/43", "<h1>Toaster</h1>", {"product:43", "category:kitchen"});
  pages.put("/category/kitchen", "<ul>42 43</ul>",
            {"category:kitchen", "product:42", "product:43"});
  pages.put("/", "<home>");
  const std::size_t dropped = pages.invalidate_tag("product:42");  // the kettle's price changed
  std::printf("price of product 42 changed: %zu pages dropped\n", dropped);
  expect(dropped == 2, "the product page and the category page, nothing else");
  expect(!pages.get("/product/42") && !pages.get("/category/kitchen"), "both are misses now");
  expect(pages.get("/product/43") && pages.get("/"), "the toaster page and the home page stay");

  // Versioned namespaces: a deploy changes every template, so every page of the old one goes.
  using ns_store = cachet::sharded_store<cachet::versioned_key<std::string>, std::string>;
  cachet::versioned_namespaces<ns_store> rendered(ns_store::options_type{.max_entries = 10'000});
  auto site = rendered.open("site");
  for (int i = 0; i < 100; ++i) rendered.put(site, page("/p/", i), "old template");
  rendered.bump(site);  // O(1), however many pages
  expect(!rendered.get(site, "/p/7"), "after the deploy's bump, an old page is unreachable");

  // Tenants: two shops in one store; the busy one floods, the quiet one keeps its entries.
  using shop_store =
      cachet::sharded_store<cachet::tenant_key<std::string>, std::string, cachet::no_eviction>;
  cachet::tenant_store<shop_store> shops(shop_store::options_type{.max_entries = 2'000});
  auto quiet = shops.open("quiet-shop", {.max_entries = 500});
  auto busy = shops.open("busy-shop", {.max_entries = 1'000});
  quiet.put("/cart", "quiet's cart");
  for (int i = 0; i < 20'000; ++i) busy.put(page("/item/", i), "busy's item");
  expect(!busy.get("/cart"), "the busy shop cannot see the quiet shop's /cart");
  expect(quiet.get("/cart") == "quiet's cart", "the quiet shop's entry survived the flood");
  expect(busy.size() <= 1'000, "the busy shop stays within its quota");
  std::printf("busy shop: %llu quota evictions, %zu entries\n",
              static_cast<unsigned long long>(busy.stats().quota_evictions), busy.size());

  cachet::metrics_registry metrics;
  metrics.add("pages", pages);
  metrics.add("shops", shops);
  const std::string text = metrics.prometheus_text();
  for (const char* family : {"cachet_tag_invalidations_total{cache=\"pages\"} 1",
                             "cachet_tenant_entries{cache=\"shops\",tenant=\"quiet-shop\"} 1"}) {
    expect(text.find(family) != std::string::npos, family);
  }
  std::printf("\n%s", text.c_str());
  return failures == 0 ? 0 : 1;
}
