#include "signet/web/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace signet::web {
namespace {

// Lock-free add for atomic<double> (fetch_add on floating atomics is C++20 but not lock-free on
// every target; a CAS loop is, and contention here is low).
void atomic_add(std::atomic<double>& a, double d) noexcept {
    double cur = a.load(std::memory_order_relaxed);
    while (!a.compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
    }
}

// Prometheus (Go ParseFloat) accepts the shortest round-trip form and "+Inf", "-Inf", "NaN".
void append_number(std::string& out, double v) {
    if (std::isnan(v)) {
        out += "NaN";
    } else if (std::isinf(v)) {
        out += v > 0 ? "+Inf" : "-Inf";
    } else {
        char buf[32];
        const auto r = std::to_chars(buf, buf + sizeof buf, v);
        out.append(buf, r.ptr);
    }
}

void append_number(std::string& out, std::uint64_t v) { out += std::to_string(v); }

// Text format 0.0.4: label values escape backslash, double quote and line feed.
void append_label_value(std::string& out, const std::string& v) {
    for (const char c : v) {
        switch (c) {
            case '\\': out += "\\\\"; break;
            case '"': out += "\\\""; break;
            case '\n': out += "\\n"; break;
            default: out += c;
        }
    }
}

// HELP text escapes backslash and line feed only.
void append_help(std::string& out, const std::string& help) {
    for (const char c : help) {
        switch (c) {
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            default: out += c;
        }
    }
}

// `{a="x",b="y"}` plus an optional trailing `le` label; nothing when there are no labels at all.
void append_labels(std::string& out, const std::vector<std::string>& names,
                   const std::vector<std::string>& values, const std::string* le = nullptr) {
    if (names.empty() && le == nullptr) return;
    out += '{';
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (i != 0) out += ',';
        out += names[i];
        out += "=\"";
        append_label_value(out, values[i]);
        out += '"';
    }
    if (le != nullptr) {
        if (!names.empty()) out += ',';
        out += "le=\"";
        out += *le;
        out += '"';
    }
    out += '}';
}

bool valid_name(const std::string& s, bool allow_colon) {
    if (s.empty()) return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                           (allow_colon && c == ':');
        const bool digit = c >= '0' && c <= '9';
        if (!alpha && !(digit && i > 0)) return false;
    }
    return true;
}

template <class Metric>
void render_series(std::string& out, const std::string& name, const std::vector<std::string>& names,
                   const std::vector<std::string>& values, const Metric& m) {
    out += name;
    append_labels(out, names, values);
    out += ' ';
    append_number(out, m.value());
    out += '\n';
}

void render_series(std::string& out, const std::string& name, const std::vector<std::string>& names,
                   const std::vector<std::string>& values, const Histogram& h) {
    const auto snap = h.snapshot();
    const auto& bounds = h.bounds();
    for (std::size_t i = 0; i < snap.cumulative.size(); ++i) {
        std::string le;
        append_number(le, i < bounds.size() ? bounds[i] : std::numeric_limits<double>::infinity());
        out += name;
        out += "_bucket";
        append_labels(out, names, values, &le);
        out += ' ';
        append_number(out, snap.cumulative[i]);
        out += '\n';
    }
    out += name;
    out += "_sum";
    append_labels(out, names, values);
    out += ' ';
    append_number(out, snap.sum);
    out += '\n';
    out += name;
    out += "_count";
    append_labels(out, names, values);
    out += ' ';
    append_number(out, snap.count);
    out += '\n';
}

}  // namespace

void Gauge::add(double d) noexcept { atomic_add(v_, d); }

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
    // +Inf is implicit (always the last bucket); NaN bounds make no sense.
    std::erase_if(bounds_, [](double b) { return std::isnan(b) || std::isinf(b); });
    std::sort(bounds_.begin(), bounds_.end());
    bounds_.erase(std::unique(bounds_.begin(), bounds_.end()), bounds_.end());
    buckets_ = std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1);
}

void Histogram::observe(double v) noexcept {
    // Bucket i counts observations with bounds_[i-1] < v <= bounds_[i] (Prometheus `le`); NaN
    // lands in +Inf so that the +Inf bucket always equals the count.
    const auto idx =
        std::isnan(v) ? bounds_.size()
                      : static_cast<std::size_t>(
                            std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
    buckets_[idx].fetch_add(1, std::memory_order_relaxed);
    atomic_add(sum_, v);
    count_.fetch_add(1, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
    Snapshot s;
    s.cumulative.reserve(bounds_.size() + 1);
    std::uint64_t running = 0;
    for (std::size_t i = 0; i <= bounds_.size(); ++i) {
        running += buckets_[i].load(std::memory_order_relaxed);
        s.cumulative.push_back(running);
    }
    // The count is the +Inf bucket, so a scrape racing with observe() stays self-consistent.
    s.count = running;
    s.sum = sum_.load(std::memory_order_relaxed);
    return s;
}

template <class Metric>
Family<Metric>::Family(std::string name, std::string help, std::vector<std::string> label_names,
                       std::vector<double> buckets)
    : name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      buckets_(std::move(buckets)) {
    if (!valid_name(name_, true)) throw std::invalid_argument("bad metric name: " + name_);
    for (const auto& l : label_names_) {
        const bool reserved =
            l.starts_with("__") || (std::is_same_v<Metric, Histogram> && l == "le");
        if (!valid_name(l, false) || reserved) {
            throw std::invalid_argument("bad label name '" + l + "' on " + name_);
        }
    }
    // A family without labels has exactly one series: make it exist so it renders as 0.
    if (label_names_.empty()) with({});
}

template <class Metric>
Metric& Family<Metric>::with(const std::vector<std::string>& label_values) {
    if (label_values.size() != label_names_.size()) {
        throw std::invalid_argument("wrong number of label values for " + name_);
    }
    std::lock_guard lock(mu_);
    auto& slot = series_[label_values];
    if (!slot) {
        if constexpr (std::is_same_v<Metric, Histogram>) {
            slot = std::make_unique<Histogram>(buckets_);
        } else {
            slot = std::make_unique<Metric>();
        }
    }
    return *slot;
}

template <class Metric>
void Family<Metric>::render(std::string& out, const char* type) const {
    out += "# HELP ";
    out += name_;
    out += ' ';
    append_help(out, help_);
    out += "\n# TYPE ";
    out += name_;
    out += ' ';
    out += type;
    out += '\n';
    std::lock_guard lock(mu_);
    for (const auto& [values, metric] : series_) {
        render_series(out, name_, label_names_, values, *metric);
    }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

Family<Counter>& Registry::counter(const std::string& name, const std::string& help,
                                   std::vector<std::string> labels) {
    return add_family(counters_, 'c', name, help, std::move(labels), {});
}

Family<Gauge>& Registry::gauge(const std::string& name, const std::string& help,
                               std::vector<std::string> labels) {
    return add_family(gauges_, 'g', name, help, std::move(labels), {});
}

Family<Histogram>& Registry::histogram(const std::string& name, const std::string& help,
                                       std::vector<std::string> labels,
                                       std::vector<double> buckets) {
    return add_family(histograms_, 'h', name, help, std::move(labels), std::move(buckets));
}

template <class Metric>
Family<Metric>& Registry::add_family(std::deque<Family<Metric>>& families, char kind,
                                     const std::string& name, const std::string& help,
                                     std::vector<std::string> labels, std::vector<double> buckets) {
    std::lock_guard lock(mu_);
    for (const auto& [k, i] : order_) {
        if (family_name(k, i) != name) continue;
        if (k != kind) throw std::invalid_argument("metric registered with another type: " + name);
        auto& f = families[i];
        if (f.label_names() != labels) {
            throw std::invalid_argument("metric registered with other labels: " + name);
        }
        return f;
    }
    families.emplace_back(name, help, std::move(labels), std::move(buckets));
    order_.emplace_back(kind, families.size() - 1);
    return families.back();
}

const std::string& Registry::family_name(char kind, std::size_t i) const {
    switch (kind) {
        case 'c': return counters_[i].name();
        case 'g': return gauges_[i].name();
        default: return histograms_[i].name();
    }
}

std::string Registry::render() const {
    std::string out;
    std::lock_guard lock(mu_);
    for (const auto& [kind, i] : order_) {
        switch (kind) {
            case 'c': counters_[i].render(out, "counter"); break;
            case 'g': gauges_[i].render(out, "gauge"); break;
            default: histograms_[i].render(out, "histogram"); break;
        }
    }
    return out;
}

std::vector<double> latency_buckets() {
    return {0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
            0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

}  // namespace signet::web
