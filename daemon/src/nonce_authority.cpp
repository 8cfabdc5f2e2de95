#include "nonce_authority.hpp"

#include <vector>

#include "signet/core/json.hpp"

namespace signet::daemon {

class LocalNonceAuthority::Claim final : public ReservationClaim {
public:
    Claim(std::shared_ptr<KeyCounter> c, std::string key_id, std::uint64_t value)
        : counter_(std::move(c)), key_id_(std::move(key_id)), value_(value) {}
    ~Claim() override {
        const std::lock_guard lock(counter_->mu);
        counter_->claimed.erase(value_);
        if (consumed_) counter_->reserved.erase(value_);
    }
    const std::string& key_id() const noexcept override { return key_id_; }
    std::uint64_t value() const noexcept override { return value_; }
    void consumed() noexcept override { consumed_ = true; }

private:
    std::shared_ptr<KeyCounter> counter_;
    std::string key_id_;
    std::uint64_t value_;
    bool consumed_ = false;
};

LocalNonceAuthority::LocalNonceAuthority(std::shared_ptr<Committer> committer,
                                         std::shared_ptr<const Clock> clock,
                                         std::shared_ptr<Logger> logger)
    : committer_(std::move(committer)), clock_(std::move(clock)), logger_(std::move(logger)) {}

std::shared_ptr<LocalNonceAuthority::KeyCounter> LocalNonceAuthority::counter(
    const std::string& key_id) {
    const std::lock_guard lock(mu_);
    auto& c = counters_[key_id];
    if (!c) c = std::make_shared<KeyCounter>();
    return c;
}

Result<void> LocalNonceAuthority::load(Db& reader) {
    auto cs = SIGNET_TRY(reader.prepare("SELECT key_id, last_issued FROM counters"));
    while (SIGNET_TRY(cs.step())) {
        auto c = counter(cs.text(0));
        c->last_allocated = c->durable = cs.uint64(1);
    }
    auto rs = SIGNET_TRY(reader.prepare("SELECT key_id, value, client_id FROM reservations"));
    while (SIGNET_TRY(rs.step())) counter(rs.text(0))->reserved[rs.uint64(1)] = rs.text(2);

    // Every row left in nonce_pending was allocated, never released, and lies below a durable
    // value: a gap from a crash. Audit each and clear them in one transaction.
    std::vector<NonceTicket> gaps;
    auto ps = SIGNET_TRY(
        reader.prepare("SELECT key_id, value FROM nonce_pending ORDER BY key_id, value"));
    while (SIGNET_TRY(ps.step())) gaps.push_back({ps.text(0), ps.uint64(1)});
    if (gaps.empty()) return ok();
    const std::string ts = format_rfc3339(clock_->wall());
    return committer_->submit([&](Db& txn) -> Result<void> {
        for (const NonceTicket& g : gaps) {
            auto del =
                SIGNET_TRY(txn.cached("DELETE FROM nonce_pending WHERE key_id = ? AND value = ?"));
            del->bind(1, g.key_id).bind(2, g.value);
            SIGNET_TRY(del->run());
            SIGNET_TRY(AuditLog::append(
                txn,
                {"system", "nonce.gap", g.key_id, "gap",
                 R"({"nonce":)" + std::to_string(g.value) +
                     R"(,"reason":"allocated before a crash and never released; never reissued"})"},
                ts));
        }
        return ok();
    });
}

Result<NonceTicket> LocalNonceAuthority::next(const std::string& key_id) {
    auto c = counter(key_id);
    const std::lock_guard lock(c->mu);
    const std::uint64_t v = ++c->last_allocated;
    c->outstanding.insert(v);
    return NonceTicket{key_id, v};
}

Result<void> stage_counter_high_water(Db& txn, const std::string& key_id, std::uint64_t value) {
    auto st = SIGNET_TRY(txn.cached(
        "INSERT INTO counters (key_id, last_issued) VALUES (?, ?) ON CONFLICT(key_id) DO UPDATE "
        "SET last_issued = MAX(last_issued, excluded.last_issued)"));
    st->bind(1, key_id).bind(2, value);
    return st->run();
}

Result<void> stage_reservation(Db& txn, const std::string& key_id, std::uint64_t value,
                               const std::string& client_id, AuditEntry audit,
                               const std::string& ts) {
    auto ins = SIGNET_TRY(txn.cached(
        "INSERT INTO reservations (key_id, value, client_id, created_at) VALUES (?,?,?,?)"));
    ins->bind(1, key_id).bind(2, value).bind(3, client_id).bind(4, ts);
    SIGNET_TRY(ins->run());
    audit.details_json = R"({"nonce":)" + std::to_string(value) + "}";
    SIGNET_TRY(AuditLog::append(txn, audit, ts));
    return ok();
}

Result<void> LocalNonceAuthority::stage_release(Db& txn, const NonceTicket& t) {
    auto c = counter(t.key_id);
    std::vector<std::uint64_t> lower;  // outstanding values below t that need a pending row
    {
        const std::lock_guard lock(c->mu);
        c->staged.insert(t.value);
        for (const std::uint64_t v : c->outstanding) {
            if (v >= t.value) break;
            // A value released in this same transaction needs no row; nor one that has it.
            if (c->staged.contains(v) || c->rows.contains(v) || c->rows_txn.contains(v)) continue;
            lower.push_back(v);
        }
        c->rows_txn.insert(lower.begin(), lower.end());
    }
    txn.on_rollback([c, t, lower] {
        const std::lock_guard lock(c->mu);
        c->staged.erase(t.value);
        for (const std::uint64_t v : lower) c->rows_txn.erase(v);
    });
    txn.on_commit([c, t, lower] {
        const std::lock_guard lock(c->mu);
        for (const std::uint64_t v : lower) {
            c->rows_txn.erase(v);
            c->rows.insert(v);
        }
        c->rows.erase(t.value);
        c->staged.erase(t.value);
        c->outstanding.erase(t.value);
        c->durable = std::max(c->durable, t.value);
    });
    for (const std::uint64_t v : lower) {
        auto ins = SIGNET_TRY(
            txn.cached("INSERT OR IGNORE INTO nonce_pending (key_id, value) VALUES (?, ?)"));
        ins->bind(1, t.key_id).bind(2, v);
        SIGNET_TRY(ins->run());
    }
    auto del = SIGNET_TRY(txn.cached("DELETE FROM nonce_pending WHERE key_id = ? AND value = ?"));
    del->bind(1, t.key_id).bind(2, t.value);
    SIGNET_TRY(del->run());
    return stage_counter_high_water(txn, t.key_id, t.value);
}

void LocalNonceAuthority::finish(const NonceTicket& t, bool committed) {
    // A committed release was recorded by its commit hook; one that did not commit is burnt.
    if (!committed) burn(t, "the release could not be made durable");
}

void LocalNonceAuthority::burn(const NonceTicket& t, const std::string& reason) {
    auto c = counter(t.key_id);
    const std::string ts = format_rfc3339(clock_->wall());
    // The value stays outstanding until its gap record is durable: until then, any higher value
    // made durable also writes a pending row for it, so a crash still reports it as a gap.
    auto r = committer_->submit([&](Db& txn) -> Result<void> {
        auto del =
            SIGNET_TRY(txn.cached("DELETE FROM nonce_pending WHERE key_id = ? AND value = ?"));
        del->bind(1, t.key_id).bind(2, t.value);
        SIGNET_TRY(del->run());
        SIGNET_TRY(stage_counter_high_water(txn, t.key_id, t.value));
        SIGNET_TRY(AuditLog::append(txn,
                                    {"system", "nonce.gap", t.key_id, "gap",
                                     R"({"nonce":)" + std::to_string(t.value) + R"(,"reason":")" +
                                         json_escape(reason) + "\"}"},
                                    ts));
        txn.on_commit([c, t] {
            const std::lock_guard lock(c->mu);
            c->outstanding.erase(t.value);
            c->rows.erase(t.value);
            c->durable = std::max(c->durable, t.value);
        });
        return ok();
    });
    if (!r) {
        // Still outstanding: never reissued (allocation only moves up), and recorded as a gap by
        // the next durable release's pending row or at restart.
        logger_->log(LogLevel::error, "nonces", "gap_record_deferred",
                     {{"key", t.key_id}, {"nonce", t.value}, {"error", r.error().message()}});
    }
}

Result<std::uint64_t> LocalNonceAuthority::reserve(const std::string& key_id,
                                                   const std::string& client_id,
                                                   const AuditEntry& audit) {
    const NonceTicket t = SIGNET_TRY(next(key_id));
    const std::string ts = format_rfc3339(clock_->wall());
    auto r = committer_->submit([&](Db& txn) -> Result<void> {
        SIGNET_TRY(stage_release(txn, t));
        SIGNET_TRY(stage_reservation(txn, key_id, t.value, client_id, audit, ts));
        return ok();
    });
    finish(t, r.has_value());
    if (!r) return r.error();
    auto c = counter(key_id);
    const std::lock_guard lock(c->mu);
    c->reserved[t.value] = client_id;
    return t.value;
}

Result<std::unique_ptr<ReservationClaim>> LocalNonceAuthority::claim(const std::string& key_id,
                                                                     std::uint64_t value,
                                                                     const std::string& client_id) {
    auto c = counter(key_id);
    const std::lock_guard lock(c->mu);
    const auto it = c->reserved.find(value);
    if (it == c->reserved.end()) {
        return make_error(Errc::reservation_invalid,
                          "nonce " + std::to_string(value) +
                              " is not reserved for this key, or was already used");
    }
    if (it->second != client_id) {
        return make_error(Errc::reservation_invalid,
                          "nonce " + std::to_string(value) + " was reserved by another client");
    }
    if (!c->claimed.insert(value).second) {
        return make_error(Errc::conflict, "nonce " + std::to_string(value) +
                                              " is being used by another request right now");
    }
    return std::unique_ptr<ReservationClaim>(std::make_unique<Claim>(c, key_id, value));
}

Result<void> LocalNonceAuthority::stage_consume(Db& txn, const ReservationClaim& claim) {
    auto del = SIGNET_TRY(txn.cached("DELETE FROM reservations WHERE key_id = ? AND value = ?"));
    del->bind(1, claim.key_id()).bind(2, claim.value());
    SIGNET_TRY(del->run());
    if (txn.changes() != 1) {
        return make_error(Errc::reservation_invalid,
                          "nonce " + std::to_string(claim.value()) + " is no longer reserved");
    }
    return ok();
}

Result<web::CounterState> LocalNonceAuthority::state(const std::string& key_id) {
    auto c = counter(key_id);
    const std::lock_guard lock(c->mu);
    return web::CounterState{key_id, c->durable, c->reserved.size()};
}

void LocalNonceAuthority::forget(const std::string& key_id) {
    auto c = counter(key_id);
    const std::lock_guard lock(c->mu);
    c->reserved.clear();
}

}  // namespace signet::daemon
