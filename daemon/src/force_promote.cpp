#include "force_promote.hpp"

#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>

#include "appliance.hpp"
#include "audit_log.hpp"
#include "committer.hpp"
#include "db.hpp"
#include "rejoin.hpp"
#include "signet/core/clock.hpp"
#include "signet/ha/etcd_coordinator.hpp"

namespace signet::daemon {
namespace {

// The largest run of values one transaction can take: a fast block, or a strict/dense batch
// (ha::AllocatorOptions::max_batch as the pair uses it, at most ha::kStrictStride).
constexpr std::uint64_t kStrictBatch = ha::kStrictStride;

Result<std::uint64_t> parse_mark(const ha::KeyValue& kv) {
    auto m = ha::counter_mark(kv.value, kv.mod_revision);
    if (!m) return m.error().within("counter " + kv.key + " (refusing to guess)");
    return m;
}

}  // namespace

Result<boost::json::object> force_promote(const Config& c, const ForcePromoteOptions& o) {
    if (!c.ha_mode) return make_error(Errc::invalid_argument, "the configuration has no [ha]");
    if (!o.peer_fenced) {
        return make_error(Errc::invalid_argument,
                          "confirm with --peer-fenced that the peer is powered off or cut off: a "
                          "peer that still signs would overlap the promoted appliance");
    }
    const int lock_fd = SIGNET_TRY(lock_data_dir(c));
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{lock_fd};

    // Only the local member: the re-formed one-member cluster.
    const std::shared_ptr<ha::Coordinator> etcd = SIGNET_TRY(connect_etcd(c, true));
    const std::string prefix = c.ha_prefix();
    const auto timeout = c.etcd_timeout;
    auto read_prefix = [&](const std::string& p) -> Result<ha::RangeResponse> {
        auto r = etcd->range(p, ha::prefix_end(p), timeout);
        if (!r) {
            return r.error().within("read " + p +
                                    " from the local etcd member (re-form it with "
                                    "--force-new-cluster first)");
        }
        return r;
    };
    const auto marks = SIGNET_TRY(read_prefix(prefix + "watermarks/"));
    if (!marks.kvs.empty() && !o.confirm_watermarks) {
        return make_error(Errc::conflict,
                          std::to_string(marks.kvs.size()) +
                              " keys have watermarks; the peer's last watermark may be missing "
                              "here (docs/ha.md). Check each validator's last signed height, "
                              "then repeat with --confirm-watermarks");
    }
    const auto counters = SIGNET_TRY(read_prefix(prefix + "counters/"));
    const std::uint64_t margin =
        kMarginBlocks * std::max<std::uint64_t>(c.nonce_block, kStrictBatch);

    boost::json::array raised;
    for (const auto& kv : counters.kvs) {
        const std::uint64_t before = SIGNET_TRY(parse_mark(kv));
        const std::uint64_t after = before + margin;
        ha::TxnRequest t;
        t.compare.push_back(ha::Compare::mod_revision_equals(kv.key, kv.mod_revision));
        t.success.push_back(ha::Op::put(kv.key, std::to_string(after)));
        auto r = etcd->txn(t, timeout);
        if (!r) return r.error().within("raise " + kv.key);
        if (!r->succeeded) {
            return make_error(Errc::conflict, "counter " + kv.key +
                                                  " changed while promoting: is another "
                                                  "appliance still writing? Nothing more changed");
        }
        raised.push_back(boost::json::object{
            {"counter", kv.key.substr(prefix.size() + 9)}, {"before", before}, {"after", after}});
    }
    // The peer's role keys: a stale leader key would keep this appliance standby until its lease
    // (extended by the re-formed cluster) expired.
    // Every other appliance is marked fenced: it may come back only wiped (rejoin.hpp).
    const auto fenced = SIGNET_TRY(other_appliances(*etcd, c));
    ha::TxnRequest cleanup;
    cleanup.success.push_back(ha::Op::del(prefix + "leader"));
    cleanup.success.push_back(ha::Op::del(prefix + "beat"));
    const std::string members = prefix + "members/";
    cleanup.success.push_back(ha::Op::del(members, ha::prefix_end(members)));
    const std::string ts = format_rfc3339(std::chrono::system_clock::now());
    boost::json::object record{{"by", c.ha_name},
                               {"at", ts},
                               {"margin", margin},
                               {"counters", raised.size()},
                               {"watermarks", marks.kvs.size()}};
    boost::json::array fenced_names;
    for (const auto& n : fenced) fenced_names.emplace_back(n);
    record["fenced"] = std::move(fenced_names);
    cleanup.success.push_back(
        ha::Op::put(prefix + "promotions/" + ts, boost::json::serialize(record)));
    for (auto& op : fence_marks(c, fenced, boost::json::serialize(record))) {
        cleanup.success.push_back(std::move(op));
    }
    if (auto r = etcd->txn(cleanup, timeout); !r) {
        return r.error().within(
            "remove the peer's role keys (the counters are already raised; "
            "repeating the promotion raises them again, which is safe)");
    }

    // The local audit log records it (the appliance is stopped: this process is the writer).
    auto db = Db::open(c.database_path(), false);
    if (!db) return db.error().within("open the store to audit the promotion");
    Committer committer(std::move(db).value(), null_logger());
    SIGNET_TRY(committer.submit([&](Db& txn) -> Result<void> {
        SIGNET_TRY(AuditLog::append(
            txn, {"operator", "ha.force_promote", c.ha_name, "ok", boost::json::serialize(record)},
            ts));
        return ok();
    }));
    committer.stop();
    record["raised"] = std::move(raised);
    return record;
}

}  // namespace signet::daemon
