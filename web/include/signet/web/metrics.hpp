// A small Prometheus registry: counters, gauges and histograms with fixed label names, rendered in
// the text exposition format (version 0.0.4). Thread-safe; updates are lock-free after the first
// use of a label combination.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace signet::web {

class Counter {
public:
    void inc(std::uint64_t n = 1) noexcept { v_.fetch_add(n, std::memory_order_relaxed); }
    [[nodiscard]] std::uint64_t value() const noexcept {
        return v_.load(std::memory_order_relaxed);
    }

private:
    std::atomic<std::uint64_t> v_{0};
};

class Gauge {
public:
    void set(double v) noexcept { v_.store(v, std::memory_order_relaxed); }
    void add(double d) noexcept;
    [[nodiscard]] double value() const noexcept { return v_.load(std::memory_order_relaxed); }

private:
    std::atomic<double> v_{0};
};

class Histogram {
public:
    explicit Histogram(std::vector<double> upper_bounds);
    void observe(double v) noexcept;
    [[nodiscard]] const std::vector<double>& bounds() const noexcept { return bounds_; }
    // Cumulative counts per bound (+Inf last), sum and count, for rendering.
    struct Snapshot {
        std::vector<std::uint64_t> cumulative;
        double sum = 0;
        std::uint64_t count = 0;
    };
    [[nodiscard]] Snapshot snapshot() const;

private:
    std::vector<double> bounds_;
    std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;  // bounds_.size() + 1
    std::atomic<double> sum_{0};
    std::atomic<std::uint64_t> count_{0};
};

// Families own their series; references returned by with() stay valid for the registry's life.
template <class Metric>
class Family {
public:
    Family(std::string name, std::string help, std::vector<std::string> label_names,
           std::vector<double> buckets = {});
    // The series for these label values (same order as label_names), created on first use. A wrong
    // number of values throws std::invalid_argument (a bug). Label values are escaped on render.
    Metric& with(const std::vector<std::string>& label_values);
    [[nodiscard]] const std::string& name() const noexcept { return name_; }
    [[nodiscard]] const std::vector<std::string>& label_names() const noexcept {
        return label_names_;
    }
    // Appends HELP, TYPE and one line per series (histograms: _bucket, _sum, _count).
    void render(std::string& out, const char* type) const;

private:
    std::string name_, help_;
    std::vector<std::string> label_names_;
    std::vector<double> buckets_;
    mutable std::mutex mu_;
    std::map<std::vector<std::string>, std::unique_ptr<Metric>> series_;  // guarded by mu_
};

// Registering a name again returns the existing family when type and label names agree (so two
// servers can share a registry); a clash throws std::invalid_argument (a bug). Names must be valid
// Prometheus metric and label names.
class Registry {
public:
    Family<Counter>& counter(const std::string& name, const std::string& help,
                             std::vector<std::string> labels = {});
    Family<Gauge>& gauge(const std::string& name, const std::string& help,
                         std::vector<std::string> labels = {});
    Family<Histogram>& histogram(const std::string& name, const std::string& help,
                                 std::vector<std::string> labels, std::vector<double> buckets);
    // Prometheus text format, families in registration order.
    [[nodiscard]] std::string render() const;

private:
    template <class Metric>
    Family<Metric>& add_family(std::deque<Family<Metric>>& families, char kind,
                               const std::string& name, const std::string& help,
                               std::vector<std::string> labels, std::vector<double> buckets);
    [[nodiscard]] const std::string& family_name(char kind, std::size_t index) const;

    mutable std::mutex mu_;
    std::deque<Family<Counter>> counters_;  // deque: references stay valid
    std::deque<Family<Gauge>> gauges_;
    std::deque<Family<Histogram>> histograms_;
    std::vector<std::pair<char, std::size_t>> order_;  // ('c'|'g'|'h', index), guarded by mu_
};

// Default latency buckets in seconds (0.25 ms .. 10 s).
[[nodiscard]] std::vector<double> latency_buckets();

}  // namespace signet::web
