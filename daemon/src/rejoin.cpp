#include "rejoin.hpp"

#include <unistd.h>

#include <boost/json.hpp>
#include <set>

#include "appliance.hpp"
#include "db.hpp"
#include "signet/ha/etcd_coordinator.hpp"

namespace signet::daemon {
namespace {

namespace json = boost::json;

std::string fenced_key(const Config& c, const std::string& name) {
    return c.ha_prefix() + "fenced/" + name;
}

// The next path segment after `dir` in `key` ("<dir><name>" or "<dir><name>/...").
std::string segment_after(const std::string& key, const std::string& dir) {
    const std::string rest = key.substr(dir.size());
    return rest.substr(0, rest.find('/'));
}

// Whether the store at the configured path was ever in a pair (its meta row ha.cluster).
Result<bool> store_in_pair(const Config& c) {
    if (!std::filesystem::exists(c.database_path())) return false;
    auto db = SIGNET_TRY(Db::open(c.database_path(), false));
    auto st = SIGNET_TRY(
        db.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'"));
    if (!SIGNET_TRY(st.step()) || st.int64(0) == 0) return false;
    auto q = SIGNET_TRY(db.prepare("SELECT value FROM meta WHERE name = 'ha.cluster'"));
    return SIGNET_TRY(q.step());
}

std::string steps_text(const Config& c) {
    return "run 'signetctl ha rejoin --config <this appliance's signetd.toml>' on " + c.ha_name +
           " for the steps (docs/ha.md, \"Re-joining after a forced promotion\")";
}

}  // namespace

Result<std::vector<std::string>> other_appliances(ha::Coordinator& etcd, const Config& c) {
    std::set<std::string> names;
    // Published addresses, dual-active member keys, pairing transport keys: whichever exist.
    for (const std::string& dir : {c.ha_prefix() + "appliances/", c.ha_prefix() + "members/",
                                   c.ha_prefix() + "pairing/transport/"}) {
        const auto r = SIGNET_TRY(etcd.range(dir, ha::prefix_end(dir), c.etcd_timeout));
        for (const auto& kv : r.kvs) names.insert(segment_after(kv.key, dir));
    }
    names.erase(c.ha_name);
    names.erase("");
    return std::vector<std::string>(names.begin(), names.end());
}

std::vector<ha::Op> fence_marks(const Config& c, const std::vector<std::string>& names,
                                const std::string& record) {
    std::vector<ha::Op> ops;
    for (const auto& n : names) {
        ops.push_back(ha::Op::put(fenced_key(c, n), record));
        // Its published address and certificate: no longer a forwarding target, nor trusted.
        ops.push_back(ha::Op::del(c.ha_prefix() + "appliances/" + n));
    }
    return ops;
}

Result<bool> clear_fence_if_new(ha::Coordinator& etcd, const Config& c, bool store_was_in_pair) {
    const std::string key = fenced_key(c, c.ha_name);
    const auto r = SIGNET_TRY(etcd.range(key, {}, c.etcd_timeout));
    if (r.kvs.empty()) return false;
    const auto& mark = r.kvs.front();
    if (store_was_in_pair) {
        return make_error(Errc::conflict,
                          "this appliance (" + c.ha_name + ") was fenced by a forced promotion (" +
                              mark.value + "): its store " + c.database_path().string() +
                              " holds the pair's state from before it and must not rejoin; wipe "
                              "this appliance and join it as a new one: " +
                              steps_text(c));
    }
    // A new store: this appliance joins afresh. Removed only if the mark is still the one read.
    ha::TxnRequest t;
    t.compare.push_back(ha::Compare::mod_revision_equals(key, mark.mod_revision));
    t.success.push_back(ha::Op::del(key));
    const auto done = SIGNET_TRY(etcd.txn(t, c.etcd_timeout));
    if (!done.succeeded) {
        return make_error(Errc::conflict, "the fence mark " + key +
                                              " changed while this appliance removed it (another "
                                              "promotion?); start again to re-read it");
    }
    return true;
}

Result<json::object> rejoin_guide(const Config& c) {
    if (!c.ha_mode) return make_error(Errc::invalid_argument, "the configuration has no [ha]");
    json::array steps;
    bool ready = true;
    // `gate`: the step must be done before signetd may start.
    auto step = [&](std::string what, bool done, std::string how, bool gate = true) {
        if (gate) ready = ready && done;
        steps.push_back(
            json::object{{"step", std::move(what)}, {"done", done}, {"how", std::move(how)}});
    };

    // No data directory: no signetd runs on it (and none is created here).
    Result<int> lock = -1;
    if (std::filesystem::exists(c.data_dir)) lock = lock_data_dir(c);
    if (lock && *lock >= 0) ::close(*lock);
    step("signetd is stopped on this appliance", lock.has_value(),
         lock ? "" : "stop it (systemctl stop signetd): " + lock.error().message());

    const bool in_pair = SIGNET_TRY(store_in_pair(c));
    step("this appliance's store is wiped", !in_pair,
         in_pair ? "move the data directory aside (keep it for the post-mortem, never start "
                   "signetd on it again): mv " +
                       c.data_dir.string() + " " + c.data_dir.string() +
                       ".fenced; then re-create it empty (mode 0700)"
                 : "");

    // etcd: through any member that answers (the local one may be gone since the promotion).
    const auto endpoints = SIGNET_TRY(ha::parse_endpoints(c.etcd_endpoints));
    const ha::EtcdEndpoint& local = endpoints.front();
    std::string others;
    for (std::size_t i = 1; i < endpoints.size(); ++i) {
        others += (others.empty() ? "" : ",") + endpoints[i].host + ":" +
                  std::to_string(endpoints[i].port);
    }
    const auto etcd = SIGNET_TRY(connect_etcd(c));
    json::value fenced = nullptr;
    std::string etcd_error;
    if (const auto mark = etcd->range(fenced_key(c, c.ha_name), {}, c.etcd_timeout); !mark) {
        etcd_error = mark.error().message();
    } else if (!mark->kvs.empty()) {
        boost::system::error_code ec;
        fenced = json::parse(mark->kvs.front().value, ec);
        if (ec) fenced = mark->kvs.front().value;
    }
    bool local_up = false;
    for (const auto& m : etcd->members(c.etcd_timeout)) {
        local_up = local_up || (m.name == local.name && m.reachable);
    }
    step("this appliance's etcd member (" + local.name + ") answers, re-added to the cluster",
         local_up,
         local_up ? ""
                  : "on a surviving member: etcdctl --endpoints " + others + " member add " +
                        local.name +
                        " --peer-urls <its peer URL>; then wipe this member's data directory "
                        "and start it with the ETCD_INITIAL_CLUSTER that command prints and "
                        "--initial-cluster-state existing (until then signetd uses the other "
                        "members)",
         false);
    step("signetd started on the empty store joins as a new appliance", false,
         ready ? "start signetd: it clears the fence mark and joins (standby in hot-standby)"
               : "after the steps above: start signetd",
         false);
    step("the pairing ceremony has run in both directions", false,
         "for replicable keys: signetctl ha pair --peer <other> --transport-sha256 <its "
         "transport key> on each appliance (docs/ha.md, \"The pairing ceremony\")",
         false);
    json::object out{{"appliance", c.ha_name},
                     {"cluster", c.ha_cluster},
                     {"fenced", fenced},
                     {"ready_to_start", ready},
                     {"steps", std::move(steps)}};
    if (!etcd_error.empty()) out["etcd_error"] = etcd_error;
    return out;
}

}  // namespace signet::daemon
