// FakeCoordinator: an in-memory Coordinator with etcd's semantics (one store revision, create/mod
// revisions and versions per key, leases that expire by a fake clock, compare-and-swap
// transactions, watches delivered synchronously) and injectable faults, for deterministic unit
// tests of the role machine and the nonce allocator. No threads, no sockets, no sleeping.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "signet/core/clock.hpp"
#include "signet/ha/coordinator.hpp"

namespace signet::test {

// A clock the test moves by hand.
class FakeClock final : public Clock {
public:
    [[nodiscard]] std::chrono::steady_clock::time_point monotonic() const override;
    [[nodiscard]] std::chrono::system_clock::time_point wall() const override;
    void advance(std::chrono::milliseconds d);

private:
    mutable std::mutex mu_;
    std::chrono::steady_clock::time_point mono_{std::chrono::hours(1)};  // guarded by mu_
    std::chrono::system_clock::time_point wall_{std::chrono::hours(24 * 365 * 56)};
};

// Several FakeCoordinators may share one Store (two appliances on one "cluster"), each with its
// own faults, so a test can partition one appliance while the other goes on.
class FakeStore {
public:
    explicit FakeStore(std::shared_ptr<const Clock> clock);
    // Expires leases whose TTL passed by the clock (deleting their keys, notifying watches).
    void expire_leases();
    [[nodiscard]] std::int64_t revision() const;
    // Direct reads for assertions (no faults).
    [[nodiscard]] std::vector<ha::KeyValue> dump(const std::string& prefix) const;
    // Keeps the events of at most `revisions` recent revisions for watches (default 1000); a watch
    // starting at an older revision gets HaErrc::compacted.
    void set_history_limit(std::size_t revisions);

    struct Impl;
    std::shared_ptr<Impl> impl;
};

enum class Fault {
    none,
    unavailable,   // the call fails before anything is applied (Errc::unavailable)
    lost_reply,    // the call is applied, then reported as HaErrc::outcome_unknown
    lost_request,  // nothing applied, reported as HaErrc::outcome_unknown
};

class FakeCoordinator final : public ha::Coordinator {
public:
    explicit FakeCoordinator(std::shared_ptr<FakeStore> store);

    // The next `count` calls (of any kind, or only txns with `txn_only`) get `fault`.
    void inject(Fault fault, int count = 1, bool txn_only = false);
    // While partitioned every call fails with Errc::unavailable and nothing is applied.
    void partition(bool on);
    // Runs before each txn is applied (e.g. to let a peer commit first: a "slow commit").
    void before_txn(std::function<void()> hook);
    [[nodiscard]] std::uint64_t calls() const;
    // Transactions attempted through this coordinator (faulted ones included).
    [[nodiscard]] std::uint64_t txns() const;

    Result<ha::RangeResponse> range(const std::string& key, const std::string& range_end,
                                    ha::Milliseconds timeout) override;
    Result<ha::TxnResponse> txn(const ha::TxnRequest& request, ha::Milliseconds timeout) override;
    Result<ha::Lease> lease_grant(ha::Milliseconds ttl, ha::Milliseconds timeout) override;
    Result<ha::Milliseconds> lease_keepalive(std::int64_t lease_id,
                                             ha::Milliseconds timeout) override;
    Result<void> lease_revoke(std::int64_t lease_id, ha::Milliseconds timeout) override;
    Result<std::unique_ptr<ha::Watch>> watch(const std::string& key, const std::string& range_end,
                                             std::int64_t start_revision,
                                             ha::WatchHandlers handlers) override;
    std::vector<ha::MemberStatus> members(ha::Milliseconds timeout) override;

private:
    struct Faults;
    std::shared_ptr<FakeStore> store_;
    std::shared_ptr<Faults> faults_;
};

}  // namespace signet::test
