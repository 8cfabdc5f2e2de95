// Helpers shared by the etcd suites: a coordinator over an EtcdCluster, bounded polling, and
// recorders for watch deliveries and log events. Header-only; each suite is its own executable.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "signet/ha/etcd_coordinator.hpp"
#include "signet_test/etcd_cluster.hpp"
#include "signet_test/result_matchers.hpp"

namespace signet::test::etcd {

using namespace std::chrono_literals;
using signet::Errc;
using signet::ha::Compare;
using signet::ha::HaErrc;
using signet::ha::Op;
using signet::ha::TxnRequest;
using signet::test::EtcdCluster;
using signet::test::EtcdClusterOptions;

inline EtcdClusterOptions cluster_of(std::size_t members, bool tls = false) {
    EtcdClusterOptions o;
    o.members = members;
    o.tls = tls;
    return o;
}

struct ClientTls {
    bool client_cert = true;
    bool right_ca = true;
};

// A coordinator over `endpoints` ("m0=http://...,..."), with the cluster's TLS material.
inline std::shared_ptr<signet::ha::Coordinator> connect(const EtcdCluster& cluster,
                                                        const std::string& endpoints,
                                                        std::shared_ptr<signet::Logger> logger = {},
                                                        ClientTls tls = {}) {
    bool use_tls = false;
    signet::ha::EtcdOptions o;
    o.endpoints = signet::ha::parse_endpoints(endpoints, &use_tls).value();
    o.tls = use_tls;
    if (use_tls) {
        o.ca_file = (tls.right_ca ? cluster.ca_file() : cluster.client_cert_file()).string();
        if (tls.client_cert) {
            o.client_cert_file = cluster.client_cert_file().string();
            o.client_key_file = cluster.client_key_file().string();
        }
    }
    return signet::ha::make_etcd_coordinator(std::move(o),
                                             logger ? std::move(logger) : signet::null_logger());
}
inline std::shared_ptr<signet::ha::Coordinator> connect(const EtcdCluster& cluster) {
    return connect(cluster, cluster.endpoints());
}

inline signet::Result<signet::ha::TxnResponse> put(signet::ha::Coordinator& c,
                                                   const std::string& key, const std::string& value,
                                                   std::int64_t lease = 0) {
    TxnRequest t;
    t.success = {Op::put(key, value, lease)};
    return c.txn(t, 3s);
}

inline bool key_exists(signet::ha::Coordinator& c, const std::string& key) {
    auto r = c.range(key, "", 2s);
    return !r || !r->kvs.empty();  // an error counts as "still there": keep waiting
}

// Polls `pred` every 20 ms until it holds or `bound` has passed; returns its last value.
template <class Pred>
inline bool eventually(Pred pred, std::chrono::milliseconds bound) {
    const auto deadline = std::chrono::steady_clock::now() + bound;
    while (std::chrono::steady_clock::now() < deadline) {
        if (pred()) return true;
        std::this_thread::sleep_for(20ms);
    }
    return pred();
}

inline bool has_code(const signet::Error& e, HaErrc c) { return e.code == make_error_code(c); }

// Collects what a watch delivers.
class WatchLog {
public:
    signet::ha::WatchHandlers handlers() {
        signet::ha::WatchHandlers h;
        h.on_events = [this](const std::vector<signet::ha::WatchEvent>& events, std::int64_t rev) {
            std::lock_guard lock(mu_);
            calls_.push_back(rev);
            events_.insert(events_.end(), events.begin(), events.end());
            cv_.notify_all();
        };
        h.on_error = [this](const signet::Error& e) {
            std::lock_guard lock(mu_);
            error_ = e;
            cv_.notify_all();
        };
        return h;
    }
    bool wait_events(std::size_t n, std::chrono::milliseconds bound) {
        std::unique_lock lock(mu_);
        return cv_.wait_for(lock, bound, [&] { return events_.size() >= n; });
    }
    bool wait_error(std::chrono::milliseconds bound) {
        std::unique_lock lock(mu_);
        return cv_.wait_for(lock, bound, [&] { return error_.has_value(); });
    }
    std::vector<signet::ha::WatchEvent> events() {
        std::lock_guard lock(mu_);
        return events_;
    }
    std::vector<std::int64_t> calls() {
        std::lock_guard lock(mu_);
        return calls_;
    }
    std::optional<signet::Error> error() {
        std::lock_guard lock(mu_);
        return error_;
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<signet::ha::WatchEvent> events_;  // guarded by mu_
    std::vector<std::int64_t> calls_;             // guarded by mu_: revision of each call
    std::optional<signet::Error> error_;          // guarded by mu_
};

// Records event names, to see that a failover was logged.
class RecordingLogger final : public signet::Logger {
public:
    [[nodiscard]] bool enabled(signet::LogLevel) const noexcept override { return true; }
    void write(signet::LogLevel level, std::string_view, std::string_view event,
               std::initializer_list<signet::LogField>) override {
        std::lock_guard lock(mu_);
        events_.push_back(std::string(signet::to_string(level)) + ":" + std::string(event));
    }
    bool saw(const std::string& what) {
        std::lock_guard lock(mu_);
        return std::find(events_.begin(), events_.end(), what) != events_.end();
    }

private:
    std::mutex mu_;
    std::vector<std::string> events_;  // guarded by mu_
};

}  // namespace signet::test::etcd
