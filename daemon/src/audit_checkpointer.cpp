#include "audit_checkpointer.hpp"

#include "audit_log.hpp"

namespace signet::daemon {

std::optional<std::pair<std::uint64_t, Bytes>> parse_audit_anchor(const std::optional<Bytes>& v) {
    if (!v || v->size() != 8 + 32) return std::nullopt;
    std::uint64_t seq = 0;
    for (std::size_t i = 0; i < 8; ++i) seq = (seq << 8) | (*v)[i];
    return std::pair<std::uint64_t, Bytes>{seq, Bytes(v->begin() + 8, v->end())};
}

AuditCheckpointer::AuditCheckpointer(std::shared_ptr<pkcs11::KeyStore> keys,
                                     pkcs11::KeyInfo audit_key, Db reader,
                                     std::shared_ptr<Committer> committer,
                                     std::shared_ptr<const Clock> clock,
                                     std::shared_ptr<Logger> logger,
                                     std::chrono::milliseconds interval)
    : keys_(std::move(keys)),
      key_(std::move(audit_key)),
      reader_(std::move(reader)),
      committer_(std::move(committer)),
      clock_(std::move(clock)),
      logger_(std::move(logger)),
      interval_(interval),
      thread_([this] { loop(); }) {}

AuditCheckpointer::~AuditCheckpointer() { stop(); }

Result<void> AuditCheckpointer::checkpoint_now() {
    const std::lock_guard lock(run_mu_);
    // The anchor is only ever moved forward from a record the database still holds unchanged:
    // moving it off a cut or rewritten log would launder the tampering it exists to reveal.
    auto stored = keys_->read_internal_data(kAuditAnchorName);
    if (!stored) return stored.error().within("read the audit anchor from the HSM");
    const auto recorded = parse_audit_anchor(*stored);
    std::optional<std::pair<std::uint64_t, Bytes>> head, last;
    std::optional<Bytes> anchored;  // the record the anchor names, as the database holds it
    {
        SIGNET_TRY(reader_.exec("BEGIN"));  // all from one committed snapshot
        auto h = AuditLog::head(reader_);
        auto l = AuditLog::newest_checkpoint(reader_);
        Result<void> a = ok();
        if (recorded) {
            a = [&]() -> Result<void> {
                auto st = SIGNET_TRY(reader_.cached("SELECT hash FROM audit WHERE seq = ?"));
                st->bind(1, recorded->first);
                if (SIGNET_TRY(st->step())) anchored = st->blob(0);
                return ok();
            }();
        }
        (void)reader_.exec("COMMIT");
        head = SIGNET_TRY(std::move(h));
        last = SIGNET_TRY(std::move(l));
        SIGNET_TRY(std::move(a));
    }
    if (recorded && anchored != recorded->second) {
        return make_error(Errc::verification_failed,
                          "audit record " + std::to_string(recorded->first) +
                              " differs from the checkpoint recorded in the HSM, or is gone; no "
                              "further checkpoints until the log is examined");
    }
    if (!head || (last && head->first <= last->first)) return ok();
    const std::string ts = format_rfc3339(clock_->wall());
    const Bytes msg = AuditLog::checkpoint_message(
        head->first, head->second, last ? last->first : 0, last ? last->second : Bytes(32, 0), ts);
    // Signed outside the writer: an HSM stall must not stall every durable commit.
    const pkcs11::SignRequest req{msg, pkcs11::Input::message, pkcs11::Hash::sha256,
                                  pkcs11::SignatureEncoding::der, pkcs11::RsaPadding::pkcs1v15};
    const auto sig = keys_->sign(key_.id, req);
    if (!sig) return sig.error().within("sign audit checkpoint");
    SIGNET_TRY(committer_->submit([&](Db& txn) {
        return AuditLog::stage_checkpoint(txn, head->first, head->second, key_.spki_der, sig->bytes,
                                          ts);
    }));
    // After the commit: an anchor ahead of the database would look like deleted checkpoints.
    Bytes anchor;
    for (int i = 7; i >= 0; --i)
        anchor.push_back(static_cast<std::uint8_t>(head->first >> (8 * i)));
    anchor.insert(anchor.end(), head->second.begin(), head->second.end());
    auto w = keys_->write_internal_data(kAuditAnchorName, anchor);
    if (!w) return w.error().within("record the audit anchor in the HSM");
    return ok();
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
