#include "pair.hpp"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/json.hpp>

#include "rejoin.hpp"
#include "signet/ha/etcd_coordinator.hpp"

namespace signet::daemon {
namespace {

// One thread running posted work in order (the allocator's block refills). Work posted after
// stop() is dropped: the allocator treats a refill that never ran like one that never started.
class SerialExecutor {
public:
    SerialExecutor() : thread_([this] { loop(); }) {}
    ~SerialExecutor() { stop(); }
    void post(std::function<void()> work) {
        {
            const std::lock_guard lock(mu_);
            if (stopping_) return;
            queue_.push_back(std::move(work));
        }
        cv_.notify_one();
    }
    void stop() {
        {
            const std::lock_guard lock(mu_);
            stopping_ = true;
        }
        cv_.notify_one();
        if (thread_.joinable()) thread_.join();
    }

private:
    void loop() {
        std::unique_lock lock(mu_);
        for (;;) {
            cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) return;  // stopping, nothing left
            auto work = std::move(queue_.front());
            queue_.pop_front();
            lock.unlock();
            work();
            lock.lock();
        }
    }
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> queue_;  // guarded by mu_
    bool stopping_ = false;                    // guarded by mu_
    std::thread thread_;
};

// Both appliances must agree on how they share the counters: a hot-standby appliance beside a
// dual-active one would sign with an empty guard next to the active, and a strict/fast mix breaks
// strict order. The first appliance records the pair's settings; every later start compares.
Result<void> check_pair_settings(ha::Coordinator& etcd, const Config& c,
                                 const std::string& prefix) {
    boost::json::object mine{{"mode", std::string(ha::to_string(*c.ha_mode))},
                             {"nonce_allocation", std::string(ha::to_string(c.nonce_allocation))},
                             {"lease_ttl_ms", c.lease_ttl.count()},
                             {"forward", c.forward}};
    const std::string text = boost::json::serialize(mine);
    const std::string key = prefix + "config";
    ha::TxnRequest t;
    t.compare.push_back(ha::Compare::absent(key));
    t.success.push_back(ha::Op::put(key, text));
    t.failure.push_back(ha::Op::get(key));
    Result<ha::TxnResponse> r = make_error(Errc::unavailable, "not tried");
    // Bounded: etcd may still be electing when both start together.
    for (int attempt = 0; attempt < 20; ++attempt) {
        r = etcd.txn(t, c.etcd_timeout);
        if (r) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    if (!r) {
        return r.error().within("check the pair's settings at " + key +
                                " (is the local etcd member up and part of a quorum?)");
    }
    if (r->succeeded) return ok();
    const auto& kvs = r->results.empty() ? std::vector<ha::KeyValue>{} : r->results.front();
    if (!kvs.empty() && kvs.front().value == text) return ok();
    return make_error(Errc::conflict,
                      "this appliance's [ha] settings " + text + " differ from the pair's " +
                          (kvs.empty() ? std::string("(unreadable)") : kvs.front().value) +
                          " (mode, nonce_allocation, lease_ttl_ms and forward must match on both)");
}

}  // namespace

struct Pair::Impl {
    Config config;
    bool rejoined = false;
    std::string prefix;
    std::shared_ptr<Logger> logger;
    std::shared_ptr<ha::Coordinator> coordinator;
    std::shared_ptr<ha::RoleMachine> role;
    std::shared_ptr<SerialExecutor> executor;
    std::shared_ptr<ha::NonceAllocator> allocator;
    ha::Milliseconds tick_every{100};

    std::mutex mu;
    std::condition_variable cv;
    bool stopping = false;                                              // guarded by mu
    std::vector<std::function<void(const ha::RoleStatus&)>> callbacks;  // guarded by mu
    std::thread driver;
    std::shared_ptr<web::Registry> metrics;
    std::thread reporter;  // metrics: etcd members are asked here, never on the driver thread
    ha::AllocatorStats reported;  // what the counters already count; reporter thread only

    void report() {
        auto& role_g =
            metrics->gauge("signet_ha_role",
                           "1 for this appliance's current pair role, 0 for the others", {"role"});
        auto& term_g = metrics->gauge("signet_ha_term",
                                      "hot-standby: the leader key's create revision while active");
        auto& lease_g = metrics->gauge("signet_ha_lease_remaining_seconds",
                                       "provable validity left on the role's lease");
        auto& alloc = metrics->counter("signet_ha_allocation_total",
                                       "nonce allocation events since start, by kind", {"kind"});
        auto& up =
            metrics->gauge("signet_etcd_member_up", "1 when the etcd member answers", {"member"});
        auto& leader = metrics->gauge("signet_etcd_member_leader",
                                      "1 for the member that leads the etcd cluster", {"member"});
        auto& latency = metrics->gauge("signet_etcd_member_latency_seconds",
                                       "status round trip to the etcd member", {"member"});
        std::unique_lock lock(mu);
        while (!stopping) {
            lock.unlock();
            const ha::RoleStatus st = role->status();
            for (const ha::Role r : {ha::Role::starting, ha::Role::standby, ha::Role::active,
                                     ha::Role::dual, ha::Role::isolated}) {
                role_g.with({std::string(ha::to_string(r))}).set(st.role == r ? 1 : 0);
            }
            term_g.with({}).set(static_cast<double>(st.term));
            lease_g.with({}).set(static_cast<double>(st.lease_remaining.count()) / 1000.0);
            const ha::AllocatorStats a = allocator->stats();
            alloc.with({"transaction"}).inc(a.transactions - reported.transactions);
            alloc.with({"conflict"}).inc(a.conflicts - reported.conflicts);
            alloc.with({"unknown_outcome"}).inc(a.unknown - reported.unknown);
            alloc.with({"burnt"}).inc(a.burnt - reported.burnt);
            alloc.with({"issued"}).inc(a.issued - reported.issued);
            reported = a;
            for (const auto& m : coordinator->members(config.etcd_timeout)) {
                up.with({m.name}).set(m.reachable ? 1 : 0);
                leader.with({m.name}).set(m.is_leader ? 1 : 0);
                latency.with({m.name}).set(static_cast<double>(m.latency.count()) / 1000.0);
            }
            lock.lock();
            cv.wait_for(lock, std::chrono::seconds(2), [this] { return stopping; });
        }
    }

    void drive() {
        std::unique_lock lock(mu);
        while (!stopping) {
            lock.unlock();
            role->tick();
            lock.lock();
            cv.wait_for(lock, tick_every, [this] { return stopping; });
        }
    }
};

Pair::Pair(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pair::~Pair() { stop(); }

Result<std::unique_ptr<Pair>> Pair::start(const Config& c, bool store_was_in_pair,
                                          std::shared_ptr<const Clock> clock,
                                          std::shared_ptr<Logger> logger,
                                          std::shared_ptr<web::Registry> metrics) {
    auto impl = std::make_unique<Impl>();
    impl->metrics = std::move(metrics);
    impl->config = c;
    impl->prefix = c.ha_prefix();
    impl->logger = logger;
    impl->coordinator = SIGNET_TRY(connect_etcd(c, false, logger));

    SIGNET_TRY(check_pair_settings(*impl->coordinator, c, impl->prefix));
    impl->rejoined = SIGNET_TRY(clear_fence_if_new(*impl->coordinator, c, store_was_in_pair));

    ha::RoleOptions ro;
    ro.prefix = impl->prefix;
    ro.name = c.ha_name;
    ro.url = c.advertise_url;
    ro.mode = *c.ha_mode;
    ro.lease_ttl = c.lease_ttl;
    // Each call made by a tick must end well within the lease so that renewals keep up.
    ro.call_timeout = std::min(c.etcd_timeout, c.lease_ttl / 4);
    // A killed active is replaced once its heartbeat has been silent for half the TTL plus the
    // margin, without waiting for etcd's lease expiry (role.hpp).
    ro.beat_timeout = c.lease_ttl / 2;
    impl->role = std::make_shared<ha::RoleMachine>(impl->coordinator, clock, ro, logger);
    // A standby notices an expired leader key within one tick; the active renews 10x per TTL at
    // 1 s, so one lost keep-alive never costs the role.
    impl->tick_every = std::min(ha::Milliseconds(100), c.lease_ttl / 10);

    impl->executor = std::make_shared<SerialExecutor>();
    ha::AllocatorOptions ao;
    ao.prefix = impl->prefix;
    ao.mode = c.nonce_allocation;
    ao.block_size = c.nonce_block;
    ao.txn_timeout = c.etcd_timeout;
    // Each lost CAS means the peer won that round (global progress); in dual-active dense mode
    // both appliances race for one key on every batch, so allow a longer run of losses before
    // answering conflict_retry.
    ao.max_attempts = 64;
    impl->allocator = std::make_shared<ha::NonceAllocator>(
        impl->coordinator, impl->role, ao,
        [ex = std::weak_ptr<SerialExecutor>(impl->executor)](std::function<void()> w) {
        if (auto e = ex.lock()) e->post(std::move(w));
        },
        logger);

    Impl* raw = impl.get();
    impl->role->on_change([raw](const ha::RoleStatus& st) {
        raw->logger->log(st.role == ha::Role::active || st.role == ha::Role::dual ? LogLevel::info
                                                                                  : LogLevel::warn,
                         "ha", "role_changed",
                         {{"role", ha::to_string(st.role)},
                          {"leader", st.leader_name},
                          {"term", st.term},
                          {"reason", st.reason}});
        if (st.role != ha::Role::active && st.role != ha::Role::dual) {
            // Values left in a block must never be issued by a non-holder: burn them now.
            raw->allocator->drop_blocks("role lost (" + std::string(ha::to_string(st.role)) + ")");
        }
        std::vector<std::function<void(const ha::RoleStatus&)>> cbs;
        {
            const std::lock_guard lock(raw->mu);
            cbs = raw->callbacks;
        }
        for (const auto& cb : cbs) cb(st);
    });
    logger->log(LogLevel::info, "ha", "joining",
                {{"mode", ha::to_string(*c.ha_mode)},
                 {"name", c.ha_name},
                 {"cluster", c.ha_cluster},
                 {"allocation", ha::to_string(c.nonce_allocation)},
                 {"lease_ttl_ms", c.lease_ttl.count()}});
    impl->driver = std::thread([raw] { raw->drive(); });
    if (impl->metrics) impl->reporter = std::thread([raw] { raw->report(); });
    return std::unique_ptr<Pair>(new Pair(std::move(impl)));
}

void Pair::stop() {
    Impl& p = *impl_;
    {
        const std::lock_guard lock(p.mu);
        if (p.stopping) return;
        p.stopping = true;
    }
    p.cv.notify_all();
    if (p.driver.joinable()) p.driver.join();
    if (p.reporter.joinable()) p.reporter.join();
    // Role first: once resigned, check() fails, so nothing can take a new block after the drop.
    p.role->resign();
    p.allocator->drop_blocks("appliance stopping");
    p.executor->stop();
}

const std::shared_ptr<ha::Coordinator>& Pair::coordinator() const noexcept {
    return impl_->coordinator;
}
std::shared_ptr<const ha::Fence> Pair::fence() const noexcept { return impl_->role; }
const std::shared_ptr<ha::NonceAllocator>& Pair::allocator() const noexcept {
    return impl_->allocator;
}
const std::string& Pair::prefix() const noexcept { return impl_->prefix; }
const std::string& Pair::name() const noexcept { return impl_->config.ha_name; }

Result<void> Pair::may_sign() const {
    auto r = impl_->role->check();
    if (r) return r;
    const ha::RoleStatus st = impl_->role->status();
    if (st.role == ha::Role::standby && !st.leader_name.empty()) {
        return make_error(ha::HaErrc::not_active, "this appliance (" + st.name +
                                                      ") is the hot standby; the active is " +
                                                      st.leader_name + " at " + st.leader_url);
    }
    return r.error().within("this appliance (" + st.name + ") does not sign now (" +
                            std::string(ha::to_string(st.role)) +
                            (st.reason.empty() ? "" : ": " + st.reason) + ")");
}

ha::RoleStatus Pair::role_status() const { return impl_->role->status(); }

bool Pair::rejoined() const noexcept { return impl_->rejoined; }

web::HaStatus Pair::status(bool members) const {
    const ha::RoleStatus st = impl_->role->status();
    web::HaStatus h;
    h.mode = ha::to_string(st.mode);
    h.role = ha::to_string(st.role);
    h.name = st.name;
    h.allocation = ha::to_string(impl_->allocator->mode());
    h.leader_name = st.leader_name;
    h.leader_url = st.leader_url;
    h.term = st.term;
    h.lease_remaining_ms = st.lease_remaining.count();
    h.reason = st.reason;
    h.role_changes = st.transitions;
    const ha::AllocatorStats a = impl_->allocator->stats();
    h.txns = a.transactions;
    h.conflicts = a.conflicts;
    h.unknown = a.unknown;
    h.burnt = a.burnt;
    h.issued = a.issued;
    if (members) {
        for (const auto& m : impl_->coordinator->members(impl_->config.etcd_timeout)) {
            h.etcd.push_back(
                {m.name, m.client_url, m.reachable, m.is_leader, m.latency.count(), m.error});
        }
    }
    return h;
}

void Pair::on_role_change(std::function<void(const ha::RoleStatus&)> callback) {
    const std::lock_guard lock(impl_->mu);
    impl_->callbacks.push_back(std::move(callback));
}

}  // namespace signet::daemon
