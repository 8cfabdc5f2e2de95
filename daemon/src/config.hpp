// signetd's configuration: a TOML file (docs/config.md documents every option), then command-line
// flags on top. Unknown sections or options are errors: a typo must never silently fall back to a
// default on a security appliance.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "signet/core/logger.hpp"
#include "signet/core/result.hpp"
#include "signet/ha/coordinator.hpp"
#include "signet/ha/nonce_allocator.hpp"
#include "signet/ha/role.hpp"

namespace signet::daemon {

struct Config {
    // [server]
    std::string listen_address = "127.0.0.1";
    std::uint16_t port = 8443;
    bool tls = true;
    bool allow_plain_http = false;  // plain HTTP also needs a loopback listen address
    std::size_t io_threads = 2;
    std::size_t max_inline_fast = 0;  // plain signatures on I/O threads at once; 0: io_threads - 1
    std::size_t worker_threads = 8;
    std::size_t queue_limit = 1024;
    std::size_t max_connections = 1024;
    std::size_t max_body_bytes = 1024 * 1024;
    std::size_t max_header_bytes = 8 * 1024;
    std::chrono::milliseconds request_timeout{10'000};
    std::chrono::milliseconds shutdown_grace{10'000};
    // [hsm]
    std::string module = "/usr/lib/softhsm/libsofthsm2.so";
    std::string token_label = "signet";
    std::string token_serial;
    std::filesystem::path pin_file;
    std::size_t max_sessions = 8;
    // [tls]
    std::string identity_token_label = "signet-identity";
    std::filesystem::path identity_pin_file;  // empty: hsm.pin_file
    std::vector<std::string> subject_alt_names{"localhost", "127.0.0.1"};
    bool request_client_certs = true;
    // [store]
    std::filesystem::path data_dir = "/var/lib/signet";
    // [limits]
    std::size_t batch_max = 256;
    // [log]
    LogLevel log_level = LogLevel::info;
    // [ha] (docs/ha.md). Absent: a standalone appliance, counters in SQLite.
    std::optional<ha::PairMode> ha_mode;
    std::string ha_name;                // this appliance's member name in the pair
    std::string ha_cluster = "signet";  // etcd keyspace /signet/<cluster>/
    std::string etcd_endpoints;         // "name=http://127.0.0.1:2379,..."; the local member first
    std::filesystem::path etcd_ca_file;
    std::filesystem::path etcd_cert_file;
    std::filesystem::path etcd_key_file;
    ha::AllocationMode nonce_allocation = ha::AllocationMode::fast;
    std::size_t nonce_block = 1000;
    std::chrono::milliseconds lease_ttl{1000};
    std::chrono::milliseconds etcd_timeout{1000};
    std::string advertise_url;  // how clients and the peer reach this appliance; default: listen
    std::filesystem::path so_pin_file;  // security officer PIN, read only by the pairing ceremony
    // Signing requests this appliance cannot serve go to the peer over mutual TLS (the standby's
    // to the active; in dual-active, a key only the peer holds). false: refused with 503 naming
    // the appliance that can serve them.
    bool forward = true;
    std::chrono::milliseconds forward_timeout{10'000};  // one forwarded request, end to end

    [[nodiscard]] std::filesystem::path database_path() const { return data_dir / "signet.db"; }
    [[nodiscard]] std::filesystem::path tls_dir() const { return data_dir / "tls"; }
    [[nodiscard]] std::filesystem::path setup_token_path() const {
        return data_dir / "setup-token";
    }
    [[nodiscard]] std::string ha_prefix() const { return "/signet/" + ha_cluster + "/"; }
    [[nodiscard]] const std::filesystem::path& identity_pin() const {
        return identity_pin_file.empty() ? pin_file : identity_pin_file;
    }
};

// Reads a TOML file. Errors name the file, the option and the problem.
[[nodiscard]] Result<Config> load_config(const std::filesystem::path& file);
// Parses TOML text (for tests); `origin` names it in messages.
[[nodiscard]] Result<Config> parse_config(const std::string& text, const std::string& origin);

// Applies "--name value" flags over `c` (names as in --help). invalid_argument on unknown flags.
[[nodiscard]] Result<void> apply_flags(Config& c, const std::vector<std::string>& flags);

// Cross-option checks: pin_file set, plain HTTP only on loopback with allow_plain_http, sizes > 0.
[[nodiscard]] Result<void> validate(const Config& c);

// A coordinator for the [ha] section's etcd members (all of them, the local one first; with
// `local_only`, the local member alone). Errors name the setting at fault.
[[nodiscard]] Result<std::shared_ptr<ha::Coordinator>> connect_etcd(
    const Config& c, bool local_only = false, std::shared_ptr<Logger> logger = null_logger());

// "--listen", "--data-dir", ... with one line each, for --help.
[[nodiscard]] std::string flags_help();

}  // namespace signet::daemon
