#include "pair_watermarks.hpp"

#include <boost/json.hpp>
#include <optional>

namespace signet::daemon {
namespace {

struct Stored {
    Watermark w;
    Bytes hash;
    std::int64_t mod_revision = 0;  // 0: no watermark yet
};

Result<Stored> decode(const std::vector<ha::KeyValue>& kvs, const std::string& key_id) {
    Stored s;
    if (kvs.empty()) return s;
    s.mod_revision = kvs.front().mod_revision;
    auto corrupt = [&] {
        return make_error(Errc::internal, "the pair's watermark of key " + key_id +
                                              " is not readable; refusing to sign");
    };
    boost::system::error_code ec;
    const auto v = boost::json::parse(kvs.front().value, ec);
    if (ec || !v.is_object()) return corrupt();
    const auto* w = v.as_object().if_contains("w");
    const auto* h = v.as_object().if_contains("h");
    if (!w || !h || !h->is_string()) return corrupt();
    auto parsed = parse_watermark(boost::json::serialize(*w));
    auto hash = hex_decode(h->as_string());
    if (!parsed || !hash) return corrupt();
    s.w = std::move(parsed).value();
    s.hash = std::move(hash).value();
    return s;
}

}  // namespace

class PairWatermarkGuard::Lease final : public WatermarkLease {
public:
    Lease(std::shared_ptr<std::mutex> m, std::string key_id, Watermark w, Bytes hash)
        : mutex_(std::move(m)),
          lock_(*mutex_, std::adopt_lock),
          key_id_(std::move(key_id)),
          watermark_(std::move(w)),
          hash_(std::move(hash)) {}
    const std::string& key_id() const noexcept override { return key_id_; }
    const Watermark& watermark() const noexcept override { return watermark_; }
    ByteView payload_hash() const noexcept override { return hash_; }
    void committed() noexcept override {}

private:
    std::shared_ptr<std::mutex> mutex_;  // outlives lock_ (declared first)
    std::unique_lock<std::mutex> lock_;
    std::string key_id_;
    Watermark watermark_;
    Bytes hash_;
};

PairWatermarkGuard::PairWatermarkGuard(std::shared_ptr<ha::Coordinator> coordinator,
                                       std::shared_ptr<const ha::Fence> fence, std::string prefix,
                                       ha::Milliseconds timeout)
    : coordinator_(std::move(coordinator)),
      fence_(std::move(fence)),
      prefix_(std::move(prefix)),
      timeout_(timeout) {}

Result<void> PairWatermarkGuard::load(Db& reader) {
    auto st = SIGNET_TRY(reader.prepare("SELECT key_id, watermark, payload_hash FROM watermarks"));
    const std::lock_guard lock(mu_);
    while (SIGNET_TRY(st.step())) {
        auto w = parse_watermark(st.text(1));
        if (!w) {
            return make_error(Errc::internal,
                              "stored watermark of key " + st.text(0) + " is corrupt");
        }
        local_[st.text(0)] = {std::move(w).value(), st.blob(2)};
    }
    return ok();
}

std::shared_ptr<std::mutex> PairWatermarkGuard::key_lock(const std::string& key_id) {
    const std::lock_guard lock(mu_);
    auto& m = locks_[key_id];
    if (!m) m = std::make_shared<std::mutex>();
    return m;
}

Result<std::unique_ptr<WatermarkLease>> PairWatermarkGuard::begin(const std::string& key_id,
                                                                  const Watermark& w,
                                                                  ByteView payload_hash,
                                                                  bool allow_equal) {
    SIGNET_TRY(fence_->check());
    auto m = key_lock(key_id);
    std::unique_lock lock(*m);
    const std::string k = prefix_ + "watermarks/" + key_id;
    auto read = SIGNET_TRY(coordinator_->range(k, {}, timeout_));
    std::vector<ha::KeyValue> kvs = std::move(read.kvs);
    boost::json::object value{{"w", boost::json::value_from(w)}, {"h", hex_encode(payload_hash)}};
    const std::string text = boost::json::serialize(value);
    // Two rounds: a CAS lost to the peer re-checks against what the peer wrote.
    std::optional<LocalMark> local;
    {
        const std::lock_guard g(mu_);
        if (const auto it = local_.find(key_id); it != local_.end()) local = it->second;
    }
    for (int round = 0; round < 2; ++round) {
        const Stored s = SIGNET_TRY(decode(kvs, key_id));
        SIGNET_TRY(check_watermark(s.w, s.hash, w, payload_hash, allow_equal));
        // The local copy is a floor too (the pair's value may be missing or older).
        if (local) SIGNET_TRY(check_watermark(local->w, local->hash, w, payload_hash, allow_equal));
        ha::TxnRequest req;
        req.compare = fence_->guard();
        req.compare.push_back(ha::Compare::mod_revision_equals(k, s.mod_revision));
        req.success.push_back(ha::Op::put(k, text));
        req.failure.push_back(ha::Op::get(k));
        auto r = coordinator_->txn(req, timeout_);
        // Unknown outcome: the watermark may have advanced; refusing is the safe answer.
        if (!r) return r.error().within("advance the pair's watermark of key " + key_id);
        if (r->succeeded) {
            {
                const std::lock_guard g(mu_);
                local_[key_id] = {w, Bytes(payload_hash.begin(), payload_hash.end())};
            }
            lock.release();  // the lease owns the lock now
            return std::unique_ptr<WatermarkLease>(std::make_unique<Lease>(
                m, key_id, w, Bytes(payload_hash.begin(), payload_hash.end())));
        }
        SIGNET_TRY(fence_->check());
        kvs = r->results.empty() ? std::vector<ha::KeyValue>{} : r->results.back();
    }
    return make_error(ha::HaErrc::conflict,
                      "the watermark of key " + key_id + " is changing on the peer; retry");
}

Result<void> PairWatermarkGuard::stage(Db& txn, const WatermarkLease& lease) {
    return stage_watermark_row(txn, lease.key_id(), lease.watermark(), lease.payload_hash());
}

Watermark PairWatermarkGuard::current(const std::string& key_id) {
    auto read = coordinator_->range(prefix_ + "watermarks/" + key_id, {}, timeout_);
    if (!read) return {};
    auto s = decode(read->kvs, key_id);
    return s ? s->w : Watermark{};
}

}  // namespace signet::daemon
