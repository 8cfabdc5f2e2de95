#include "watermark_guard.hpp"

#include <algorithm>
#include <boost/json/parse.hpp>

#include "signet/core/clock.hpp"

namespace signet::daemon {

std::string to_string(const Watermark& w) {
    std::string out = "[";
    for (std::size_t i = 0; i < w.size(); ++i) {
        if (i) out += ',';
        out += std::to_string(w[i]);
    }
    return out + "]";
}

class LocalWatermarkGuard::Lease final : public WatermarkLease {
public:
    Lease(std::shared_ptr<KeyMark> m, std::unique_lock<std::mutex> lock, std::string key_id,
          Watermark w, Bytes hash)
        : mark_(std::move(m)),
          lock_(std::move(lock)),
          key_id_(std::move(key_id)),
          watermark_(std::move(w)),
          hash_(std::move(hash)) {}
    const std::string& key_id() const noexcept override { return key_id_; }
    const Watermark& watermark() const noexcept override { return watermark_; }
    ByteView payload_hash() const noexcept override { return hash_; }
    void committed() noexcept override {
        // The lock is held: the in-memory copy follows the durable one.
        mark_->watermark = watermark_;
        mark_->payload_hash = hash_;
    }

private:
    std::shared_ptr<KeyMark> mark_;
    std::unique_lock<std::mutex> lock_;
    std::string key_id_;
    Watermark watermark_;
    Bytes hash_;
};

std::shared_ptr<LocalWatermarkGuard::KeyMark> LocalWatermarkGuard::mark(const std::string& key_id) {
    const std::lock_guard lock(mu_);
    auto& m = marks_[key_id];
    if (!m) m = std::make_shared<KeyMark>();
    return m;
}

Result<void> LocalWatermarkGuard::load(Db& reader) {
    auto st = SIGNET_TRY(reader.prepare("SELECT key_id, watermark, payload_hash FROM watermarks"));
    while (SIGNET_TRY(st.step())) {
        auto w = parse_watermark(st.text(1));
        if (!w) {
            return make_error(Errc::internal,
                              "stored watermark of key " + st.text(0) + " is corrupt");
        }
        auto m = mark(st.text(0));
        const std::lock_guard lock(m->mu);
        m->watermark = std::move(w).value();
        m->payload_hash = st.blob(2);
    }
    return ok();
}

Result<void> check_watermark(const Watermark& stored, ByteView stored_hash, const Watermark& w,
                             ByteView payload_hash, bool allow_equal) {
    if (w.empty()) return make_error(Errc::invalid_argument, "watermark must not be empty");
    if (stored.empty()) return ok();
    if (w.size() != stored.size()) {
        return make_error(Errc::unprocessable, "watermark " + to_string(w) + " must have " +
                                                   std::to_string(stored.size()) +
                                                   " numbers, like the stored " +
                                                   to_string(stored));
    }
    const auto cmp =
        std::lexicographical_compare_three_way(w.begin(), w.end(), stored.begin(), stored.end());
    if (cmp < 0) {
        return make_error(Errc::watermark_regression, "watermark " + to_string(w) +
                                                          " is below the stored " +
                                                          to_string(stored) + "; refusing to sign");
    }
    if (cmp == 0 && (!allow_equal || !std::ranges::equal(payload_hash, stored_hash))) {
        return make_error(Errc::watermark_regression,
                          "watermark " + to_string(w) + " was already signed" +
                              (allow_equal ? " with a different payload"
                                           : " (a new nonce would make a different message)") +
                              "; refusing to double-sign");
    }
    return ok();
}

Result<Watermark> parse_watermark(std::string_view text) {
    boost::system::error_code ec;
    const auto v = boost::json::parse(text, ec);
    if (ec || !v.is_array()) return make_error(Errc::invalid_argument, "not a watermark array");
    Watermark w;
    for (const auto& e : v.as_array()) {
        if (!e.is_uint64() && !(e.is_int64() && e.as_int64() >= 0)) {
            return make_error(Errc::invalid_argument, "watermark entries must be whole numbers");
        }
        w.push_back(e.is_uint64() ? e.as_uint64() : static_cast<std::uint64_t>(e.as_int64()));
    }
    return w;
}

Result<void> stage_watermark_row(Db& txn, const std::string& key_id, const Watermark& w,
                                 ByteView payload_hash) {
    auto st = SIGNET_TRY(txn.cached(
        "INSERT INTO watermarks (key_id, watermark, payload_hash, updated_at) VALUES (?,?,?,?) "
        "ON CONFLICT(key_id) DO UPDATE SET watermark=excluded.watermark, "
        "payload_hash=excluded.payload_hash, updated_at=excluded.updated_at"));
    st->bind(1, key_id).bind(2, to_string(w)).bind(3, payload_hash);
    st->bind(4, format_rfc3339(std::chrono::system_clock::now()));
    return st->run();
}

Result<std::unique_ptr<WatermarkLease>> LocalWatermarkGuard::begin(const std::string& key_id,
                                                                   const Watermark& w,
                                                                   ByteView payload_hash,
                                                                   bool allow_equal) {
    auto m = mark(key_id);
    std::unique_lock lock(m->mu);
    SIGNET_TRY(check_watermark(m->watermark, m->payload_hash, w, payload_hash, allow_equal));
    return std::unique_ptr<WatermarkLease>(std::make_unique<Lease>(
        m, std::move(lock), key_id, w, Bytes(payload_hash.begin(), payload_hash.end())));
}

Result<void> LocalWatermarkGuard::stage(Db& txn, const WatermarkLease& lease) {
    return stage_watermark_row(txn, lease.key_id(), lease.watermark(), lease.payload_hash());
}

Watermark LocalWatermarkGuard::current(const std::string& key_id) {
    auto m = mark(key_id);
    const std::lock_guard lock(m->mu);
    return m->watermark;
}

}  // namespace signet::daemon
