// PairNonceAuthority: the NonceAuthority of an appliance in a pair. Counters live in etcd
// (ha::NonceAllocator: a value is handed out only from a block or batch committed by a quorum);
// reservations live in etcd too, so a value reserved on one appliance can be consumed on the other
// after a failover. The local SQLite keeps a copy of each counter's high-water mark and every
// audit record (gaps included).
//
// Differences from the standalone authority, each required by the pair:
// - A reserved value is consumed in etcd when a signature attempt claims it (an atomic delete that
//   only one appliance can win); an attempt that then fails leaves it spent, never reusable.
// - stage_release re-checks the role's fence, so a signature whose appliance lost its role while
//   the HSM was signing is not released (its value is burnt).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "nonce_authority.hpp"
#include "signet/ha/coordinator.hpp"
#include "signet/ha/nonce_allocator.hpp"
#include "signet/ha/role.hpp"

namespace signet::daemon {

class PairNonceAuthority final : public NonceAuthority {
public:
    PairNonceAuthority(std::shared_ptr<ha::NonceAllocator> allocator,
                       std::shared_ptr<const ha::Fence> fence,
                       std::shared_ptr<ha::Coordinator> coordinator, std::string prefix,
                       std::shared_ptr<Committer> committer, std::shared_ptr<const Clock> clock,
                       std::shared_ptr<Logger> logger, ha::Milliseconds timeout);

    // Reads the local high-water marks (counters table). A store that issued values before it
    // joined the pair (or while etcd was restored from an older snapshot) holds marks etcd may not
    // have: each key's first allocation raises the pair's counter past its local mark first.
    [[nodiscard]] Result<void> load(Db& reader);

    Result<NonceTicket> next(const std::string& key_id) override;
    Result<void> stage_release(Db& txn, const NonceTicket& t) override;
    void finish(const NonceTicket& t, bool committed) override;
    void burn(const NonceTicket& t, const std::string& reason) override;
    Result<std::uint64_t> reserve(const std::string& key_id, const std::string& client_id,
                                  const AuditEntry& audit) override;
    Result<std::unique_ptr<ReservationClaim>> claim(const std::string& key_id, std::uint64_t value,
                                                    const std::string& client_id) override;
    Result<void> stage_consume(Db& txn, const ReservationClaim& c) override;
    Result<web::CounterState> state(const std::string& key_id) override;
    void forget(const std::string& key_id) override;

    // A range the allocator reserved for this appliance: queued for the store (meta
    // 'ha.held.<key>') before any of it is handed out, so it is durable no later than the first
    // release of one of its values; after a crash load() audits the values above the last one
    // released as gaps.
    void record_reserved(const std::string& key_id, std::uint64_t first, std::uint64_t last);

    // Writes one durable gap record for [first, last] (burnt block rests, lost transactions).
    void audit_gap(const std::string& key_id, std::uint64_t first, std::uint64_t last,
                   const std::string& reason);

private:
    // Raises the pair's counter for `key_id` past its local mark, once per key and start.
    [[nodiscard]] Result<void> apply_local_floor(const std::string& key_id);
    [[nodiscard]] std::string reservation_key(const std::string& key_id, std::uint64_t value) const;

    std::shared_ptr<ha::NonceAllocator> allocator_;
    std::shared_ptr<const ha::Fence> fence_;
    std::shared_ptr<ha::Coordinator> coordinator_;
    std::string prefix_;
    std::shared_ptr<Committer> committer_;
    std::shared_ptr<const Clock> clock_;
    std::shared_ptr<Logger> logger_;
    ha::Milliseconds timeout_;
    std::mutex mu_;
    std::unordered_map<std::string, std::uint64_t> floors_;  // not yet applied; guarded by mu_
    using Ranges = std::vector<std::pair<std::uint64_t, std::uint64_t>>;
    // Shared with queued committer work, which encodes a key's ranges when it runs (not when it
    // is queued): writes of meta 'ha.held.<key>' may be queued out of order by overlapping
    // record_reserved calls, and the last one to run must hold every range recorded before it.
    struct Held {
        std::mutex mu;
        std::unordered_map<std::string, Ranges> ranges;  // guarded by mu: not released or audited
        std::unordered_map<std::string, std::uint64_t> released;  // guarded by mu: highest one
        // The meta value for `key_id` now ("" when nothing is held). Caller holds no lock.
        [[nodiscard]] std::string text(const std::string& key_id);
    };
    const std::shared_ptr<Held> held_ = std::make_shared<Held>();
};

}  // namespace signet::daemon
