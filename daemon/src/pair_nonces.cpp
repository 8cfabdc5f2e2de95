#include "pair_nonces.hpp"

#include <cstdio>

#include "signet/core/json.hpp"

namespace signet::daemon {
namespace {

class PairClaim final : public ReservationClaim {
public:
    PairClaim(std::string key_id, std::uint64_t value)
        : key_id_(std::move(key_id)), value_(value) {}
    const std::string& key_id() const noexcept override { return key_id_; }
    std::uint64_t value() const noexcept override { return value_; }
    void consumed() noexcept override {}  // consumed in etcd when claimed

private:
    std::string key_id_;
    std::uint64_t value_;
};

}  // namespace

PairNonceAuthority::PairNonceAuthority(std::shared_ptr<ha::NonceAllocator> allocator,
                                       std::shared_ptr<const ha::Fence> fence,
                                       std::shared_ptr<ha::Coordinator> coordinator,
                                       std::string prefix, std::shared_ptr<Committer> committer,
                                       std::shared_ptr<const Clock> clock,
                                       std::shared_ptr<Logger> logger, ha::Milliseconds timeout)
    : allocator_(std::move(allocator)),
      fence_(std::move(fence)),
      coordinator_(std::move(coordinator)),
      prefix_(std::move(prefix)),
      committer_(std::move(committer)),
      clock_(std::move(clock)),
      logger_(std::move(logger)),
      timeout_(timeout) {}

std::string PairNonceAuthority::reservation_key(const std::string& key_id,
                                                std::uint64_t value) const {
    // Zero-padded so that a prefix range lists a key's reservations in numeric order.
    char digits[24];
    std::snprintf(digits, sizeof digits, "%020llu", static_cast<unsigned long long>(value));
    return prefix_ + "reservations/" + key_id + "/" + digits;
}

Result<NonceTicket> PairNonceAuthority::next(const std::string& key_id) {
    const std::uint64_t v = SIGNET_TRY(allocator_->next(key_id));
    return NonceTicket{key_id, v};
}

Result<void> PairNonceAuthority::stage_release(Db& txn, const NonceTicket& t) {
    // The HSM call may have outlived the role: a value is released only while it is provably held.
    if (auto r = fence_->check(); !r) return r.error().within("release nonce");
    return stage_counter_high_water(txn, t.key_id, t.value);
}

void PairNonceAuthority::finish(const NonceTicket& t, bool committed) {
    if (!committed) burn(t, "the release could not be made durable or the role was lost");
}

void PairNonceAuthority::burn(const NonceTicket& t, const std::string& reason) {
    audit_gap(t.key_id, t.value, t.value, reason);
}

void PairNonceAuthority::audit_gap(const std::string& key_id, std::uint64_t first,
                                   std::uint64_t last, const std::string& reason) {
    // The values are already burnt in etcd (the high-water mark is above them): this record only
    // tells the operator why they were never issued.
    const std::string ts = format_rfc3339(clock_->wall());
    const std::string details = R"({"nonce":)" + std::to_string(first) + R"(,"last":)" +
                                std::to_string(last) + R"(,"reason":")" + json_escape(reason) +
                                "\"}";
    committer_->post([key_id, details, ts](Db& txn) -> Result<void> {
        SIGNET_TRY(AuditLog::append(txn, {"system", "nonce.gap", key_id, "gap", details}, ts));
        return ok();
    });
}

Result<std::uint64_t> PairNonceAuthority::reserve(const std::string& key_id,
                                                  const std::string& client_id,
                                                  const AuditEntry& audit) {
    const NonceTicket t = SIGNET_TRY(next(key_id));
    ha::TxnRequest req;
    req.compare = fence_->guard();
    req.success.push_back(ha::Op::put(reservation_key(key_id, t.value), client_id));
    auto r = coordinator_->txn(req, timeout_);
    if (!r || !r->succeeded) {
        burn(t, "the reservation could not be recorded in the pair");
        if (!r) return r.error().within("reserve nonce for key " + key_id);
        SIGNET_TRY(fence_->check());
        return make_error(ha::HaErrc::not_active, "this appliance lost its role while reserving");
    }
    const std::string ts = format_rfc3339(clock_->wall());
    auto local = committer_->submit([&](Db& txn) -> Result<void> {
        SIGNET_TRY(stage_counter_high_water(txn, key_id, t.value));
        SIGNET_TRY(stage_reservation(txn, key_id, t.value, client_id, audit, ts));
        return ok();
    });
    // The reservation is durable in the pair even if the local copy failed; the caller gets the
    // error and the value stays reserved (usable on either appliance).
    if (!local) return local.error().within("record reservation locally");
    return t.value;
}

Result<std::unique_ptr<ReservationClaim>> PairNonceAuthority::claim(const std::string& key_id,
                                                                    std::uint64_t value,
                                                                    const std::string& client_id) {
    SIGNET_TRY(fence_->check());
    const std::string k = reservation_key(key_id, value);
    ha::TxnRequest req;
    req.compare = fence_->guard();
    req.compare.push_back(ha::Compare::value_equals(k, client_id));
    req.success.push_back(ha::Op::del(k));
    req.failure.push_back(ha::Op::get(k));
    auto r = coordinator_->txn(req, timeout_);
    if (!r) {
        return r.error().within("consume reserved nonce " + std::to_string(value) +
                                " (it may be spent; reserve another)");
    }
    if (!r->succeeded) {
        SIGNET_TRY(fence_->check());
        const bool present = !r->results.empty() && !r->results.back().empty();
        return make_error(Errc::reservation_invalid,
                          "nonce " + std::to_string(value) +
                              (present ? " was reserved by another client"
                                       : " is not reserved for this key, or was already used"));
    }
    return std::unique_ptr<ReservationClaim>(std::make_unique<PairClaim>(key_id, value));
}

Result<void> PairNonceAuthority::stage_consume(Db& txn, const ReservationClaim& c) {
    // The local row exists only when the reservation was made here.
    auto del = SIGNET_TRY(txn.cached("DELETE FROM reservations WHERE key_id = ? AND value = ?"));
    del->bind(1, c.key_id()).bind(2, c.value());
    return del->run();
}

Result<web::CounterState> PairNonceAuthority::state(const std::string& key_id) {
    const std::uint64_t hw = SIGNET_TRY(allocator_->high_water(key_id));
    const std::string p = prefix_ + "reservations/" + key_id + "/";
    const auto rs = SIGNET_TRY(coordinator_->range(p, ha::prefix_end(p), timeout_));
    return web::CounterState{key_id, hw, rs.kvs.size()};
}

void PairNonceAuthority::forget(const std::string&) {}

}  // namespace signet::daemon
