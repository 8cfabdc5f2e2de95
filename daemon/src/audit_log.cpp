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

namespace {

Result<web::AuditVerification> verify_snapshot(Db& db, const AuditLog::VerifyOptions& o) {
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
        const Bytes h = AuditLog::record_hash(prev, seq, st.text(1), e);
        if (h != st.blob(8)) return fail(seq, "content does not match its hash (edited)");
        prev = h;
        ++expected;
        ++v.records;
    }

    // Checkpoints: each genuinely signed, chained to the previous one, and covering a record that
    // is present with the signed hash.
    auto cp = SIGNET_TRY(db.prepare(
        "SELECT c.seq, c.hash, c.key_spki, c.signature, c.ts, a.hash FROM audit_checkpoints c "
        "LEFT JOIN audit a ON a.seq = c.seq ORDER BY c.seq"));
    Bytes last_key;
    std::uint64_t prev_seq = 0;
    Bytes prev_hash(kHashSize, 0);
    while (SIGNET_TRY(cp.step())) {
        const std::uint64_t seq = cp.uint64(0);
        const Bytes hash = cp.blob(1);
        const Bytes spki = cp.blob(2);
        const Bytes msg = AuditLog::checkpoint_message(seq, hash, prev_seq, prev_hash, cp.text(4));
        const pkcs11::SignRequest req{msg, pkcs11::Input::message, pkcs11::Hash::sha256,
                                      pkcs11::SignatureEncoding::der, pkcs11::RsaPadding::pkcs1v15};
        auto good = pkcs11::verify_signature(pkcs11::Algorithm::ecdsa_p256, spki, req, cp.blob(3));
        if (!good || !*good) {
            return fail(seq,
                        "its HSM-signed checkpoint does not verify (forged, or an earlier "
                        "checkpoint was deleted)");
        }
        if (cp.is_null(5)) {
            return fail(v.records + 1,
                        "missing: records " + std::to_string(v.records + 1) + " to " +
                            std::to_string(seq) +
                            " were deleted (an HSM-signed checkpoint covers record " +
                            std::to_string(seq) + ")");
        }
        if (cp.blob(5) != hash) {
            return fail(seq, "differs from its HSM-signed checkpoint (rewritten)");
        }
        ++v.checkpoints;
        v.last_checkpoint_seq = seq;
        last_key = spki;
        prev_seq = seq;
        prev_hash = hash;
    }
    if (o.pinned_spki && !o.anchor_from_hsm && v.records > 0 && v.checkpoints == 0) {
        return fail(1,
                    "no HSM-signed checkpoint covers the log (checkpoints are written every "
                    "10 s while there is activity and at shutdown; they were deleted if this "
                    "appliance ran longer)");
    }
    if (o.pinned_spki && v.checkpoints > 0 && last_key != *o.pinned_spki) {
        return fail(*v.last_checkpoint_seq,
                    "the newest checkpoint is not signed by the appliance's audit key");
    }
    if (o.anchor && o.anchor->first > v.last_checkpoint_seq.value_or(0)) {
        return fail(o.anchor->first,
                    "the HSM recorded a checkpoint at this record, but the database's newest is " +
                        std::to_string(v.last_checkpoint_seq.value_or(0)) +
                        " (checkpoints and records deleted)");
    }
    v.ok = true;
    return v;
}

}  // namespace

Result<web::AuditVerification> AuditLog::verify(Db& db, const VerifyOptions& o) {
    // One snapshot for both tables: a checkpoint committed between the two reads must not look
    // like a deletion.
    SIGNET_TRY(db.exec("BEGIN"));
    auto v = verify_snapshot(db, o);
    (void)db.exec("COMMIT");
    if (v && v->ok && o.anchor) {
        // The anchored record must be present and unchanged.
        auto st = SIGNET_TRY(db.prepare("SELECT hash FROM audit WHERE seq = ?"));
        st.bind(1, o.anchor->first);
        if (!SIGNET_TRY(st.step()) || st.blob(0) != o.anchor->second) {
            v->ok = false;
            v->first_bad_seq = o.anchor->first;
            v->reason = "record " + std::to_string(o.anchor->first) +
                        ": differs from the checkpoint recorded in the HSM";
        }
    }
    return v;
}

Result<web::AuditVerification> AuditLog::verify(Db& db) { return verify(db, VerifyOptions{}); }

Result<std::optional<std::pair<std::uint64_t, Bytes>>> AuditLog::head(Db& db) {
    auto st = SIGNET_TRY(db.cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"));
    if (!SIGNET_TRY(st->step())) return std::optional<std::pair<std::uint64_t, Bytes>>{};
    return std::optional<std::pair<std::uint64_t, Bytes>>{{st->uint64(0), st->blob(1)}};
}

Result<std::optional<std::pair<std::uint64_t, Bytes>>> AuditLog::newest_checkpoint(Db& db) {
    auto st =
        SIGNET_TRY(db.cached("SELECT seq, hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1"));
    if (!SIGNET_TRY(st->step())) return std::optional<std::pair<std::uint64_t, Bytes>>{};
    return std::optional<std::pair<std::uint64_t, Bytes>>{{st->uint64(0), st->blob(1)}};
}

Bytes AuditLog::checkpoint_message(std::uint64_t seq, ByteView hash, std::uint64_t prev_seq,
                                   ByteView prev_hash, const std::string& ts) {
    constexpr std::string_view kTag = "signet.audit.checkpoint.v1";
    Bytes msg(kTag.begin(), kTag.end());
    msg.push_back(0);
    put_u64(msg, seq);
    msg.insert(msg.end(), hash.begin(), hash.end());
    put_u64(msg, prev_seq);
    msg.insert(msg.end(), prev_hash.begin(), prev_hash.end());
    put_field(msg, ts);
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
