// NonceAuthority: the per-key counters behind guarantees G1-G3 (DESIGN §3). The signing service
// talks only to this interface; the standalone appliance keeps counters in SQLite
// (LocalNonceAuthority), a pair keeps them in etcd.
//
// Flow for a signature bound to an appliance nonce:
//   t = next(key)                       value unique forever, not yet durable
//   sign with the HSM
//   committer.submit([&](Db& txn) { stage_release(txn, t); audit(...); })   one fsync
//   finish(t, committed)                bookkeeping; a release that did not commit is burnt
//   only now may the signature leave the appliance
// or, when anything fails after next(): burn(t, reason) (never reissued; gap audited).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

#include "audit_log.hpp"
#include "committer.hpp"
#include "db.hpp"
#include "signet/core/clock.hpp"
#include "signet/core/logger.hpp"
#include "signet/web/service.hpp"

namespace signet::daemon {

struct NonceTicket {
    std::string key_id;
    std::uint64_t value = 0;
};

// A reserved value claimed by one in-flight signature (released on destruction if not consumed).
class ReservationClaim;

class NonceAuthority {
public:
    virtual ~NonceAuthority() = default;

    // The key's next value, strictly greater than any value handed out before (G1, G3).
    [[nodiscard]] virtual Result<NonceTicket> next(const std::string& key_id) = 0;
    // Inside the writer transaction: whatever makes the ticket's value released durably.
    [[nodiscard]] virtual Result<void> stage_release(Db& txn, const NonceTicket& t) = 0;
    // After the transaction: committed=false burns the value.
    virtual void finish(const NonceTicket& t, bool committed) = 0;
    // The value will never be issued; a gap record is written (asynchronously) with the reason.
    virtual void burn(const NonceTicket& t, const std::string& reason) = 0;

    // Allocates and durably reserves the next value for `client_id` (audited) before returning.
    [[nodiscard]] virtual Result<std::uint64_t> reserve(const std::string& key_id,
                                                        const std::string& client_id,
                                                        const AuditEntry& audit) = 0;
    // Claims a reserved value for one signature. reservation_invalid when it is not reserved, not
    // the caller's, or consumed; conflict when another request is using it right now.
    [[nodiscard]] virtual Result<std::unique_ptr<ReservationClaim>> claim(
        const std::string& key_id, std::uint64_t value, const std::string& client_id) = 0;
    // Inside the writer transaction: consumes the claimed reservation (it can never be used again).
    [[nodiscard]] virtual Result<void> stage_consume(Db& txn, const ReservationClaim& c) = 0;

    [[nodiscard]] virtual Result<web::CounterState> state(const std::string& key_id) = 0;
    // Forget a destroyed key's in-memory state (its durable counter is kept).
    virtual void forget(const std::string& key_id) = 0;
};

// Inside the writer transaction, for every authority: the local copy of a counter's high-water
// mark (never lowered), and a reservation row with its audit record ("nonce" in the details).
[[nodiscard]] Result<void> stage_counter_high_water(Db& txn, const std::string& key_id,
                                                    std::uint64_t value);
[[nodiscard]] Result<void> stage_reservation(Db& txn, const std::string& key_id,
                                             std::uint64_t value, const std::string& client_id,
                                             AuditEntry audit, const std::string& ts);

class ReservationClaim {
public:
    virtual ~ReservationClaim() = default;
    [[nodiscard]] virtual const std::string& key_id() const noexcept = 0;
    [[nodiscard]] virtual std::uint64_t value() const noexcept = 0;
    // Marks the claim consumed (after the consuming transaction committed).
    virtual void consumed() noexcept = 0;
};

// Standalone: counters in SQLite, allocation in memory, release made durable by the caller's group
// commit. When a value becomes durable while lower values are still in flight, rows for those lower
// values are written to nonce_pending in the same transaction; a value's own row is deleted when it
// is released or burnt. After a crash every row left is an unreleased value below the durable
// high-water mark: load() audits each as a gap. Values above the mark were never released and may
// be handed out again (they never existed outside this process). In-memory bookkeeping changes only
// through the transaction's commit/rollback hooks, so it always matches what is durable.
class LocalNonceAuthority final : public NonceAuthority {
public:
    LocalNonceAuthority(std::shared_ptr<Committer> committer, std::shared_ptr<const Clock> clock,
                        std::shared_ptr<Logger> logger = null_logger());

    // Loads counters and reservations; audits and clears crash gaps left in nonce_pending.
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

private:
    struct KeyCounter {
        std::mutex mu;
        std::uint64_t last_allocated = 0;  // guarded by mu
        std::uint64_t durable = 0;         // highest value durable in `counters`; guarded by mu
        std::set<std::uint64_t>
            outstanding;  // allocated, not yet durably released or burnt; guarded by mu
        std::set<std::uint64_t>
            staged;                    // outstanding values in the open transaction; guarded by mu
        std::set<std::uint64_t> rows;  // values with a committed nonce_pending row; guarded by mu
        std::set<std::uint64_t> rows_txn;  // rows written by the open transaction; guarded by mu
        std::map<std::uint64_t, std::string> reserved;  // value -> owner; guarded by mu
        std::set<std::uint64_t> claimed;  // reserved values in use by a request; guarded by mu
    };
    class Claim;
    std::shared_ptr<KeyCounter> counter(const std::string& key_id);

    std::shared_ptr<Committer> committer_;
    std::shared_ptr<const Clock> clock_;
    std::shared_ptr<Logger> logger_;
    std::mutex mu_;
    std::unordered_map<std::string, std::shared_ptr<KeyCounter>> counters_;  // guarded by mu_
};

}  // namespace signet::daemon
