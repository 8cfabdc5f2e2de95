// AuditCheckpointer: every `interval` (and at stop) signs the newest committed audit record's
// (seq, hash), chained to the previous checkpoint, with the appliance's HSM-resident audit key,
// stores the checkpoint, then records its (seq, hash) in an HSM data object (the anchor), which a
// writer of the database cannot change. Deleting records, rewriting the chain, or deleting the
// newest checkpoints is then detectable by AuditLog::verify.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "committer.hpp"
#include "signet/core/clock.hpp"
#include "signet/core/logger.hpp"
#include "signet/pkcs11/key_store.hpp"

namespace signet::daemon {

inline constexpr std::string_view kAuditKeyName = "signet.audit";
inline constexpr std::string_view kAuditAnchorName = "signet.audit.anchor";

// The anchor's value: u64be(seq) || hash. nullopt when absent or malformed.
[[nodiscard]] std::optional<std::pair<std::uint64_t, Bytes>> parse_audit_anchor(
    const std::optional<Bytes>& value);

class AuditCheckpointer {
public:
    // `reader` is a connection of its own: the head it signs must be committed.
    AuditCheckpointer(std::shared_ptr<pkcs11::KeyStore> keys, pkcs11::KeyInfo audit_key, Db reader,
                      std::shared_ptr<Committer> committer, std::shared_ptr<const Clock> clock,
                      std::shared_ptr<Logger> logger, std::chrono::milliseconds interval);
    ~AuditCheckpointer();  // stop()s
    AuditCheckpointer(const AuditCheckpointer&) = delete;
    AuditCheckpointer& operator=(const AuditCheckpointer&) = delete;

    // Signs the newest record unless a checkpoint already covers it; durable on return.
    [[nodiscard]] Result<void> checkpoint_now();
    // Writes a final checkpoint and stops the timer. Idempotent.
    void stop();

private:
    void loop();

    std::shared_ptr<pkcs11::KeyStore> keys_;
    pkcs11::KeyInfo key_;
    std::mutex run_mu_;  // one checkpoint at a time (timer and stop())
    Db reader_;          // guarded by run_mu_
    std::shared_ptr<Committer> committer_;
    std::shared_ptr<const Clock> clock_;
    std::shared_ptr<Logger> logger_;
    const std::chrono::milliseconds interval_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;  // guarded by mu_
    std::thread thread_;
};

}  // namespace signet::daemon
