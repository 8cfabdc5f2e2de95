#include "audit_checkpointer.hpp"

#include "audit_log.hpp"

namespace signet::daemon {

AuditCheckpointer::AuditCheckpointer(std::shared_ptr<pkcs11::KeyStore> keys,
                                     pkcs11::KeyInfo audit_key,
                                     std::shared_ptr<Committer> committer,
                                     std::shared_ptr<const Clock> clock,
                                     std::shared_ptr<Logger> logger,
                                     std::chrono::milliseconds interval)
    : keys_(std::move(keys)),
      key_(std::move(audit_key)),
      committer_(std::move(committer)),
      clock_(std::move(clock)),
      logger_(std::move(logger)),
      interval_(interval),
      thread_([this] { loop(); }) {}

AuditCheckpointer::~AuditCheckpointer() { stop(); }

Result<void> AuditCheckpointer::checkpoint_now() {
    const std::string ts = format_rfc3339(clock_->wall());
    // Runs on the writer thread, so the head it signs is exactly what the transaction commits.
    // One HSM signature per interval is the only cost on the writer.
    return committer_->submit([&](Db& txn) -> Result<void> {
        const auto head = SIGNET_TRY(AuditLog::head(txn));
        if (!head || head->first <= SIGNET_TRY(AuditLog::last_checkpoint(txn))) return ok();
        const Bytes msg = AuditLog::checkpoint_message(head->first, head->second);
        const pkcs11::SignRequest req{msg, pkcs11::Input::message, pkcs11::Hash::sha256,
                                      pkcs11::SignatureEncoding::der, pkcs11::RsaPadding::pkcs1v15};
        const auto sig = keys_->sign(key_.id, req);
        if (!sig) return sig.error().within("sign audit checkpoint");
        return AuditLog::stage_checkpoint(txn, head->first, head->second, key_.spki_der, sig->bytes,
                                          ts);
    });
}

void AuditCheckpointer::loop() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
        cv_.wait_for(lock, interval_, [&] { return stopping_; });
        if (stopping_) break;
        lock.unlock();
        if (auto r = checkpoint_now(); !r) {
            logger_->log(LogLevel::error, "audit", "checkpoint_failed",
                         {{"error", r.error().message()}});
        }
        lock.lock();
    }
}

void AuditCheckpointer::stop() {
    {
        const std::lock_guard lock(mu_);
        if (stopping_) return;
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    if (auto r = checkpoint_now(); !r) {
        logger_->log(LogLevel::error, "audit", "final_checkpoint_failed",
                     {{"error", r.error().message()}});
    }
}

}  // namespace signet::daemon
