// Appliance: wires one standalone signetd together (store, HSM, TLS identity, service, server)
// and takes it down in order.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "config.hpp"
#include "signet/core/clock.hpp"
#include "signet/core/logger.hpp"
#include "signet/core/result.hpp"

namespace signet::daemon {

struct StartupReport {
    std::uint16_t port = 0;
    std::string url;
    std::string tls_fingerprint;             // empty for plain HTTP
    std::optional<std::string> setup_token;  // set when no admin exists yet (one-time)
};

// Takes the data directory's lock (flock on <data_dir>/signetd.lock) for the process's life and
// returns its descriptor; conflict naming the holder's pid when another process has it. One
// process per store: two on one store would hand out the same nonces, and offline tools (restore,
// force-promote) must not run beside a live daemon.
[[nodiscard]] Result<int> lock_data_dir(const Config& c);

class Appliance {
public:
    // Opens and migrates the store, opens the HSM, loads the TLS identity, starts the server, and
    // runs the HSM self-test in the background (/v1/health/ready reports it).
    [[nodiscard]] static Result<std::unique_ptr<Appliance>> start(const Config& config,
                                                                  std::shared_ptr<Logger> logger);
    ~Appliance();  // stop()s
    Appliance(const Appliance&) = delete;
    Appliance& operator=(const Appliance&) = delete;

    [[nodiscard]] const StartupReport& report() const noexcept;
    // Stops accepting, lets in-flight requests finish within the grace period, flushes the audit
    // tally and closes the store. Idempotent.
    void stop();

private:
    Appliance();
    struct Parts;
    static void run_background(Parts& p, std::shared_ptr<const Clock> clock);
    std::unique_ptr<Parts> p_;
};

}  // namespace signet::daemon
