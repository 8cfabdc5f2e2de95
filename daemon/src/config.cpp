#include "config.hpp"

#include <arpa/inet.h>

#include <cctype>
#include <charconv>
#include <map>
#include <toml.hpp>

#include "signet/ha/etcd_coordinator.hpp"

namespace signet::daemon {
namespace {

Error bad(const std::string& origin, const std::string& what) {
    return make_error(Errc::invalid_argument, origin + ": " + what);
}

// Strict readers for one TOML table; every key must be consumed.
class Table {
public:
    Table(const toml::value& v, std::string origin, std::string name)
        : origin_(std::move(origin)), name_(std::move(name)) {
        if (v.is_table()) table_ = &v.as_table();
    }
    [[nodiscard]] bool valid() const { return table_ != nullptr; }

    template <class T>
    Result<void> get(const char* key, T& out) {
        const toml::value* v = find(key);
        if (!v) return ok();
        try {
            if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, std::string>) {
                out = toml::get<T>(*v);
            } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
                out = toml::get<std::vector<std::string>>(*v);
            } else {
                const auto n = toml::get<std::int64_t>(*v);
                if (n < 0 || static_cast<std::uint64_t>(n) > std::numeric_limits<T>::max()) {
                    return bad(origin_, where(key) + " is out of range");
                }
                out = static_cast<T>(n);
            }
        } catch (const std::exception&) {
            return bad(origin_, where(key) + " has the wrong type");
        }
        return ok();
    }
    Result<void> get_path(const char* key, std::filesystem::path& out) {
        std::string s = out.string();
        SIGNET_TRY(get(key, s));
        out = s;
        return ok();
    }
    Result<void> get_ms(const char* key, std::chrono::milliseconds& out) {
        std::uint64_t n = static_cast<std::uint64_t>(out.count());
        SIGNET_TRY(get(key, n));
        out = std::chrono::milliseconds(n);
        return ok();
    }
    Result<void> done() const {
        if (!table_) return ok();
        for (const auto& [k, v] : *table_) {
            if (!used_.count(k)) return bad(origin_, "unknown option " + where(k.c_str()));
        }
        return ok();
    }

private:
    const toml::value* find(const char* key) {
        if (!table_) return nullptr;
        const auto it = table_->find(key);
        if (it == table_->end()) return nullptr;
        used_[key] = true;
        return &it->second;
    }
    std::string where(const char* key) const { return "[" + name_ + "] " + key; }

    const toml::table* table_ = nullptr;
    std::string origin_, name_;
    std::map<std::string, bool> used_;
};

Result<LogLevel> parse_level(const std::string& s, const std::string& origin) {
    if (s == "debug") return LogLevel::debug;
    if (s == "info") return LogLevel::info;
    if (s == "warn") return LogLevel::warn;
    if (s == "error") return LogLevel::error;
    return bad(origin, "log level '" + s + "' is not one of debug, info, warn, error");
}

Result<void> parse_listen(Config& c, const std::string& listen, const std::string& origin) {
    const auto colon = listen.rfind(':');
    if (colon == std::string::npos)
        return bad(origin, "listen must be ADDRESS:PORT, got '" + listen + "'");
    std::string host = listen.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    unsigned port = 0;
    const std::string p = listen.substr(colon + 1);
    const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
    if (ec != std::errc{} || end != p.data() + p.size() || port > 65535) {
        return bad(origin, "listen port '" + p + "' is not a port number");
    }
    c.listen_address = host;
    c.port = static_cast<std::uint16_t>(port);
    return ok();
}

bool is_loopback(const std::string& addr) {
    in_addr v4{};
    if (inet_pton(AF_INET, addr.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
    in6_addr v6{};
    if (inet_pton(AF_INET6, addr.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
    return addr == "localhost";
}

Result<void> parse_ha(Table t, Config& c, const std::string& origin) {
    std::string mode = "standalone";
    SIGNET_TRY(t.get("mode", mode));
    if (mode == "standalone") {
        c.ha_mode.reset();
    } else if (auto m = ha::parse_pair_mode(mode)) {
        c.ha_mode = *m;
    } else {
        return bad(origin,
                   "[ha] mode '" + mode + "' is not one of standalone, hot-standby, dual-active");
    }
    SIGNET_TRY(t.get("name", c.ha_name));
    SIGNET_TRY(t.get("cluster", c.ha_cluster));
    SIGNET_TRY(t.get("etcd_endpoints", c.etcd_endpoints));
    SIGNET_TRY(t.get_path("etcd_ca_file", c.etcd_ca_file));
    SIGNET_TRY(t.get_path("etcd_cert_file", c.etcd_cert_file));
    SIGNET_TRY(t.get_path("etcd_key_file", c.etcd_key_file));
    std::string alloc(ha::to_string(c.nonce_allocation));
    SIGNET_TRY(t.get("nonce_allocation", alloc));
    const auto a = ha::parse_allocation_mode(alloc);
    if (!a)
        return bad(origin,
                   "[ha] nonce_allocation '" + alloc + "' is not one of fast, strict, dense");
    c.nonce_allocation = *a;
    SIGNET_TRY(t.get("nonce_block", c.nonce_block));
    SIGNET_TRY(t.get_ms("lease_ttl_ms", c.lease_ttl));
    SIGNET_TRY(t.get_ms("etcd_timeout_ms", c.etcd_timeout));
    SIGNET_TRY(t.get("advertise_url", c.advertise_url));
    SIGNET_TRY(t.get_path("so_pin_file", c.so_pin_file));
    SIGNET_TRY(t.get("forward", c.forward));
    SIGNET_TRY(t.get_ms("forward_timeout_ms", c.forward_timeout));
    return t.done();
}

}  // namespace

Result<Config> parse_config(const std::string& text, const std::string& origin) {
    toml::value root;
    try {
        std::istringstream in(text);
        root = toml::parse(in, origin);
    } catch (const std::exception& e) {
        return bad(origin, std::string("not valid TOML: ") + e.what());
    }
    if (!root.is_table()) return bad(origin, "not a TOML table");
    Config c;
    std::map<std::string, bool> seen;
    auto section = [&](const char* name) {
        seen[name] = true;
        const auto& t = root.as_table();
        const auto it = t.find(name);
        static const toml::value empty = toml::table{};
        return Table(it == t.end() ? empty : it->second, origin, name);
    };

    Table server = section("server");
    std::string listen = c.listen_address + ":" + std::to_string(c.port);
    SIGNET_TRY(server.get("listen", listen));
    SIGNET_TRY(parse_listen(c, listen, origin));
    SIGNET_TRY(server.get("tls", c.tls));
    SIGNET_TRY(server.get("allow_plain_http", c.allow_plain_http));
    SIGNET_TRY(server.get("io_threads", c.io_threads));
    SIGNET_TRY(server.get("max_inline_fast", c.max_inline_fast));
    SIGNET_TRY(server.get("worker_threads", c.worker_threads));
    SIGNET_TRY(server.get("queue_limit", c.queue_limit));
    SIGNET_TRY(server.get("max_connections", c.max_connections));
    SIGNET_TRY(server.get("max_body_bytes", c.max_body_bytes));
    SIGNET_TRY(server.get("max_header_bytes", c.max_header_bytes));
    SIGNET_TRY(server.get_ms("request_timeout_ms", c.request_timeout));
    SIGNET_TRY(server.get_ms("shutdown_grace_ms", c.shutdown_grace));
    SIGNET_TRY(server.done());

    Table hsm = section("hsm");
    SIGNET_TRY(hsm.get("module", c.module));
    SIGNET_TRY(hsm.get("token_label", c.token_label));
    SIGNET_TRY(hsm.get("token_serial", c.token_serial));
    SIGNET_TRY(hsm.get_path("pin_file", c.pin_file));
    SIGNET_TRY(hsm.get("max_sessions", c.max_sessions));
    SIGNET_TRY(hsm.done());

    Table tls = section("tls");
    SIGNET_TRY(tls.get("identity_token_label", c.identity_token_label));
    SIGNET_TRY(tls.get_path("identity_pin_file", c.identity_pin_file));
    SIGNET_TRY(tls.get("subject_alt_names", c.subject_alt_names));
    SIGNET_TRY(tls.get("request_client_certs", c.request_client_certs));
    SIGNET_TRY(tls.done());

    Table store = section("store");
    SIGNET_TRY(store.get_path("data_dir", c.data_dir));
    SIGNET_TRY(store.done());

    Table limits = section("limits");
    SIGNET_TRY(limits.get("batch_max", c.batch_max));
    SIGNET_TRY(limits.done());

    Table log = section("log");
    std::string level = "info";
    SIGNET_TRY(log.get("level", level));
    c.log_level = SIGNET_TRY(parse_level(level, origin));
    SIGNET_TRY(log.done());

    SIGNET_TRY(parse_ha(section("ha"), c, origin));

    for (const auto& [name, v] : root.as_table()) {
        if (!seen.count(name)) return bad(origin, "unknown section [" + name + "]");
        // `server = 1` (a section name given a plain value) would otherwise read as an empty
        // section, i.e. every default, silently: the kind of typo this parser must refuse.
        if (!v.is_table())
            return bad(origin, "[" + name + "] must be a table (a [" + name + "] section)");
    }
    return c;
}

Result<Config> load_config(const std::filesystem::path& file) {
    std::ifstream in(file);
    if (!in) return make_error(Errc::not_found, "cannot read config file '" + file.string() + "'");
    std::stringstream ss;
    ss << in.rdbuf();
    return parse_config(ss.str(), file.string());
}

std::string flags_help() {
    return "  --listen ADDR:PORT       [server] listen\n"
           "  --plain-http             [server] tls = false, allow_plain_http = true (loopback "
           "only)\n"
           "  --data-dir DIR           [store] data_dir\n"
           "  --module PATH            [hsm] module\n"
           "  --token-label LABEL      [hsm] token_label\n"
           "  --pin-file FILE          [hsm] pin_file\n"
           "  --identity-token LABEL   [tls] identity_token_label\n"
           "  --worker-threads N       [server] worker_threads\n"
           "  --max-sessions N         [hsm] max_sessions\n"
           "  --log-level LEVEL        [log] level (debug, info, warn, error)\n";
}

Result<void> apply_flags(Config& c, const std::vector<std::string>& flags) {
    for (std::size_t i = 0; i < flags.size(); ++i) {
        const std::string& f = flags[i];
        if (f == "--plain-http") {
            c.tls = false;
            c.allow_plain_http = true;
            continue;
        }
        if (i + 1 >= flags.size()) return bad("command line", "missing value for " + f);
        const std::string& v = flags[++i];
        auto number = [&](std::size_t& out) -> Result<void> {
            const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
            if (ec != std::errc{} || end != v.data() + v.size())
                return bad("command line", f + " needs a number");
            return ok();
        };
        if (f == "--listen") {
            SIGNET_TRY(parse_listen(c, v, "command line"));
        } else if (f == "--data-dir") {
            c.data_dir = v;
        } else if (f == "--module") {
            c.module = v;
        } else if (f == "--token-label") {
            c.token_label = v;
        } else if (f == "--pin-file") {
            c.pin_file = v;
        } else if (f == "--identity-token") {
            c.identity_token_label = v;
        } else if (f == "--worker-threads") {
            SIGNET_TRY(number(c.worker_threads));
        } else if (f == "--max-sessions") {
            SIGNET_TRY(number(c.max_sessions));
        } else if (f == "--log-level") {
            c.log_level = SIGNET_TRY(parse_level(v, "command line"));
        } else {
            return bad("command line", "unknown option " + f);
        }
    }
    return ok();
}

namespace {

bool valid_name(const std::string& s) {
    if (s.empty() || s.size() > 64) return false;
    for (const char ch : s) {
        if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_') return false;
    }
    return true;
}

Result<void> validate_ha(const Config& c) {
    if (!valid_name(c.ha_name)) {
        return bad("config",
                   "[ha] name is required in a pair: 1-64 letters, digits, '-' or '_' (the "
                   "appliance's member name)");
    }
    if (!valid_name(c.ha_cluster)) {
        return bad("config", "[ha] cluster must be 1-64 letters, digits, '-' or '_'");
    }
    if (c.etcd_endpoints.empty()) {
        return bad("config", "[ha] etcd_endpoints is required in a pair (the local member first)");
    }
    bool tls = false;
    if (auto e = ha::parse_endpoints(c.etcd_endpoints, &tls); !e) {
        return bad("config", "[ha] etcd_endpoints: " + e.error().message());
    }
    if (tls && (c.etcd_ca_file.empty() || c.etcd_cert_file.empty() || c.etcd_key_file.empty())) {
        return bad("config",
                   "[ha] https etcd endpoints need etcd_ca_file, etcd_cert_file and etcd_key_file "
                   "(mutual TLS to the members)");
    }
    if (c.nonce_block < 2 || c.nonce_block > 1'000'000) {
        return bad("config", "[ha] nonce_block must be between 2 and 1000000");
    }
    if (c.lease_ttl < std::chrono::milliseconds(1000) || c.lease_ttl.count() % 1000 != 0) {
        return bad("config",
                   "[ha] lease_ttl_ms must be a whole number of seconds, at least 1000 (etcd "
                   "grants leases in seconds)");
    }
    if (c.etcd_timeout.count() <= 0) return bad("config", "[ha] etcd_timeout_ms must be positive");
    if (c.forward_timeout.count() <= 0) {
        return bad("config", "[ha] forward_timeout_ms must be positive");
    }
    if (c.forward && (!c.tls || !c.request_client_certs)) {
        return bad("config",
                   "[ha] forward needs TLS with client certificates ([server] tls = true, [tls] "
                   "request_client_certs = true): the appliances prove themselves to each other "
                   "by their TLS certificates; or set [ha] forward = false");
    }
    if (c.advertise_url.empty() && (c.listen_address == "0.0.0.0" || c.listen_address == "::")) {
        return bad("config", "[ha] advertise_url is required when listening on " +
                                 c.listen_address +
                                 ": it is how clients and the peer reach this appliance");
    }
    return ok();
}

}  // namespace

Result<void> validate(const Config& c) {
    if (c.pin_file.empty()) return bad("config", "[hsm] pin_file is required");
    if (c.module.empty()) return bad("config", "[hsm] module is required");
    if (c.token_label.empty() && c.token_serial.empty()) {
        return bad("config", "[hsm] token_label or token_serial is required");
    }
    if (!c.tls && !(c.allow_plain_http && is_loopback(c.listen_address))) {
        return bad("config",
                   "plain HTTP is allowed only on a loopback address with [server] "
                   "allow_plain_http = true (listen is " +
                       c.listen_address + ")");
    }
    if (!c.identity_token_label.empty() && c.identity_token_label == c.token_label) {
        return bad("config",
                   "[tls] identity_token_label must name a token other than [hsm] token_label "
                   "(libp11 cannot use a token holding Ed25519 keys, and key ceremonies log the "
                   "signing token out)");
    }
    if (c.listen_address.empty()) return bad("config", "[server] listen needs an address");
    if (c.request_timeout.count() <= 0) {
        return bad("config", "[server] request_timeout_ms must be positive");
    }
    if (c.shutdown_grace.count() <= 0) {
        return bad("config", "[server] shutdown_grace_ms must be positive");
    }
    if (c.ha_mode) SIGNET_TRY(validate_ha(c));
    if (c.io_threads == 0 || c.worker_threads == 0 || c.queue_limit == 0 ||
        c.max_connections == 0 || c.max_sessions == 0 || c.batch_max == 0 ||
        c.max_body_bytes < 1024 || c.max_header_bytes < 1024) {
        return bad("config",
                   "thread counts, queue and connection limits must be positive; body and "
                   "header limits at least 1024 bytes");
    }
    return ok();
}

Result<std::shared_ptr<ha::Coordinator>> connect_etcd(const Config& c, bool local_only,
                                                      std::shared_ptr<Logger> logger) {
    bool tls = false;
    ha::EtcdOptions eo;
    eo.endpoints = SIGNET_TRY(ha::parse_endpoints(c.etcd_endpoints, &tls));
    if (local_only) eo.endpoints.resize(1);
    eo.tls = tls;
    eo.ca_file = c.etcd_ca_file.string();
    eo.client_cert_file = c.etcd_cert_file.string();
    eo.client_key_file = c.etcd_key_file.string();
    try {
        return ha::make_etcd_coordinator(eo, std::move(logger));
    } catch (const ErrorException& e) {
        return e.error().within("[ha] etcd connection settings");
    }
}

}  // namespace signet::daemon
