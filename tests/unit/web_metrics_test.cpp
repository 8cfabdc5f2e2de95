#include "signet/web/metrics.hpp"

#include <catch2/catch.hpp>
#include <limits>
#include <stdexcept>
#include <thread>

using namespace signet::web;

TEST_CASE("metrics render in the Prometheus text format 0.0.4", "[web][unit]") {
    Registry reg;
    auto& requests = reg.counter("app_requests_total", "Requests served.", {"route", "status"});
    auto& depth = reg.gauge("app_queue_depth", "Queued work.");
    requests.with({"keys.sign", "200"}).inc(3);
    requests.with({"keys.list", "404"}).inc();
    depth.with({}).set(2.5);

    CHECK(reg.render() ==
          "# HELP app_requests_total Requests served.\n"
          "# TYPE app_requests_total counter\n"
          "app_requests_total{route=\"keys.list\",status=\"404\"} 1\n"
          "app_requests_total{route=\"keys.sign\",status=\"200\"} 3\n"
          "# HELP app_queue_depth Queued work.\n"
          "# TYPE app_queue_depth gauge\n"
          "app_queue_depth 2.5\n");
}

TEST_CASE("an unlabelled family renders 0 before its first update", "[web][unit]") {
    Registry reg;
    reg.counter("app_started_total", "Starts.");
    CHECK(reg.render() ==
          "# HELP app_started_total Starts.\n# TYPE app_started_total counter\napp_started_total "
          "0\n");
}

TEST_CASE("label values and help text are escaped", "[web][unit]") {
    Registry reg;
    reg.counter("app_x_total", "Help with \\ and\nnewline.", {"v"}).with({"a\"b\\c\nd"}).inc();
    CHECK(reg.render() ==
          "# HELP app_x_total Help with \\\\ and\\nnewline.\n"
          "# TYPE app_x_total counter\n"
          "app_x_total{v=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST_CASE("histograms render cumulative buckets, +Inf, sum and count", "[web][unit]") {
    Registry reg;
    auto& h = reg.histogram("app_latency_seconds", "Latency.", {"route"}, {0.25, 0.5, 1});
    auto& s = h.with({"r"});
    // Binary fractions, so the sum is exact.
    for (const double v : {0.125, 0.25, 0.375, 0.75, 2.0}) s.observe(v);

    CHECK(reg.render() ==
          "# HELP app_latency_seconds Latency.\n"
          "# TYPE app_latency_seconds histogram\n"
          "app_latency_seconds_bucket{route=\"r\",le=\"0.25\"} 2\n"
          "app_latency_seconds_bucket{route=\"r\",le=\"0.5\"} 3\n"
          "app_latency_seconds_bucket{route=\"r\",le=\"1\"} 4\n"
          "app_latency_seconds_bucket{route=\"r\",le=\"+Inf\"} 5\n"
          "app_latency_seconds_sum{route=\"r\"} 3.5\n"
          "app_latency_seconds_count{route=\"r\"} 5\n");
}

TEST_CASE("histogram bounds are sorted, deduplicated and never include +Inf", "[web][unit]") {
    Histogram h({1, 0.5, 1, std::numeric_limits<double>::infinity()});
    CHECK(h.bounds() == std::vector<double>{0.5, 1});
    h.observe(0.5);
    h.observe(std::numeric_limits<double>::quiet_NaN());
    const auto snap = h.snapshot();
    CHECK(snap.cumulative == std::vector<std::uint64_t>{1, 1, 2});
    CHECK(snap.count == 2);
}

TEST_CASE("an unlabelled histogram has only the le label", "[web][unit]") {
    Registry reg;
    reg.histogram("app_h", "H.", {}, {1}).with({}).observe(0.5);
    CHECK(reg.render() ==
          "# HELP app_h H.\n# TYPE app_h histogram\n"
          "app_h_bucket{le=\"1\"} 1\napp_h_bucket{le=\"+Inf\"} 1\napp_h_sum 0.5\napp_h_count 1\n");
}

TEST_CASE("registering a name again returns the same family and a clash throws", "[web][unit]") {
    Registry reg;
    auto& a = reg.counter("app_c_total", "C.", {"x"});
    auto& b = reg.counter("app_c_total", "C.", {"x"});
    CHECK(&a == &b);
    CHECK_THROWS_AS(reg.gauge("app_c_total", "C."), std::invalid_argument);
    CHECK_THROWS_AS(reg.counter("app_c_total", "C.", {"y"}), std::invalid_argument);
    CHECK_THROWS_AS(reg.counter("bad-name", "C."), std::invalid_argument);
    CHECK_THROWS_AS(reg.histogram("app_h2", "H.", {"le"}, {1}), std::invalid_argument);
    CHECK_THROWS_AS(a.with({"1", "2"}), std::invalid_argument);
}

TEST_CASE("concurrent gauge adds and counter increments lose nothing", "[web][unit]") {
    Registry reg;
    auto& g = reg.gauge("app_g", "G.").with({});
    auto& c = reg.counter("app_c_total", "C.").with({});
    constexpr std::uint64_t kThreads = 4;
    constexpr std::uint64_t kPerThread = 10'000;
    std::vector<std::thread> threads;
    for (std::uint64_t t = 0; t < kThreads; ++t) {
        threads.emplace_back([&] {
            for (std::uint64_t i = 0; i < kPerThread; ++i) {
                g.add(0.5);
                c.inc();
            }
        });
    }
    for (auto& t : threads) t.join();
    CHECK(g.value() == static_cast<double>(kThreads * kPerThread) * 0.5);
    CHECK(c.value() == kThreads * kPerThread);
}
