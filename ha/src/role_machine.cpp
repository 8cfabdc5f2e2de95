// RoleMachine: hot-standby election on a leased leader key, dual-active membership on a leased
// member key, and the fence (check/guard) every nonce allocation passes through.
//
// Safety rests on two independent mechanisms (role.hpp): the guard (the leader key's create
// revision must still equal our term when an allocation commits) and the monotonic deadline
// (check() fails once the lease cannot be proven valid, even if we never hear that we lost it).
// The deadline only ever moves forward from the *send* time of a successful grant/keep-alive, so
// it is never later than etcd's own expiry of the lease. With heartbeats on, a second deadline
// (send time of the last committed heartbeat + beat_timeout) bounds the role as well, and a
// standby may take over once it has seen no heartbeat for longer than that (role.hpp).
#include <boost/json.hpp>

#include "signet/ha/role.hpp"

namespace signet::ha {

std::string_view to_string(PairMode m) noexcept {
    switch (m) {
        case PairMode::hot_standby: return "hot-standby";
        case PairMode::dual_active: return "dual-active";
    }
    return "unknown";
}

std::optional<PairMode> parse_pair_mode(std::string_view s) noexcept {
    if (s == "hot-standby") return PairMode::hot_standby;
    if (s == "dual-active") return PairMode::dual_active;
    return std::nullopt;
}

std::string_view to_string(Role r) noexcept {
    switch (r) {
        case Role::starting: return "starting";
        case Role::standby: return "standby";
        case Role::active: return "active";
        case Role::dual: return "dual";
        case Role::isolated: return "isolated";
    }
    return "unknown";
}

namespace {

using TimePoint = std::chrono::steady_clock::time_point;

// A create revision no key ever has: a guard built on it never holds.
constexpr std::int64_t kNoTerm = -1;

std::string leader_record(const RoleOptions& o) {
    boost::json::object obj;
    obj["name"] = o.name;
    obj["url"] = o.url;
    return boost::json::serialize(obj);
}

struct LeaderRecord {
    std::string name;
    std::string url;
};

LeaderRecord parse_leader_record(const std::string& value) {
    boost::system::error_code ec;
    const boost::json::value v = boost::json::parse(value, ec);
    LeaderRecord out;
    if (ec || !v.is_object()) return out;
    const auto& obj = v.as_object();
    if (const auto* n = obj.if_contains("name"); n && n->is_string()) out.name = n->as_string();
    if (const auto* u = obj.if_contains("url"); u && u->is_string()) out.url = u->as_string();
    return out;
}

}  // namespace

struct RoleMachine::State {
    State(std::shared_ptr<Coordinator> c, std::shared_ptr<const Clock> k, RoleOptions o,
          std::shared_ptr<Logger> l)
        : coordinator(std::move(c)),
          clock(std::move(k)),
          options(std::move(o)),
          logger(std::move(l)),
          leader_key(options.prefix + "leader"),
          beat_key(options.prefix + "beat"),
          member_key(options.prefix + "members/" + options.name) {}

    const std::shared_ptr<Coordinator> coordinator;
    const std::shared_ptr<const Clock> clock;
    const RoleOptions options;
    const std::shared_ptr<Logger> logger;
    const std::string leader_key;
    const std::string beat_key;  // hot-standby heartbeat, on the leader's lease
    const std::string member_key;

    // Serialises tick() and resign(): only they change role, term and lease, so a tick may read
    // them once, talk to the coordinator without holding mu, and write back.
    std::mutex tick_mu;
    bool changed = false;  // guarded by tick_mu: a role change waits to be announced
    // Standby, heartbeats on: the active's term and heartbeat revision last seen (0: absent), and
    // when a reply first showed that pair.
    std::int64_t seen_term = 0;   // guarded by tick_mu
    std::int64_t seen_beat = -1;  // guarded by tick_mu
    TimePoint seen_at{};          // guarded by tick_mu

    mutable std::mutex mu;
    Role role = Role::starting;  // guarded by mu
    std::int64_t term = 0;       // guarded by mu; hot-standby: leader key's create revision
    std::int64_t lease_id = 0;   // guarded by mu; 0: no lease held
    TimePoint deadline{};        // guarded by mu; lease provably valid while monotonic < deadline
    TimePoint
        beat_deadline{};  // guarded by mu; heartbeats on: last committed beat's send + timeout
    TimePoint hold_off_until{};     // guarded by mu; no campaign before this (resign)
    std::string leader_name;        // guarded by mu
    std::string leader_url;         // guarded by mu
    std::string reason;             // guarded by mu
    std::uint64_t transitions = 0;  // guarded by mu
    std::vector<std::function<void(const RoleStatus&)>> callbacks;  // guarded by mu

    struct Held {
        std::int64_t lease_id;
        std::int64_t term;
        TimePoint hold_off_until;
    };

    [[nodiscard]] TimePoint now() const { return clock->monotonic(); }
    [[nodiscard]] Milliseconds timeout() const { return options.call_timeout; }
    [[nodiscard]] bool beats() const {
        return options.mode == PairMode::hot_standby && options.beat_timeout.count() > 0;
    }
    // Caller holds mu. The role is provable while monotonic < this.
    [[nodiscard]] TimePoint proof_end() const {
        return beats() ? std::min(deadline, beat_deadline) : deadline;
    }

    Held held() const {
        std::lock_guard lock(mu);
        return {lease_id, term, hold_off_until};
    }

    // Caller holds mu (and tick_mu).
    void become(Role r, std::string why) {
        reason = std::move(why);
        if (r == role) return;
        role = r;
        ++transitions;
        changed = true;
    }

    // Caller holds mu.
    void learn_leader(const std::vector<KeyValue>& kvs) {
        if (kvs.empty()) {
            leader_name.clear();
            leader_url.clear();
            return;
        }
        LeaderRecord rec = parse_leader_record(kvs.front().value);
        leader_name = std::move(rec.name);
        leader_url = std::move(rec.url);
    }

    [[nodiscard]] std::string standby_reason() const {
        if (leader_name.empty()) return "standby: no active known";
        return "standby: the active is " + leader_name +
               (leader_url.empty() ? std::string() : " at " + leader_url);
    }

    // Best effort: if the revoke does not arrive, the lease simply expires by its TTL.
    void revoke(std::int64_t id) {
        if (id != 0) (void)coordinator->lease_revoke(id, timeout());
    }

    void set_standby(const std::vector<KeyValue>& leader, std::string prefix_reason) {
        std::lock_guard lock(mu);
        learn_leader(leader);
        become(Role::standby,
               prefix_reason.empty() ? standby_reason() : prefix_reason + "; " + standby_reason());
    }

    void set_isolated(std::string why) {
        std::lock_guard lock(mu);
        become(Role::isolated, std::move(why));
    }

    // Keep-alive failed without an answer: the role stands only while the deadline does.
    void keepalive_unanswered(const Error& e) {
        std::lock_guard lock(mu);
        if (now() >= proof_end()) {
            become(Role::isolated, "lease not provable: " + e.message());
        } else {
            reason = "keep-alive failed (role held until the lease deadline): " + e.message();
        }
    }

    void tick_hot_standby() {
        const Held h = held();
        if (h.lease_id != 0) {
            renew_leader(h);
        } else {
            campaign(h);
        }
    }

    // Our leader key was deleted or replaced behind our back: stop first, then let go.
    void deposed(const Held& h, const std::vector<KeyValue>& leader) {
        {
            std::lock_guard lock(mu);
            lease_id = 0;
            term = 0;
        }
        set_standby(leader, "leader key no longer ours");
        revoke(h.lease_id);
    }

    enum class Beat { committed, deposed, unanswered, lease_gone };

    // Heartbeats on: commits `<prefix>beat` under the guard. A deposal is handled here; an
    // unanswered heartbeat leaves beat_deadline where it was.
    Beat beat(const Held& h) {
        const TimePoint sent = now();
        TxnRequest t;
        t.compare.push_back(Compare::create_revision_equals(leader_key, h.term));
        t.success.push_back(Op::put(beat_key, options.name, h.lease_id));
        t.failure.push_back(Op::get(leader_key));
        auto r = coordinator->txn(t, timeout());
        if (r && r->succeeded) {
            std::lock_guard lock(mu);
            beat_deadline = sent + options.beat_timeout;
            return Beat::committed;
        }
        if (r) {
            deposed(h, r->results.empty() ? std::vector<KeyValue>{} : r->results.front());
            return Beat::deposed;
        }
        if (r.error().code == make_error_code(HaErrc::lease_not_found)) return Beat::lease_gone;
        return Beat::unanswered;
    }

    void renew_leader(const Held& h) {
        // The heartbeat first: a slow keep-alive must not starve it. With heartbeats the lease
        // is renewed only once half its provable validity is gone (every ~4 ticks at 1 s), so
        // most ticks spend one call, and the gap between heartbeats stays near one tick.
        if (beats()) {
            const Beat b = beat(h);
            if (b == Beat::deposed) return;
            std::lock_guard lock(mu);
            // A missing lease: the keep-alive below tells the rest.
            if (b != Beat::lease_gone && deadline - now() >= options.lease_ttl / 2) {
                still_leader();
                return;
            }
        }
        const TimePoint sent = now();
        auto ka = coordinator->lease_keepalive(h.lease_id, timeout());
        if (!ka) {
            if (ka.error().code != make_error_code(HaErrc::lease_not_found)) {
                keepalive_unanswered(ka.error());
                return;
            }
            // The engine says the lease is gone: the leader key went with it.
            {
                std::lock_guard lock(mu);
                lease_id = 0;
                term = 0;
                leader_name.clear();
                leader_url.clear();
                become(Role::standby, "leader lease lost");
            }
            if (auto r = coordinator->range(leader_key, {}, timeout())) {
                set_standby(r->kvs, "leader lease lost");
            }
            return;
        }
        {
            std::lock_guard lock(mu);
            deadline = sent + *ka - options.safety_margin;
        }
        if (!beats()) {
            // Without heartbeats, a read tells whether the key is still ours.
            auto r = coordinator->range(leader_key, {}, timeout());
            if (!r) return;  // lease renewed; the guard still protects every allocation
            if (r->kvs.empty() || r->kvs.front().create_revision != h.term) {
                deposed(h, r->kvs);
                return;
            }
        }
        std::lock_guard lock(mu);
        still_leader();
    }

    // Caller holds mu. The leader key is still ours: active while the role is provable.
    void still_leader() {
        leader_name = options.name;
        leader_url = options.url;
        if (now() >= proof_end()) {
            become(Role::isolated, "heartbeat not committed within " +
                                       std::to_string(options.beat_timeout.count()) + " ms");
        } else {
            become(Role::active, {});
        }
    }

    // Caller holds tick_mu. A standby that could not read counts the active's silence afresh
    // from its next answered read: the outage (an etcd re-election, say) may have kept the active
    // from committing heartbeats too, and it gets its full beat_timeout once etcd answers again.
    void unseen() {
        seen_term = 0;
        seen_beat = -1;
    }

    // Standby, heartbeats on: true once the silent active's leader key has been deleted (the
    // caller then campaigns at once); false while its heartbeat is fresh or the delete failed.
    bool take_over(const KeyValue& leader) {
        // Read after the leader key; whatever it shows, the delete below commits only if neither
        // key changed since.
        auto b = coordinator->range(beat_key, {}, timeout());
        if (!b) {
            unseen();
            return false;
        }
        const std::int64_t beat_rev = b->kvs.empty() ? 0 : b->kvs.front().mod_revision;
        const TimePoint n = now();
        if (leader.create_revision != seen_term || beat_rev != seen_beat) {
            seen_term = leader.create_revision;
            seen_beat = beat_rev;
            seen_at = n;
            return false;
        }
        const Milliseconds silent = std::chrono::duration_cast<Milliseconds>(n - seen_at);
        if (silent < options.beat_timeout + options.safety_margin) return false;
        TxnRequest t;
        t.compare.push_back(Compare::create_revision_equals(leader_key, seen_term));
        t.compare.push_back(Compare::mod_revision_equals(beat_key, seen_beat));
        t.success.push_back(Op::del(leader_key));
        t.success.push_back(Op::del(beat_key));
        auto r = coordinator->txn(t, timeout());
        if (!r || !r->succeeded) return false;  // a heartbeat landed, or no answer: look again
        unseen();
        const LeaderRecord old = parse_leader_record(leader.value);
        logger->log(LogLevel::warn, "ha", "takeover",
                    {{"from", old.name},
                     {"term", seen_term},
                     {"silent_ms", static_cast<std::int64_t>(silent.count())}});
        return true;
    }

    void campaign(const Held& h) {
        auto r = coordinator->range(leader_key, {}, timeout());
        if (!r) {
            unseen();
            set_isolated("coordinator unreachable: " + r.error().message());
            return;
        }
        const std::vector<KeyValue>& leader = r->kvs;
        const bool holding_off = now() < h.hold_off_until;
        // A leader key with our name but not our lease (a previous run of this appliance) is
        // not adopted: two processes with one name would then share a term. It expires, or,
        // with heartbeats, is taken over once silent.
        if (!leader.empty() && (!beats() || holding_off || !take_over(leader.front()))) {
            set_standby(leader, {});
            return;
        }
        if (holding_off) {
            set_standby({}, "holding off after resign");
            return;
        }
        const TimePoint sent = now();
        auto lease = coordinator->lease_grant(options.lease_ttl, timeout());
        if (!lease) {
            set_isolated("lease grant failed: " + lease.error().message());
            return;
        }
        TxnRequest t;
        t.compare.push_back(Compare::absent(leader_key));
        t.success.push_back(Op::put(leader_key, leader_record(options), lease->id));
        t.failure.push_back(Op::get(leader_key));
        auto tr = coordinator->txn(t, timeout());
        if (tr && tr->succeeded) {
            // The put created the key, so its create revision is this txn's revision.
            won(lease->id, tr->revision, sent, lease->ttl);
            return;
        }
        if (tr) {
            revoke(lease->id);
            set_standby(tr->results.empty() ? std::vector<KeyValue>{} : tr->results.front(), {});
            return;
        }
        if (tr.error().code == make_error_code(HaErrc::outcome_unknown)) {
            // Maybe applied: the key is ours exactly when it carries our lease.
            auto rb = coordinator->range(leader_key, {}, timeout());
            if (rb && !rb->kvs.empty() && rb->kvs.front().lease == lease->id) {
                won(lease->id, rb->kvs.front().create_revision, sent, lease->ttl);
                return;
            }
        }
        revoke(lease->id);  // deletes the key too if the unanswered txn did create it
        set_isolated("campaign failed: " + tr.error().message());
    }

    void won(std::int64_t id, std::int64_t new_term, TimePoint sent, Milliseconds ttl) {
        std::lock_guard lock(mu);
        lease_id = id;
        term = new_term;
        deadline = sent + ttl - options.safety_margin;
        // The grant's send time precedes the campaign's commit, which a standby sees first.
        beat_deadline = sent + options.beat_timeout;
        leader_name = options.name;
        leader_url = options.url;
        become(Role::active, {});
    }

    void tick_dual_active() {
        const Held h = held();
        if (h.lease_id != 0) {
            const TimePoint sent = now();
            auto ka = coordinator->lease_keepalive(h.lease_id, timeout());
            if (ka) {
                std::lock_guard lock(mu);
                deadline = sent + *ka - options.safety_margin;
                become(Role::dual, {});
                return;
            }
            if (ka.error().code != make_error_code(HaErrc::lease_not_found)) {
                keepalive_unanswered(ka.error());
                return;
            }
            {
                std::lock_guard lock(mu);
                lease_id = 0;
                become(Role::isolated, "member lease lost");
            }
            // No election in dual-active: join again at once.
        }
        if (now() < h.hold_off_until) {
            set_isolated("holding off after resign");
            return;
        }
        const TimePoint sent = now();
        auto lease = coordinator->lease_grant(options.lease_ttl, timeout());
        if (!lease) {
            set_isolated("lease grant failed: " + lease.error().message());
            return;
        }
        TxnRequest t;
        t.success.push_back(Op::put(member_key, leader_record(options), lease->id));
        auto tr = coordinator->txn(t, timeout());
        if (!tr) {
            revoke(lease->id);
            set_isolated("member key not written: " + tr.error().message());
            return;
        }
        std::lock_guard lock(mu);
        lease_id = lease->id;
        deadline = sent + lease->ttl - options.safety_margin;
        become(Role::dual, {});
    }

    RoleStatus status() const {
        std::lock_guard lock(mu);
        RoleStatus st;
        st.role = role;
        st.mode = options.mode;
        st.name = options.name;
        st.leader_name = leader_name;
        st.leader_url = leader_url;
        st.reason = reason;
        st.transitions = transitions;
        if (role == Role::active || role == Role::dual) {
            const TimePoint t = now();
            st.term = options.mode == PairMode::hot_standby ? term : 0;
            if (t < proof_end()) {
                st.lease_remaining = std::chrono::duration_cast<Milliseconds>(proof_end() - t);
            } else {
                // Not announced yet (the next tick does), but already not signing: say so.
                st.role = Role::isolated;
                st.reason = "lease not provable by the monotonic clock";
            }
        }
        return st;
    }

    // Caller holds tick_mu.
    void resign(Milliseconds hold_off) {
        std::int64_t id = 0;
        {
            // Stop issuing before the lease goes: once it is revoked the peer may take over.
            std::lock_guard lock(mu);
            id = lease_id;
            lease_id = 0;
            term = 0;
            hold_off_until = now() + hold_off;
            if (options.mode == PairMode::hot_standby) {
                leader_name.clear();
                leader_url.clear();
                become(Role::standby, "resigned");
            } else {
                become(Role::isolated, "resigned");
            }
        }
        revoke(id);
    }

    // Caller holds tick_mu: the status to announce if this tick/resign changed the role.
    std::optional<RoleStatus> take_change() {
        if (!changed) return std::nullopt;
        changed = false;
        return status();
    }

    // Caller holds no lock, so a callback may call back into the machine (even resign()).
    void announce(const std::optional<RoleStatus>& st) {
        if (!st) return;
        std::vector<std::function<void(const RoleStatus&)>> cbs;
        {
            std::lock_guard lock(mu);
            cbs = callbacks;
        }
        logger->log(LogLevel::info, "ha", "role_change",
                    {{"role", to_string(st->role)},
                     {"term", st->term},
                     {"leader", st->leader_name},
                     {"reason", st->reason}});
        for (const auto& cb : cbs) cb(*st);
    }
};

RoleMachine::RoleMachine(std::shared_ptr<Coordinator> coordinator,
                         std::shared_ptr<const Clock> clock, RoleOptions options,
                         std::shared_ptr<Logger> logger)
    : coordinator_(std::move(coordinator)),
      clock_(std::move(clock)),
      options_(std::move(options)),
      logger_(logger ? std::move(logger) : null_logger()),
      s_(std::make_unique<State>(coordinator_, clock_, options_, logger_)) {}

RoleMachine::~RoleMachine() = default;

void RoleMachine::tick() {
    std::optional<RoleStatus> change;
    {
        std::lock_guard t(s_->tick_mu);
        if (options_.mode == PairMode::hot_standby) {
            s_->tick_hot_standby();
        } else {
            s_->tick_dual_active();
        }
        change = s_->take_change();
    }
    s_->announce(change);
}

void RoleMachine::resign(Milliseconds hold_off) {
    std::optional<RoleStatus> change;
    {
        std::lock_guard t(s_->tick_mu);
        s_->resign(hold_off);
        change = s_->take_change();
    }
    s_->announce(change);
}

RoleStatus RoleMachine::status() const { return s_->status(); }

void RoleMachine::on_change(std::function<void(const RoleStatus&)> callback) {
    std::lock_guard lock(s_->mu);
    s_->callbacks.push_back(std::move(callback));
}

std::vector<Compare> RoleMachine::guard() const {
    if (options_.mode == PairMode::dual_active) return {};
    std::lock_guard lock(s_->mu);
    // Anything but the active carries a guard that never holds, so a txn built from a stale
    // role decision still cannot commit.
    const std::int64_t t = s_->role == Role::active ? s_->term : kNoTerm;
    return {Compare::create_revision_equals(s_->leader_key, t)};
}

Result<void> RoleMachine::check() const {
    std::lock_guard lock(s_->mu);
    const TimePoint t = s_->now();
    switch (s_->role) {
        case Role::active:
        case Role::dual:
            // Dual-active is held to the same rule as the active: CAS alone would keep values
            // unique, but an appliance that cannot prove its member lease is cut off from the
            // pair and must stop within the lease bound (G4), so it fails here too.
            if (t < s_->proof_end()) return ok();
            return make_error(
                HaErrc::fenced,
                "lease not provable: deadline passed " +
                    std::to_string(
                        std::chrono::duration_cast<Milliseconds>(t - s_->proof_end()).count()) +
                    " ms ago");
        case Role::standby: return make_error(HaErrc::not_active, s_->standby_reason());
        case Role::starting:
            if (options_.mode == PairMode::hot_standby) {
                return make_error(HaErrc::not_active, "starting: no role yet");
            }
            return make_error(HaErrc::fenced, "starting: no member lease yet");
        case Role::isolated: return make_error(HaErrc::fenced, "isolated: " + s_->reason);
    }
    return make_error(HaErrc::fenced, "unknown role");
}

}  // namespace signet::ha
