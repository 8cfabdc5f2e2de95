// WatermarkGuard: validator double-sign protection (DESIGN §3). A key may require a client-supplied
// monotonic watermark (e.g. height, round, step) compared lexicographically. A request below the
// stored watermark is refused; an equal one only with a byte-identical payload. Check, sign and
// persist are one atomic step per key: the WatermarkLease holds the key's lock from the check until
// the new watermark is durable (or the attempt is abandoned).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "db.hpp"
#include "signet/core/result.hpp"

namespace signet::daemon {

using Watermark = std::vector<std::uint64_t>;

// "[1,2,3]".
[[nodiscard]] std::string to_string(const Watermark& w);
// "[1,2,3]" -> {1,2,3}; invalid_argument for anything but an array of whole numbers.
[[nodiscard]] Result<Watermark> parse_watermark(std::string_view text);

// The rule every guard applies (see WatermarkGuard::begin): ok when `w` may be signed after the
// stored watermark (empty: none yet) whose payload hash is `stored_hash`.
[[nodiscard]] Result<void> check_watermark(const Watermark& stored, ByteView stored_hash,
                                           const Watermark& w, ByteView payload_hash,
                                           bool allow_equal);
// Inside the writer transaction: the appliance's local copy of a key's watermark.
[[nodiscard]] Result<void> stage_watermark_row(Db& txn, const std::string& key_id,
                                               const Watermark& w, ByteView payload_hash);

class WatermarkLease {
public:
    virtual ~WatermarkLease() = default;  // releases the key's lock
    [[nodiscard]] virtual const std::string& key_id() const noexcept = 0;
    [[nodiscard]] virtual const Watermark& watermark() const noexcept = 0;
    [[nodiscard]] virtual ByteView payload_hash() const noexcept = 0;
    // Called after the transaction that staged it committed.
    virtual void committed() noexcept = 0;
};

class WatermarkGuard {
public:
    virtual ~WatermarkGuard() = default;
    // Locks the key and checks `w` against the stored watermark. watermark_regression (with both
    // values in the message) when w is lower, or equal with a different payload hash or with
    // `allow_equal` false; unprocessable when w's length differs from the stored one (a key's
    // watermarks have one arity: [5] < [5,0,0] would otherwise let height 5 be signed twice).
    // `payload_hash` is a hash of exactly the bytes the HSM will sign.
    [[nodiscard]] virtual Result<std::unique_ptr<WatermarkLease>> begin(const std::string& key_id,
                                                                        const Watermark& w,
                                                                        ByteView payload_hash,
                                                                        bool allow_equal) = 0;
    // Inside the writer transaction: persists the lease's watermark.
    [[nodiscard]] virtual Result<void> stage(Db& txn, const WatermarkLease& lease) = 0;
    // The stored watermark (empty: none yet).
    [[nodiscard]] virtual Watermark current(const std::string& key_id) = 0;
};

// Standalone: watermarks in SQLite, cached in memory.
class LocalWatermarkGuard final : public WatermarkGuard {
public:
    [[nodiscard]] Result<void> load(Db& reader);
    Result<std::unique_ptr<WatermarkLease>> begin(const std::string& key_id, const Watermark& w,
                                                  ByteView payload_hash, bool allow_equal) override;
    Result<void> stage(Db& txn, const WatermarkLease& lease) override;
    Watermark current(const std::string& key_id) override;

private:
    struct KeyMark {
        std::mutex mu;        // held by a lease from check to durable persist
        Watermark watermark;  // guarded by mu
        Bytes payload_hash;   // guarded by mu
    };
    class Lease;
    std::shared_ptr<KeyMark> mark(const std::string& key_id);

    std::mutex mu_;
    std::unordered_map<std::string, std::shared_ptr<KeyMark>> marks_;  // guarded by mu_
};

}  // namespace signet::daemon
