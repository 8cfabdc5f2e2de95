#include "signet_test/fake_coordinator.hpp"

#include <deque>
#include <optional>
#include <set>
#include <utility>

namespace signet::test {

using ha::HaErrc;
using ha::KeyValue;
using ha::WatchEvent;

// ---- FakeClock ----------------------------------------------------------------------------------

std::chrono::steady_clock::time_point FakeClock::monotonic() const {
    std::lock_guard lock(mu_);
    return mono_;
}

std::chrono::system_clock::time_point FakeClock::wall() const {
    std::lock_guard lock(mu_);
    return wall_;
}

void FakeClock::advance(std::chrono::milliseconds d) {
    std::lock_guard lock(mu_);
    mono_ += d;
    wall_ += d;
}

// ---- Store --------------------------------------------------------------------------------------

namespace {

struct WatchRec {
    std::uint64_t id = 0;
    std::string key;
    std::string range_end;
    ha::WatchHandlers handlers;
    // Serialises handler calls with cancellation; recursive so a handler may destroy its own watch.
    std::recursive_mutex cb_mu;
    bool cancelled = false;  // guarded by cb_mu
};

// One delivery to one watch: a revision's events, or the end of the stream.
struct Delivery {
    std::shared_ptr<WatchRec> rec;
    std::int64_t revision = 0;
    std::vector<WatchEvent> events;
    std::optional<Error> error;
};

struct LeaseRec {
    ha::Milliseconds ttl{0};
    std::chrono::steady_clock::time_point deadline;
    std::set<std::string> keys;
};

bool in_range(const std::string& k, const std::string& key, const std::string& range_end) {
    if (range_end.empty()) return k == key;
    if (k < key) return false;
    return range_end == std::string(1, '\0') || k < range_end;
}

template <class N>
bool compare_numbers(ha::Compare::Op op, N have, N want) {
    switch (op) {
        case ha::Compare::Op::equal: return have == want;
        case ha::Compare::Op::not_equal: return have != want;
        case ha::Compare::Op::greater: return have > want;
        case ha::Compare::Op::less: return have < want;
    }
    return false;
}

}  // namespace

struct FakeStore::Impl {
    explicit Impl(std::shared_ptr<const Clock> c) : clock(std::move(c)) {}

    std::shared_ptr<const Clock> clock;
    mutable std::mutex mu;
    std::int64_t revision = 1;                // guarded by mu; etcd's empty store is at revision 1
    std::map<std::string, KeyValue> kvs;      // guarded by mu
    std::map<std::int64_t, LeaseRec> leases;  // guarded by mu
    std::int64_t next_lease = 0x7e57'0000;    // guarded by mu
    // Events of recent revisions, oldest first; revisions <= compacted are gone.
    std::deque<std::pair<std::int64_t, std::vector<WatchEvent>>> history;  // guarded by mu
    std::int64_t compacted = 0;                                            // guarded by mu
    std::size_t history_limit = 1000;                                      // guarded by mu
    std::map<std::uint64_t, std::shared_ptr<WatchRec>> watches;            // guarded by mu
    std::uint64_t next_watch = 1;                                          // guarded by mu
    // Deliveries in the order their revisions were made; one drainer at a time so every watch sees
    // its revisions in order even when several threads write.
    std::deque<Delivery> pending;  // guarded by mu
    bool delivering = false;       // guarded by mu

    // Every mutation below runs under mu.
    void record(std::int64_t rev, std::vector<WatchEvent> events) {
        for (auto& [id, rec] : watches) {
            Delivery d{rec, rev, {}, std::nullopt};
            for (const auto& e : events) {
                if (in_range(e.kv.key, rec->key, rec->range_end)) d.events.push_back(e);
            }
            if (!d.events.empty()) pending.push_back(std::move(d));
        }
        history.emplace_back(rev, std::move(events));
        while (history.size() > history_limit) {
            compacted = history.front().first;
            history.pop_front();
        }
    }

    void end_watch(const std::shared_ptr<WatchRec>& rec, Error error) {
        if (watches.erase(rec->id) == 0) return;  // already ended
        pending.push_back(Delivery{rec, 0, {}, std::move(error)});
    }

    void detach_from_lease(const KeyValue& kv) {
        if (kv.lease == 0) return;
        auto it = leases.find(kv.lease);
        if (it != leases.end()) it->second.keys.erase(kv.key);
    }

    void put(const std::string& key, const std::string& value, std::int64_t lease, std::int64_t rev,
             std::vector<WatchEvent>& events) {
        auto& kv = kvs[key];
        if (kv.create_revision == 0) {
            kv.key = key;
            kv.create_revision = rev;
        } else if (kv.lease != lease) {
            detach_from_lease(kv);
        }
        kv.value = value;
        kv.mod_revision = rev;
        ++kv.version;
        kv.lease = lease;
        if (lease != 0) leases[lease].keys.insert(key);
        events.push_back(WatchEvent{WatchEvent::Type::put, kv});
    }

    void del(const std::string& key, const std::string& range_end, std::int64_t rev,
             std::vector<WatchEvent>& events) {
        auto it = kvs.lower_bound(key);
        while (it != kvs.end() && in_range(it->first, key, range_end)) {
            detach_from_lease(it->second);
            KeyValue gone;
            gone.key = it->first;
            gone.mod_revision = rev;
            events.push_back(WatchEvent{WatchEvent::Type::del, gone});
            it = kvs.erase(it);
        }
    }

    std::vector<KeyValue> read(const std::string& key, const std::string& range_end) const {
        std::vector<KeyValue> out;
        for (auto it = kvs.lower_bound(key); it != kvs.end(); ++it) {
            if (!in_range(it->first, key, range_end)) break;
            out.push_back(it->second);
        }
        return out;
    }

    bool holds(const ha::Compare& c) const {
        auto it = kvs.find(c.key);
        const KeyValue none;
        const KeyValue& kv = it == kvs.end() ? none : it->second;
        switch (c.target) {
            case ha::Compare::Target::value:
                // etcd fails every value compare on a missing key.
                return it != kvs.end() && compare_numbers(c.op, kv.value, c.value);
            case ha::Compare::Target::version: return compare_numbers(c.op, kv.version, c.number);
            case ha::Compare::Target::create_revision:
                return compare_numbers(c.op, kv.create_revision, c.number);
            case ha::Compare::Target::mod_revision:
                return compare_numbers(c.op, kv.mod_revision, c.number);
            case ha::Compare::Target::lease: return compare_numbers(c.op, kv.lease, c.number);
        }
        return false;
    }

    // Deletes the lease and its keys in one revision (etcd revokes a lease in one transaction).
    void revoke(std::int64_t id) {
        auto it = leases.find(id);
        if (it == leases.end()) return;
        const std::set<std::string> keys = std::move(it->second.keys);
        leases.erase(it);
        if (keys.empty()) return;
        const std::int64_t rev = revision + 1;
        std::vector<WatchEvent> events;
        for (const auto& k : keys) del(k, {}, rev, events);
        if (events.empty()) return;
        revision = rev;
        record(rev, std::move(events));
    }

    bool lease_live(std::int64_t id) const {
        auto it = leases.find(id);
        return it != leases.end() && clock->monotonic() < it->second.deadline;
    }

    Result<ha::TxnResponse> txn(const ha::TxnRequest& req) {
        bool ok = true;
        for (const auto& c : req.compare) ok = ok && holds(c);
        const auto& branch = ok ? req.success : req.failure;
        for (const auto& op : branch) {
            if (op.kind == ha::Op::Kind::put && op.lease != 0 && !lease_live(op.lease)) {
                return make_error(HaErrc::lease_not_found,
                                  "fake txn: put with lease " + std::to_string(op.lease));
            }
        }
        // All writes of one transaction share one revision; a transaction that changes nothing
        // leaves the revision alone (etcd's behaviour).
        const std::int64_t rev = revision + 1;
        std::vector<WatchEvent> events;
        ha::TxnResponse resp;
        resp.succeeded = ok;
        for (const auto& op : branch) {
            switch (op.kind) {
                case ha::Op::Kind::get: resp.results.push_back(read(op.key, op.range_end)); break;
                case ha::Op::Kind::put:
                    put(op.key, op.value, op.lease, rev, events);
                    resp.results.emplace_back();
                    break;
                case ha::Op::Kind::del:
                    del(op.key, op.range_end, rev, events);
                    resp.results.emplace_back();
                    break;
            }
        }
        if (!events.empty()) {
            revision = rev;
            record(rev, std::move(events));
        }
        resp.revision = revision;
        return resp;
    }

    // Runs pending deliveries on the calling thread, outside mu. A nested call (a handler that
    // writes) or a concurrent writer leaves them to the drainer already running.
    void drain() {
        std::unique_lock lock(mu);
        if (delivering) return;
        delivering = true;
        while (!pending.empty()) {
            Delivery d = std::move(pending.front());
            pending.pop_front();
            lock.unlock();
            {
                std::lock_guard cb(d.rec->cb_mu);
                if (!d.rec->cancelled) {
                    if (d.error) {
                        if (d.rec->handlers.on_error) d.rec->handlers.on_error(*d.error);
                    } else if (d.rec->handlers.on_events) {
                        d.rec->handlers.on_events(d.events, d.revision);
                    }
                }
            }
            lock.lock();
        }
        delivering = false;
    }
};

FakeStore::FakeStore(std::shared_ptr<const Clock> clock)
    : impl(std::make_shared<Impl>(std::move(clock))) {}

void FakeStore::expire_leases() {
    {
        std::lock_guard lock(impl->mu);
        const auto now = impl->clock->monotonic();
        std::vector<std::int64_t> expired;
        for (const auto& [id, lease] : impl->leases) {
            if (lease.deadline <= now) expired.push_back(id);
        }
        for (auto id : expired) impl->revoke(id);
    }
    impl->drain();
}

std::int64_t FakeStore::revision() const {
    std::lock_guard lock(impl->mu);
    return impl->revision;
}

std::vector<ha::KeyValue> FakeStore::dump(const std::string& prefix) const {
    std::lock_guard lock(impl->mu);
    return impl->read(prefix, ha::prefix_end(prefix));
}

void FakeStore::set_history_limit(std::size_t revisions) {
    std::lock_guard lock(impl->mu);
    impl->history_limit = revisions;
    while (impl->history.size() > revisions) {
        impl->compacted = impl->history.front().first;
        impl->history.pop_front();
    }
}

// ---- FakeCoordinator ----------------------------------------------------------------------------

struct FakeCoordinator::Faults {
    mutable std::mutex mu;
    Fault fault = Fault::none;                     // guarded by mu
    int count = 0;                                 // guarded by mu
    bool txn_only = false;                         // guarded by mu
    bool partitioned = false;                      // guarded by mu
    std::function<void()> before_txn;              // guarded by mu
    std::uint64_t calls = 0;                       // guarded by mu
    std::uint64_t txns = 0;                        // guarded by mu
    std::vector<std::weak_ptr<WatchRec>> watches;  // guarded by mu: this coordinator's streams

    // Counts the call and decides its fate: an error (partitioned) or the fault to apply.
    Result<Fault> admit(bool is_txn, const char* what) {
        std::lock_guard lock(mu);
        ++calls;
        if (is_txn) ++txns;
        if (partitioned) {
            return make_error(Errc::unavailable, std::string("fake ") + what + ": partitioned");
        }
        if (count > 0 && (is_txn || !txn_only)) {
            --count;
            return fault;
        }
        return Fault::none;
    }
};

namespace {

Error fault_error(Fault f, const char* what) {
    if (f == Fault::unavailable) {
        return make_error(Errc::unavailable, std::string("fake ") + what + ": injected");
    }
    return make_error(
        HaErrc::outcome_unknown,
        std::string("fake ") + what + (f == Fault::lost_reply ? ": reply lost" : ": request lost"));
}

// Whether the call must not touch the store.
bool blocks_apply(Fault f) { return f == Fault::unavailable || f == Fault::lost_request; }

class FakeWatch final : public ha::Watch {
public:
    FakeWatch(std::weak_ptr<FakeStore::Impl> store, std::shared_ptr<WatchRec> rec)
        : store_(std::move(store)), rec_(std::move(rec)) {}
    ~FakeWatch() override {
        if (auto s = store_.lock()) {
            std::lock_guard lock(s->mu);
            s->watches.erase(rec_->id);
        }
        // Waits for a handler call in progress on another thread; none starts afterwards.
        std::lock_guard cb(rec_->cb_mu);
        rec_->cancelled = true;
    }
    FakeWatch(const FakeWatch&) = delete;
    FakeWatch& operator=(const FakeWatch&) = delete;

private:
    std::weak_ptr<FakeStore::Impl> store_;
    std::shared_ptr<WatchRec> rec_;
};

}  // namespace

FakeCoordinator::FakeCoordinator(std::shared_ptr<FakeStore> store)
    : store_(std::move(store)), faults_(std::make_shared<Faults>()) {}

void FakeCoordinator::inject(Fault fault, int count, bool txn_only) {
    std::lock_guard lock(faults_->mu);
    faults_->fault = fault;
    faults_->count = count;
    faults_->txn_only = txn_only;
}

void FakeCoordinator::partition(bool on) {
    std::vector<std::shared_ptr<WatchRec>> broken;
    {
        std::lock_guard lock(faults_->mu);
        faults_->partitioned = on;
        if (on) {
            for (auto& w : faults_->watches) {
                if (auto rec = w.lock()) broken.push_back(std::move(rec));
            }
            faults_->watches.clear();
        }
    }
    if (broken.empty()) return;
    auto& impl = *store_->impl;
    {
        std::lock_guard lock(impl.mu);
        for (auto& rec : broken) {
            impl.end_watch(rec, make_error(Errc::unavailable, "fake watch: partitioned"));
        }
    }
    impl.drain();
}

void FakeCoordinator::before_txn(std::function<void()> hook) {
    std::lock_guard lock(faults_->mu);
    faults_->before_txn = std::move(hook);
}

std::uint64_t FakeCoordinator::calls() const {
    std::lock_guard lock(faults_->mu);
    return faults_->calls;
}

std::uint64_t FakeCoordinator::txns() const {
    std::lock_guard lock(faults_->mu);
    return faults_->txns;
}

Result<ha::RangeResponse> FakeCoordinator::range(const std::string& key,
                                                 const std::string& range_end, ha::Milliseconds) {
    const Fault f = SIGNET_TRY(faults_->admit(false, "range"));
    if (f != Fault::none) return fault_error(f, "range");
    auto& impl = *store_->impl;
    std::lock_guard lock(impl.mu);
    return ha::RangeResponse{impl.read(key, range_end), impl.revision};
}

Result<ha::TxnResponse> FakeCoordinator::txn(const ha::TxnRequest& request, ha::Milliseconds) {
    const Fault f = SIGNET_TRY(faults_->admit(true, "txn"));
    std::function<void()> hook;
    {
        std::lock_guard lock(faults_->mu);
        hook = faults_->before_txn;
    }
    if (hook) hook();  // no lock held: the hook may drive the peer's coordinator
    if (blocks_apply(f)) return fault_error(f, "txn");
    auto& impl = *store_->impl;
    Result<ha::TxnResponse> r = [&] {
        std::lock_guard lock(impl.mu);
        return impl.txn(request);
    }();
    impl.drain();
    if (f == Fault::lost_reply) return fault_error(f, "txn");
    return r;
}

Result<ha::Lease> FakeCoordinator::lease_grant(ha::Milliseconds ttl, ha::Milliseconds) {
    const Fault f = SIGNET_TRY(faults_->admit(false, "lease_grant"));
    if (blocks_apply(f)) return fault_error(f, "lease_grant");
    auto& impl = *store_->impl;
    std::lock_guard lock(impl.mu);
    const std::int64_t id = ++impl.next_lease;
    impl.leases[id] = LeaseRec{ttl, impl.clock->monotonic() + ttl, {}};
    if (f == Fault::lost_reply) return fault_error(f, "lease_grant");
    return ha::Lease{id, ttl};
}

Result<ha::Milliseconds> FakeCoordinator::lease_keepalive(std::int64_t lease_id, ha::Milliseconds) {
    const Fault f = SIGNET_TRY(faults_->admit(false, "lease_keepalive"));
    if (blocks_apply(f)) return fault_error(f, "lease_keepalive");
    auto& impl = *store_->impl;
    Result<ha::Milliseconds> r = [&]() -> Result<ha::Milliseconds> {
        std::lock_guard lock(impl.mu);
        auto it = impl.leases.find(lease_id);
        if (it == impl.leases.end()) {
            return make_error(HaErrc::lease_not_found, "fake lease_keepalive");
        }
        // A lease past its TTL is revoked rather than renewed, as etcd's lessor does.
        if (!impl.lease_live(lease_id)) {
            impl.revoke(lease_id);
            return make_error(HaErrc::lease_not_found, "fake lease_keepalive: expired");
        }
        it->second.deadline = impl.clock->monotonic() + it->second.ttl;
        return it->second.ttl;
    }();
    impl.drain();
    if (f == Fault::lost_reply) return fault_error(f, "lease_keepalive");
    return r;
}

Result<void> FakeCoordinator::lease_revoke(std::int64_t lease_id, ha::Milliseconds) {
    const Fault f = SIGNET_TRY(faults_->admit(false, "lease_revoke"));
    if (blocks_apply(f)) return fault_error(f, "lease_revoke");
    auto& impl = *store_->impl;
    bool found = false;
    {
        std::lock_guard lock(impl.mu);
        found = impl.leases.count(lease_id) != 0;
        impl.revoke(lease_id);
    }
    impl.drain();
    if (f == Fault::lost_reply) return fault_error(f, "lease_revoke");
    if (!found) return make_error(HaErrc::lease_not_found, "fake lease_revoke");
    return ok();
}

Result<std::unique_ptr<ha::Watch>> FakeCoordinator::watch(const std::string& key,
                                                          const std::string& range_end,
                                                          std::int64_t start_revision,
                                                          ha::WatchHandlers handlers) {
    const Fault f = SIGNET_TRY(faults_->admit(false, "watch"));
    if (f != Fault::none) return fault_error(f, "watch");
    auto rec = std::make_shared<WatchRec>();
    rec->key = key;
    rec->range_end = range_end;
    rec->handlers = std::move(handlers);
    auto& impl = *store_->impl;
    {
        std::lock_guard lock(impl.mu);
        rec->id = impl.next_watch++;
        impl.watches.emplace(rec->id, rec);
        if (start_revision != 0 && start_revision <= impl.compacted) {
            impl.end_watch(rec,
                           make_error(HaErrc::compacted,
                                      "fake watch from revision " + std::to_string(start_revision) +
                                          ", compacted " + std::to_string(impl.compacted)));
        } else if (start_revision != 0) {
            // Replays kept history; queued behind earlier deliveries and ahead of later writes.
            for (const auto& [rev, events] : impl.history) {
                if (rev < start_revision) continue;
                Delivery d{rec, rev, {}, std::nullopt};
                for (const auto& e : events) {
                    if (in_range(e.kv.key, key, range_end)) d.events.push_back(e);
                }
                if (!d.events.empty()) impl.pending.push_back(std::move(d));
            }
        }
    }
    {
        std::lock_guard lock(faults_->mu);
        faults_->watches.push_back(rec);
    }
    std::unique_ptr<ha::Watch> w = std::make_unique<FakeWatch>(store_->impl, rec);
    impl.drain();
    return w;
}

std::vector<ha::MemberStatus> FakeCoordinator::members(ha::Milliseconds) {
    ha::MemberStatus m;
    m.name = "fake";
    m.client_url = "fake://store";
    m.raft_term = 1;
    {
        std::lock_guard lock(faults_->mu);
        m.reachable = !faults_->partitioned;
        if (!m.reachable) m.error = "partitioned";
    }
    m.is_leader = m.reachable;
    return {m};
}

}  // namespace signet::test
