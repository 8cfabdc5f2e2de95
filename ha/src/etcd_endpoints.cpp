// parse_endpoints: the endpoint list of the configuration ("name=https://10.0.0.2:2379,...").
#include <algorithm>
#include <cctype>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "signet/ha/etcd_coordinator.hpp"

namespace signet::ha {
namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

bool valid_host_name(std::string_view host) {
    return !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-';
    });
}

bool valid_ipv6_text(std::string_view host) {
    return host.find(':') != std::string_view::npos &&
           std::all_of(host.begin(), host.end(), [](char c) {
               return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
           });
}

bool valid_member_name(std::string_view name) {
    return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    });
}

struct Parsed {
    EtcdEndpoint endpoint;
    bool tls = false;
};

// Why `entry` is not "[name=]scheme://host[:port][/]"; empty when it is.
std::string parse_entry(std::string_view entry, Parsed& out) {
    const auto scheme_end = entry.find("://");
    if (scheme_end == std::string_view::npos) return "missing scheme (want http:// or https://)";
    std::string_view head = entry.substr(0, scheme_end);
    if (const auto eq = head.find('='); eq != std::string_view::npos) {
        const auto name = trim(head.substr(0, eq));
        if (!valid_member_name(name)) {
            return "bad member name (letters, digits, '-', '_', '.')";
        }
        out.endpoint.name = std::string(name);
        head = trim(head.substr(eq + 1));
    }
    if (head == "http") {
        out.tls = false;
    } else if (head == "https") {
        out.tls = true;
    } else {
        return "unsupported scheme '" + std::string(head) + "' (want http:// or https://)";
    }

    std::string_view rest = entry.substr(scheme_end + 3);
    const auto slash = rest.find('/');
    if (slash != std::string_view::npos) {
        if (rest.substr(slash) != "/") return "a path is not allowed";
        rest = rest.substr(0, slash);
    }
    if (rest.find('@') != std::string_view::npos) return "user information is not allowed";

    std::string_view host;
    std::string_view port;
    if (!rest.empty() && rest.front() == '[') {
        const auto close = rest.find(']');
        if (close == std::string_view::npos) return "unterminated '[' in IPv6 address";
        host = rest.substr(1, close - 1);
        if (!valid_ipv6_text(host)) return "bad IPv6 address";
        const auto after = rest.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') return "junk after IPv6 address";
            port = after.substr(1);
            if (port.empty()) return "empty port";
        }
    } else {
        const auto colon = rest.rfind(':');
        host = rest.substr(0, colon);
        if (colon != std::string_view::npos) {
            port = rest.substr(colon + 1);
            if (port.empty()) return "empty port";
        }
        if (host.empty()) return "missing host";
        if (!valid_host_name(host)) return "bad host '" + std::string(host) + "'";
    }
    out.endpoint.host = std::string(host);
    if (!port.empty()) {
        if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) {
                return std::isdigit(static_cast<unsigned char>(c));
            })) {
            return "bad port '" + std::string(port) + "'";
        }
        const int value = std::stoi(std::string(port));
        if (value < 1 || value > 65535) return "port out of range (1-65535)";
        out.endpoint.port = static_cast<std::uint16_t>(value);
    }
    if (out.endpoint.name.empty()) {
        // Names default to host:port so logs can still tell members apart.
        out.endpoint.name =
            (out.endpoint.host.find(':') != std::string::npos ? "[" + out.endpoint.host + "]"
                                                              : out.endpoint.host) +
            ":" + std::to_string(out.endpoint.port);
    }
    return {};
}

}  // namespace

Result<std::vector<EtcdEndpoint>> parse_endpoints(const std::string& text, bool* tls) {
    std::vector<EtcdEndpoint> out;
    std::set<std::string> names;
    std::optional<bool> scheme_tls;
    if (trim(text).empty()) return make_error(Errc::invalid_argument, "etcd endpoints: empty list");

    std::string_view rest = text;
    for (std::size_t index = 1;; ++index) {
        const auto comma = rest.find(',');
        const auto entry = trim(rest.substr(0, comma));
        const std::string label =
            "etcd endpoints: entry " + std::to_string(index) + " '" + std::string(entry) + "'";
        if (entry.empty()) return make_error(Errc::invalid_argument, label + ": empty entry");
        Parsed parsed;
        if (auto why = parse_entry(entry, parsed); !why.empty()) {
            return make_error(Errc::invalid_argument, label + ": " + why);
        }
        if (scheme_tls && *scheme_tls != parsed.tls) {
            return make_error(Errc::invalid_argument,
                              label + ": mixes http and https (one cluster uses one scheme)");
        }
        scheme_tls = parsed.tls;
        if (!names.insert(parsed.endpoint.name).second) {
            return make_error(Errc::invalid_argument,
                              label + ": duplicate name '" + parsed.endpoint.name + "'");
        }
        out.push_back(std::move(parsed.endpoint));
        if (comma == std::string_view::npos) break;
        rest = rest.substr(comma + 1);
    }
    if (tls) *tls = scheme_tls.value_or(false);
    return out;
}

}  // namespace signet::ha
