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

    // Recomputes the chain from the first record and stops at the first record whose sequence, link
    // or hash is wrong; then checks every checkpoint's signature and that the record it covers is
    // present with that hash. With `pinned_spki`, the newest checkpoint must be signed by that key
    // (the live HSM audit key, or one an operator pinned).
    [[nodiscard]] static Result<web::AuditVerification> verify(
        Db& db, const std::optional<Bytes>& pinned_spki = std::nullopt);

    // The newest record (seq, hash), if any.
    [[nodiscard]] static Result<std::optional<std::pair<std::uint64_t, Bytes>>> head(Db& db);
    // What a checkpoint signs: "signet.audit.checkpoint.v1" || 0x00 || u64be(seq) || hash.
    [[nodiscard]] static Bytes checkpoint_message(std::uint64_t seq, ByteView hash);
    [[nodiscard]] static Result<void> stage_checkpoint(Db& txn, std::uint64_t seq, ByteView hash,
                                                       ByteView key_spki, ByteView signature,
                                                       const std::string& ts);
    [[nodiscard]] static Result<std::uint64_t> last_checkpoint(Db& db);  // 0: none

    // Records with seq > after_seq, oldest first, at most `limit`.
    [[nodiscard]] static Result<std::vector<web::AuditRecord>> tail(Db& db, std::uint64_t after_seq,
                                                                    std::size_t limit);

    [[nodiscard]] static Bytes record_hash(ByteView prev_hash, std::uint64_t seq,
                                           const std::string& ts, const AuditEntry& e);
};

}  // namespace signet::daemon
