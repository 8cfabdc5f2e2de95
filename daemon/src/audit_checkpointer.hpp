// AuditCheckpointer: every `interval` (and at stop) signs the newest audit record's (seq, hash)
// with the appliance's HSM-resident audit key and stores the checkpoint in the same transaction.
// Deleting records after a checkpoint, or rewriting the chain without the HSM, is then detectable
// by AuditLog::verify.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "committer.hpp"
#include "signet/core/clock.hpp"
#include "signet/core/logger.hpp"
#include "signet/pkcs11/key_store.hpp"

namespace signet::daemon {

inline constexpr std::string_view kAuditKeyName = "signet.audit";

class AuditCheckpointer {
public:
    AuditCheckpointer(std::shared_ptr<pkcs11::KeyStore> keys, pkcs11::KeyInfo audit_key,
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
