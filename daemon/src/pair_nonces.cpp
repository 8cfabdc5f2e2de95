#include "pair_nonces.hpp"

#include <algorithm>
#include <charconv>
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

// "f-l,f-l" (meta 'ha.held.<key>').
std::string encode_ranges(const std::vector<std::pair<std::uint64_t, std::uint64_t>>& r) {
    std::string out;
    for (const auto& [f, l] : r) {
        if (!out.empty()) out += ',';
        out += std::to_string(f) + "-" + std::to_string(l);
    }
    return out;
}

std::vector<std::pair<std::uint64_t, std::uint64_t>> decode_ranges(const std::string& text) {
    std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t end = std::min(text.find(',', pos), text.size());
        const std::string item = text.substr(pos, end - pos);
        const std::size_t dash = item.find('-');
        std::uint64_t f = 0, l = 0;
        if (dash != std::string::npos &&
            std::from_chars(item.data(), item.data() + dash, f).ec == std::errc{} &&
            std::from_chars(item.data() + dash + 1, item.data() + item.size(), l).ec ==
                std::errc{} &&
            f <= l) {
            out.emplace_back(f, l);
        }
        pos = end + 1;
    }
    return out;
}

Result<void> stage_held(Db& txn, const std::string& key_id, const std::string& ranges) {
    if (ranges.empty()) {
        auto del = SIGNET_TRY(txn.cached("DELETE FROM meta WHERE name = ?"));
        del->bind(1, "ha.held." + key_id);
        return del->run();
    }
    auto st = SIGNET_TRY(txn.cached(
        "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = "
        "excluded.value"));
    st->bind(1, "ha.held." + key_id).bind(2, ranges);
    return st->run();
}

std::string gap_details(std::uint64_t first, std::uint64_t last, const std::string& reason) {
    return R"({"nonce":)" + std::to_string(first) + R"(,"last":)" + std::to_string(last) +
           R"(,"reason":")" + json_escape(reason) + "\"}";
}

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

Result<void> PairNonceAuthority::load(Db& reader) {
    auto st = SIGNET_TRY(reader.prepare("SELECT key_id, last_issued FROM counters"));
    std::unordered_map<std::string, std::uint64_t> marks;
    while (SIGNET_TRY(st.step())) marks[st.text(0)] = st.uint64(1);
    {
        const std::lock_guard lock(mu_);
        floors_ = marks;
    }
    // Ranges held when the appliance last stopped without burning them (a crash): every value
    // above the last one released locally was never issued by this appliance.
    auto hs = SIGNET_TRY(
        reader.prepare("SELECT name, value FROM meta WHERE name LIKE 'ha.held.%' ORDER BY name"));
    struct Gap {
        std::string key;
        std::uint64_t first, last;
    };
    std::vector<Gap> gaps;
    std::vector<std::string> rows;
    while (SIGNET_TRY(hs.step())) {
        rows.push_back(hs.text(0));
        const std::string key = rows.back().substr(std::string_view("ha.held.").size());
        const std::uint64_t released = marks.count(key) ? marks[key] : 0;
        for (const auto& [f, l] : decode_ranges(hs.text(1))) {
            const std::uint64_t lo = std::max(f, released + 1);
            if (lo <= l) gaps.push_back({key, lo, l});
        }
    }
    if (rows.empty()) return ok();
    const std::string ts = format_rfc3339(clock_->wall());
    return committer_->submit([&](Db& txn) -> Result<void> {
        for (const Gap& g : gaps) {
            SIGNET_TRY(AuditLog::append(
                txn,
                {"system", "nonce.gap", g.key, "gap",
                 gap_details(g.first, g.last,
                             "held by this appliance when it stopped without releasing them (a "
                             "crash); never issued")},
                ts));
        }
        for (const auto& name : rows) {
            auto del = SIGNET_TRY(txn.cached("DELETE FROM meta WHERE name = ?"));
            del->bind(1, name);
            SIGNET_TRY(del->run());
        }
        return ok();
    });
}

std::string PairNonceAuthority::Held::text(const std::string& key_id) {
    const std::lock_guard lock(mu);
    const auto it = ranges.find(key_id);
    return it == ranges.end() ? std::string() : encode_ranges(it->second);
}

void PairNonceAuthority::record_reserved(const std::string& key_id, std::uint64_t first,
                                         std::uint64_t last) {
    {
        const std::lock_guard lock(held_->mu);
        Ranges& r = held_->ranges[key_id];
        const std::uint64_t released = held_->released[key_id];
        std::erase_if(r, [&](const auto& range) { return range.second <= released; });
        r.emplace_back(first, last);
    }
    // Queued, not waited for: the committer runs work in order, so this write commits in the same
    // transaction as, or one before, the release of any value of the range (which is queued only
    // after the allocator hands the value out); a strict batch does not wait for a second fsync.
    // Strict batches call this concurrently (ha::NonceAllocator::on_reserve): the value is read
    // when the work runs, so whichever write runs last holds this range too. Should it fail (the
    // committer logs it), the values are still burnt-safe (etcd holds them); only their gap
    // record after a crash would be missing.
    committer_->post([key_id, first, last, h = held_](Db& txn) -> Result<void> {
        if (auto r = stage_held(txn, key_id, h->text(key_id)); !r) {
            return r.error().within("record held nonces " + std::to_string(first) + "-" +
                                    std::to_string(last) + " of key " + key_id);
        }
        return ok();
    });
}

Result<void> PairNonceAuthority::apply_local_floor(const std::string& key_id) {
    std::uint64_t floor = 0;
    {
        const std::lock_guard lock(mu_);
        const auto it = floors_.find(key_id);
        if (it == floors_.end()) return ok();
        floor = it->second;
    }
    if (auto r = allocator_->raise(key_id, floor); !r) {
        return r.error().within("raise key " + key_id + "'s pair counter past its local mark " +
                                std::to_string(floor));
    }
    const std::lock_guard lock(mu_);
    floors_.erase(key_id);
    return ok();
}

Result<NonceTicket> PairNonceAuthority::next(const std::string& key_id) {
    SIGNET_TRY(apply_local_floor(key_id));
    const std::uint64_t v = SIGNET_TRY(allocator_->next(key_id));
    return NonceTicket{key_id, v};
}

Result<void> PairNonceAuthority::stage_release(Db& txn, const NonceTicket& t) {
    // The HSM call may have outlived the role: a value is released only while it is provably held
    // (the signing service checks the role too; this keeps the authority's own invariant).
    if (auto r = fence_->check(); !r) return r.error().within("release nonce");
    return stage_counter_high_water(txn, t.key_id, t.value);
}

void PairNonceAuthority::finish(const NonceTicket& t, bool committed) {
    if (!committed) {
        burn(t, "the release could not be made durable or the role was lost");
        return;
    }
    const std::lock_guard lock(held_->mu);
    auto& r = held_->released[t.key_id];
    r = std::max(r, t.value);
}

void PairNonceAuthority::burn(const NonceTicket& t, const std::string& reason) {
    audit_gap(t.key_id, t.value, t.value, reason);
}

void PairNonceAuthority::audit_gap(const std::string& key_id, std::uint64_t first,
                                   std::uint64_t last, const std::string& reason) {
    // The values are already burnt in etcd (the high-water mark is above them): this record only
    // tells the operator why they were never issued. They leave the held ranges in the same
    // transaction, so a later crash does not report them twice.
    bool held = false;
    {
        const std::lock_guard lock(held_->mu);
        if (auto it = held_->ranges.find(key_id); it != held_->ranges.end()) {
            Ranges kept;
            for (const auto& [f, l] : it->second) {
                if (l < first || f > last) {
                    kept.emplace_back(f, l);
                    continue;
                }
                if (f < first) kept.emplace_back(f, first - 1);
                if (l > last) kept.emplace_back(last + 1, l);
            }
            it->second = kept;
            held = true;
        }
    }
    const std::string ts = format_rfc3339(clock_->wall());
    committer_->post([key_id, details = gap_details(first, last, reason), ts, held,
                      h = held_](Db& txn) -> Result<void> {
        SIGNET_TRY(AuditLog::append(txn, {"system", "nonce.gap", key_id, "gap", details}, ts));
        if (held) SIGNET_TRY(stage_held(txn, key_id, h->text(key_id)));
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
