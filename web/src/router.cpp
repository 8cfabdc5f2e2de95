#include "signet/web/router.hpp"

#include <algorithm>
#include <stdexcept>
#include <string_view>

namespace signet::web {
namespace {

// Splits "/a/{b}/c" into {"a", "{b}", "c"} without allocating the pieces; "/" gives {""}.
// Empty segments are kept so that "/v1/keys" and "/v1/keys/" stay distinct paths.
std::vector<std::string_view> split_path(std::string_view path) {
    std::vector<std::string_view> out;
    if (path.empty() || path.front() != '/') return out;
    path.remove_prefix(1);
    for (;;) {
        const auto slash = path.find('/');
        out.push_back(path.substr(0, slash));
        if (slash == std::string_view::npos) break;
        path.remove_prefix(slash + 1);
    }
    return out;
}

bool is_param(std::string_view segment) noexcept {
    return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

std::string_view param_name(std::string_view segment) noexcept {
    return segment.substr(1, segment.size() - 2);
}

// True when `pattern` matches `path` segment by segment; parameters need a non-empty segment.
bool segments_match(const std::vector<std::string_view>& pattern,
                    const std::vector<std::string_view>& path) noexcept {
    if (pattern.size() != path.size()) return false;
    for (std::size_t i = 0; i < pattern.size(); ++i) {
        if (is_param(pattern[i])) {
            if (path[i].empty()) return false;
        } else if (pattern[i] != path[i]) {
            return false;
        }
    }
    return true;
}

// Specificity order between two patterns that match the same path: at the first segment where one
// is literal and the other a parameter, the literal wins ("/keys/export" beats "/keys/{id}").
bool more_specific(const std::vector<std::string_view>& a, const std::vector<std::string_view>& b) {
    for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
        const bool pa = is_param(a[i]);
        const bool pb = is_param(b[i]);
        if (pa != pb) return !pa;
    }
    return false;
}

void validate(const Route& r, const std::vector<Route>& existing) {
    if (r.method.empty()) throw std::invalid_argument("route without a method: " + r.pattern);
    if (!r.handler) throw std::invalid_argument("route without a handler: " + r.pattern);
    const auto segments = split_path(r.pattern);
    if (segments.empty())
        throw std::invalid_argument("route pattern must start with '/': " + r.pattern);
    for (const auto s : segments) {
        const bool has_brace = s.find_first_of("{}") != std::string_view::npos;
        if (has_brace &&
            (!is_param(s) || param_name(s).find_first_of("{}") != std::string_view::npos)) {
            throw std::invalid_argument("a {parameter} must be a whole segment: " + r.pattern);
        }
    }
    for (const auto& e : existing) {
        if (e.method == r.method && e.pattern == r.pattern) {
            throw std::invalid_argument("duplicate route " + r.method + " " + r.pattern);
        }
    }
}

}  // namespace

void Router::add(Route r) {
    validate(r, routes_);
    routes_.push_back(std::move(r));
}

RouteMatch Router::match(Request& req) const {
    RouteMatch m;
    const auto path = split_path(req.path);
    std::vector<std::string_view> best_segments;
    for (const auto& r : routes_) {
        auto segments = split_path(r.pattern);
        if (!segments_match(segments, path)) continue;
        m.path_matched = true;
        if (std::find(m.allowed.begin(), m.allowed.end(), r.method) == m.allowed.end()) {
            m.allowed.push_back(r.method);
        }
        if (r.method != req.method) continue;
        if (m.route == nullptr || more_specific(segments, best_segments)) {
            m.route = &r;
            best_segments = std::move(segments);
        }
    }
    req.params.clear();
    if (m.route != nullptr) {
        for (std::size_t i = 0; i < best_segments.size(); ++i) {
            if (is_param(best_segments[i])) {
                req.params[std::string(param_name(best_segments[i]))] = std::string(path[i]);
            }
        }
    }
    return m;
}

}  // namespace signet::web
