// Pair: this appliance's membership in a pair (docs/ha.md). Owns the etcd coordinator, the role
// machine with the thread that drives it, and the shared nonce allocator with the thread that
// refills its blocks. Everything that signs asks may_sign() first: in hot-standby only the active
// signs; in either mode an appliance that cannot prove its role's lease by CLOCK_MONOTONIC signs
// nothing.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "config.hpp"
#include "signet/core/clock.hpp"
#include "signet/core/logger.hpp"
#include "signet/ha/coordinator.hpp"
#include "signet/ha/nonce_allocator.hpp"
#include "signet/ha/role.hpp"
#include "signet/web/metrics.hpp"
#include "signet/web/service.hpp"

namespace signet::daemon {

class Pair {
public:
    // Connects to the configured etcd members (the local one first) and starts the role driver.
    // Does not wait for a role: status() says "starting" until the first answer.
    // `metrics` receives the pair's gauges and counters (signet_ha_*, signet_etcd_*), refreshed
    // by a thread of the pair every 2 s.
    // `store_was_in_pair`: the local store joined this pair at an earlier start. Before the role
    // driver starts, an appliance fenced by a forced promotion is refused on such a store, and on
    // a new store its fence mark is removed (rejoined() then says so).
    [[nodiscard]] static Result<std::unique_ptr<Pair>> start(
        const Config& c, bool store_was_in_pair, std::shared_ptr<const Clock> clock,
        std::shared_ptr<Logger> logger, std::shared_ptr<web::Registry> metrics);
    ~Pair();  // stop()
    Pair(const Pair&) = delete;
    Pair& operator=(const Pair&) = delete;

    // Gives up the role (the peer takes over without waiting for the lease to expire) and stops
    // the threads. Idempotent.
    void stop();

    [[nodiscard]] const std::shared_ptr<ha::Coordinator>& coordinator() const noexcept;
    [[nodiscard]] std::shared_ptr<const ha::Fence> fence() const noexcept;
    [[nodiscard]] const std::shared_ptr<ha::NonceAllocator>& allocator() const noexcept;
    [[nodiscard]] const std::string& prefix() const noexcept;
    [[nodiscard]] const std::string& name() const noexcept;
    // This start removed the appliance's fence mark: it re-joined after a forced promotion.
    [[nodiscard]] bool rejoined() const noexcept;

    // ok while this appliance may sign; otherwise HaErrc::not_active naming the active and its
    // URL, or HaErrc::fenced saying why.
    [[nodiscard]] Result<void> may_sign() const;
    // The role machine's view now (no etcd call).
    [[nodiscard]] ha::RoleStatus role_status() const;
    // Role, leader, lease and allocation counters; with `members`, also asks every etcd member
    // (bounded by the etcd timeout).
    [[nodiscard]] web::HaStatus status(bool members) const;
    // Called on the driver thread after every role change.
    void on_role_change(std::function<void(const ha::RoleStatus&)> callback);

private:
    struct Impl;
    explicit Pair(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace signet::daemon
