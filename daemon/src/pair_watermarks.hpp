// PairWatermarkGuard: watermarks shared by the appliances of a pair through etcd, key
// `<prefix>watermarks/<key id>` = {"w":[...],"h":"<payload hash hex>"}. begin() checks the request
// against the value read from etcd and writes the new watermark there (compare-and-swap on the
// key's mod revision plus the role's fence) *before* the HSM signs: a watermark that is advanced
// but whose signature then fails costs one slot, while signing first could let both appliances
// sign the same height. The appliance-local lock keeps one request per key in flight here; the CAS
// makes a concurrent request on the peer lose. stage() keeps the local SQLite copy.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "signet/ha/coordinator.hpp"
#include "signet/ha/role.hpp"
#include "watermark_guard.hpp"

namespace signet::daemon {

class PairWatermarkGuard final : public WatermarkGuard {
public:
    PairWatermarkGuard(std::shared_ptr<ha::Coordinator> coordinator,
                       std::shared_ptr<const ha::Fence> fence, std::string prefix,
                       ha::Milliseconds timeout);

    // Reads the local copies (watermarks table): a store that signed before it joined the pair, or
    // an etcd restored from an older snapshot, must never let a lower watermark through.
    [[nodiscard]] Result<void> load(Db& reader);

    Result<std::unique_ptr<WatermarkLease>> begin(const std::string& key_id, const Watermark& w,
                                                  ByteView payload_hash, bool allow_equal) override;
    Result<void> stage(Db& txn, const WatermarkLease& lease) override;
    Watermark current(const std::string& key_id) override;

private:
    class Lease;
    std::shared_ptr<std::mutex> key_lock(const std::string& key_id);

    std::shared_ptr<ha::Coordinator> coordinator_;
    std::shared_ptr<const ha::Fence> fence_;
    std::string prefix_;
    ha::Milliseconds timeout_;
    std::mutex mu_;
    std::unordered_map<std::string, std::shared_ptr<std::mutex>> locks_;  // guarded by mu_
    struct LocalMark {
        Watermark w;
        Bytes hash;
    };
    std::unordered_map<std::string, LocalMark> local_;  // highest known locally; guarded by mu_
};

}  // namespace signet::daemon
