#include "audit_log.hpp"

#include <openssl/evp.h>

#include <memory>

#include "signet/pkcs11/signature.hpp"

namespace signet::daemon {
namespace {

constexpr std::size_t kHashSize = 32;

void put_u64(Bytes& out, std::uint64_t v) {
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

void put_field(Bytes& out, const std::string& s) {
    const auto n = static_cast<std::uint32_t>(s.size());
    for (int i = 3; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(n >> (8 * i)));
    out.insert(out.end(), s.begin(), s.end());
}

}  // namespace

Bytes AuditLog::record_hash(ByteView prev_hash, std::uint64_t seq, const std::string& ts,
                            const AuditEntry& e) {
    Bytes msg(prev_hash.begin(), prev_hash.end());
    put_u64(msg, seq);
    for (const std::string* f :
         {&ts, &e.actor, &e.action, &e.subject, &e.outcome, &e.details_json}) {
        put_field(msg, *f);
    }
    Bytes out(kHashSize);
    unsigned int len = 0;
    EVP_Digest(msg.data(), msg.size(), out.data(), &len, EVP_sha256(), nullptr);
    return out;
}

Result<std::uint64_t> AuditLog::append(Db& db, const AuditEntry& e, const std::string& ts) {
    // Read the head inside the transaction: it sees this batch's earlier, uncommitted records.
    Bytes prev(kHashSize, 0);
    std::uint64_t seq = 1;
    if (auto h = SIGNET_TRY(head(db))) {
        seq = h->first + 1;
        prev = std::move(h->second);
    }
    const Bytes hash = record_hash(prev, seq, ts, e);
    auto ins = SIGNET_TRY(db.cached(
        "INSERT INTO audit (seq, ts, actor, action, subject, outcome, details, prev_hash, hash) "
        "VALUES (?,?,?,?,?,?,?,?,?)"));
    ins->bind(1, seq).bind(2, ts).bind(3, e.actor).bind(4, e.action).bind(5, e.subject);
    ins->bind(6, e.outcome).bind(7, e.details_json).bind(8, prev).bind(9, hash);
    SIGNET_TRY(ins->run());
    return seq;
}

Result<web::AuditVerification> AuditLog::verify(Db& db, const std::optional<Bytes>& pinned_spki) {
    web::AuditVerification v;
    auto fail = [&](std::uint64_t seq, std::string why) {
        v.ok = false;
        v.first_bad_seq = seq;
        v.reason = "record " + std::to_string(seq) + ": " + std::move(why);
        return v;
    };
    auto st = SIGNET_TRY(db.prepare(
        "SELECT seq, ts, actor, action, subject, outcome, details, prev_hash, hash FROM audit "
        "ORDER BY seq"));
    Bytes prev(kHashSize, 0);
    std::uint64_t expected = 1;
    while (SIGNET_TRY(st.step())) {
        const std::uint64_t seq = st.uint64(0);
        if (seq != expected) {
            return fail(seq, "sequence jumps from " + std::to_string(expected - 1) + " to " +
                                 std::to_string(seq) + " (records deleted)");
        }
        if (st.blob(7) != prev) {
            return fail(seq, "does not link to the previous record (deleted or reordered)");
        }
        AuditEntry e{st.text(2), st.text(3), st.text(4), st.text(5), st.text(6)};
        const Bytes h = record_hash(prev, seq, st.text(1), e);
        if (h != st.blob(8)) return fail(seq, "content does not match its hash (edited)");
        prev = h;
        ++expected;
        ++v.records;
    }

    // Checkpoints: each must be genuinely signed and match the record it covers.
    auto cp = SIGNET_TRY(
        db.prepare("SELECT c.seq, c.hash, c.key_spki, c.signature, a.hash FROM audit_checkpoints c "
                   "LEFT JOIN audit a ON a.seq = c.seq ORDER BY c.seq"));
    Bytes last_key;
    while (SIGNET_TRY(cp.step())) {
        const std::uint64_t seq = cp.uint64(0);
        const Bytes hash = cp.blob(1);
        const Bytes spki = cp.blob(2);
        const Bytes msg = checkpoint_message(seq, hash);
        const pkcs11::SignRequest req{msg, pkcs11::Input::message, pkcs11::Hash::sha256,
                                      pkcs11::SignatureEncoding::der, pkcs11::RsaPadding::pkcs1v15};
        auto good = pkcs11::verify_signature(pkcs11::Algorithm::ecdsa_p256, spki, req, cp.blob(3));
        if (!good || !*good) return fail(seq, "its signed checkpoint has a bad signature (forged)");
        if (cp.is_null(4)) {
            return fail(v.records + 1,
                        "missing: records " + std::to_string(v.records + 1) + " to " +
                            std::to_string(seq) +
                            " were deleted (an HSM-signed checkpoint covers record " +
                            std::to_string(seq) + ")");
        }
        if (cp.blob(4) != hash)
            return fail(seq, "differs from its HSM-signed checkpoint (rewritten)");
        ++v.checkpoints;
        v.last_checkpoint_seq = seq;
        last_key = spki;
    }
    if (pinned_spki && v.checkpoints > 0 && last_key != *pinned_spki) {
        return fail(*v.last_checkpoint_seq,
                    "the newest checkpoint is not signed by the appliance's audit key");
    }
    v.ok = true;
    return v;
}

Result<std::optional<std::pair<std::uint64_t, Bytes>>> AuditLog::head(Db& db) {
    auto st = SIGNET_TRY(db.cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"));
    if (!SIGNET_TRY(st->step())) return std::optional<std::pair<std::uint64_t, Bytes>>{};
    return std::optional<std::pair<std::uint64_t, Bytes>>{{st->uint64(0), st->blob(1)}};
}

Bytes AuditLog::checkpoint_message(std::uint64_t seq, ByteView hash) {
    constexpr std::string_view kTag = "signet.audit.checkpoint.v1";
    Bytes msg(kTag.begin(), kTag.end());
    msg.push_back(0);
    put_u64(msg, seq);
    msg.insert(msg.end(), hash.begin(), hash.end());
    return msg;
}

Result<void> AuditLog::stage_checkpoint(Db& txn, std::uint64_t seq, ByteView hash,
                                        ByteView key_spki, ByteView signature,
                                        const std::string& ts) {
    auto st = SIGNET_TRY(txn.cached(
        "INSERT INTO audit_checkpoints (seq, hash, key_spki, signature, ts) VALUES (?,?,?,?,?)"));
    st->bind(1, seq).bind(2, hash).bind(3, key_spki).bind(4, signature).bind(5, ts);
    return st->run();
}

Result<std::uint64_t> AuditLog::last_checkpoint(Db& db) {
    auto st = SIGNET_TRY(db.cached("SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints"));
    SIGNET_TRY(st->step());
    return st->uint64(0);
}

Result<std::vector<web::AuditRecord>> AuditLog::tail(Db& db, std::uint64_t after_seq,
                                                     std::size_t limit) {
    auto st = SIGNET_TRY(db.prepare(
        "SELECT seq, ts, actor, action, subject, outcome, details, hash FROM audit WHERE seq > ? "
        "ORDER BY seq LIMIT ?"));
    st.bind(1, after_seq).bind(2, static_cast<std::int64_t>(limit));
    std::vector<web::AuditRecord> out;
    while (SIGNET_TRY(st.step())) {
        web::AuditRecord r;
        r.seq = st.uint64(0);
        r.ts = st.text(1);
        r.actor = st.text(2);
        r.action = st.text(3);
        r.subject = st.text(4);
        r.outcome = st.text(5);
        r.details_json = st.text(6);
        r.hash_hex = hex_encode(st.blob(7));
        out.push_back(std::move(r));
    }
    return out;
}

}  // namespace signet::daemon
