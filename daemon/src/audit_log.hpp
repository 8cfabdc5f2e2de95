// The audit log: an append-only, hash-chained table. Record n stores
//   hash_n = SHA-256(hash_{n-1} || u64be(n) || for each field: u32be(len) || bytes)
// over (ts, actor, action, subject, outcome, details), with hash_0 = 32 zero bytes. Editing,
// deleting or reordering any record breaks the chain at that record; verify() names it.
// Checkpoints signed by the HSM audit key (audit_checkpoints) cover (seq, hash) of a record, so
// deleting the newest records, or rewriting the whole chain, is detected too.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "db.hpp"
#include "signet/core/result.hpp"
#include "signet/web/service.hpp"

namespace signet::daemon {

struct AuditEntry {
    std::string actor;    // client id, "system", "setup", or "anonymous@<remote>"
    std::string action;   // stable snake_case, e.g. "key.create", "sign.nonce", "auth.failure"
    std::string subject;  // what it acted on (key id, client id, ...)
    std::string outcome;  // "ok" | "denied" | "failed" | "gap"
    std::string details_json = "{}";
};

class AuditLog {
public:
    // Appends inside the caller's (writer) transaction and returns the new sequence number.
    [[nodiscard]] static Result<std::uint64_t> append(Db& db, const AuditEntry& e,
                                                      const std::string& ts);

    struct VerifyOptions {
        // The newest checkpoint must be signed by this key (the live HSM audit key, or one an
        // operator pinned); with it, a log that has records but no checkpoint fails.
        std::optional<Bytes> pinned_spki;
        // (seq, hash) of the newest checkpoint as recorded in the HSM (AuditCheckpointer): the
        // database must still hold a checkpoint at or after it, with that record unchanged.
        std::optional<std::pair<std::uint64_t, Bytes>> anchor;
        // `anchor` is what the HSM holds (online): without one, the HSM never recorded a
        // checkpoint, so a young log without checkpoints is expected rather than truncated.
        bool anchor_from_hsm = false;
    };

    // In one read snapshot: recomputes the chain from the first record and stops at the first
    // record whose sequence, link or hash is wrong; then checks that every checkpoint is signed,
    // links to the previous checkpoint, and covers a record that is present with that hash.
    [[nodiscard]] static Result<web::AuditVerification> verify(Db& db, const VerifyOptions& o);
    [[nodiscard]] static Result<web::AuditVerification> verify(Db& db);  // no options

    // The newest record (seq, hash), if any.
    [[nodiscard]] static Result<std::optional<std::pair<std::uint64_t, Bytes>>> head(Db& db);
    // The newest checkpoint (seq, hash), if any.
    [[nodiscard]] static Result<std::optional<std::pair<std::uint64_t, Bytes>>> newest_checkpoint(
        Db& db);
    // What a checkpoint signs: "signet.audit.checkpoint.v1" || 0x00 || u64be(seq) || hash ||
    // u64be(previous checkpoint's seq, 0 if none) || its hash (32 zero bytes if none) || ts.
    [[nodiscard]] static Bytes checkpoint_message(std::uint64_t seq, ByteView hash,
                                                  std::uint64_t prev_seq, ByteView prev_hash,
                                                  const std::string& ts);
    [[nodiscard]] static Result<void> stage_checkpoint(Db& txn, std::uint64_t seq, ByteView hash,
                                                       ByteView key_spki, ByteView signature,
                                                       const std::string& ts);

    // Records with seq > after_seq, oldest first, at most `limit`.
    [[nodiscard]] static Result<std::vector<web::AuditRecord>> tail(Db& db, std::uint64_t after_seq,
                                                                    std::size_t limit);

    [[nodiscard]] static Bytes record_hash(ByteView prev_hash, std::uint64_t seq,
                                           const std::string& ts, const AuditEntry& e);
};

}  // namespace signet::daemon
