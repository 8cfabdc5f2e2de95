// The appliance's role in a pair, and the fence every nonce allocation passes through.
//
// Hot-standby: the active holds the leader key `<prefix>leader`, created with a lease (TTL ~1 s)
// by a compare-and-create transaction; its create revision is the *term*. Every allocation
// transaction compares the leader key's create revision with the term (guard()), so a deposed
// active cannot allocate. Independently, the active stops issuing values once it cannot prove
// by CLOCK_MONOTONIC that its lease is still valid (check()): the deadline is the send time of the
// last successful keep-alive plus the granted TTL, minus a safety margin. etcd expires a lease no
// earlier than its receipt of that keep-alive plus the TTL, so the old active stops before the
// standby can take over (G4).
//
// Heartbeat takeover (beat_timeout > 0), so that a failover does not wait for etcd to expire the
// lease (up to TTL + 500 ms, etcd's expiry sweep): on every tick the active commits a heartbeat,
// `<prefix>beat` put under the guard, and also stops issuing values beat_timeout after the send
// time of its last committed heartbeat. A standby that sees neither the term nor the heartbeat's
// mod revision change for beat_timeout + safety_margin (by its own monotonic clock, counted from
// the reply that first showed them) deletes the leader key in a transaction that compares both,
// then campaigns. If that transaction commits, no heartbeat committed after the one it saw, so
// the old active's last provable instant (send time + beat_timeout) lay before the standby's
// decision by at least the margin: the two never issue values at the same time.
//
// Dual-active: no leader; both appliances allocate (CAS makes that safe) and each keeps a
// member key `<prefix>members/<name>` on its own lease so the peer's health is visible.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "signet/core/clock.hpp"
#include "signet/core/logger.hpp"
#include "signet/ha/coordinator.hpp"

namespace signet::ha {

enum class PairMode { hot_standby, dual_active };
[[nodiscard]] std::string_view to_string(PairMode m) noexcept;
[[nodiscard]] std::optional<PairMode> parse_pair_mode(std::string_view s) noexcept;

enum class Role {
    starting,  // no answer from the coordinator yet
    standby,   // hot-standby: another appliance is (or may still be) active
    active,    // hot-standby: this appliance holds the leader key and a provably valid lease
    dual,      // dual-active: signing, member lease held
    isolated,  // the coordinator cannot be reached or the lease was lost: not allocating
};
[[nodiscard]] std::string_view to_string(Role r) noexcept;

// What every allocation passes through.
class Fence {
public:
    virtual ~Fence() = default;
    // Compares every allocation transaction must carry (hot-standby: the leader key's create
    // revision equals this appliance's term). Empty in dual-active mode.
    [[nodiscard]] virtual std::vector<Compare> guard() const = 0;
    // ok while this appliance may hand out values now; HaErrc::not_active (standby, with the
    // active's name in the message) or HaErrc::fenced (lease not provably valid) otherwise.
    [[nodiscard]] virtual Result<void> check() const = 0;
};

struct RoleOptions {
    std::string prefix;  // keyspace prefix, e.g. "/signet/pair-1/"
    std::string name;    // this appliance's member name
    std::string url;     // this appliance's API URL (shown to clients sent elsewhere)
    PairMode mode = PairMode::hot_standby;
    Milliseconds lease_ttl{1000};
    Milliseconds safety_margin{150};  // subtracted from the provable lease deadline
    Milliseconds call_timeout{300};   // each coordinator call made by tick()
    // Hot-standby heartbeat takeover (see the top of this file); 0 turns it off, and a standby
    // then waits for etcd to expire the active's lease. Must be below lease_ttl - safety_margin
    // to make any difference.
    Milliseconds beat_timeout{0};
};

struct RoleStatus {
    Role role = Role::starting;
    PairMode mode = PairMode::hot_standby;
    std::string name;
    std::string leader_name;  // hot-standby: the current active, if known
    std::string leader_url;
    std::int64_t term = 0;            // hot-standby: the leader key's create revision while active
    Milliseconds lease_remaining{0};  // provable remaining validity (active / dual)
    std::string reason;               // why not active/dual, for health and API errors
    std::uint64_t transitions = 0;    // role changes since start
};

// Thread-safe. tick() is driven by one thread (RoleDriver in production, the test directly).
class RoleMachine final : public Fence {
public:
    RoleMachine(std::shared_ptr<Coordinator> coordinator, std::shared_ptr<const Clock> clock,
                RoleOptions options, std::shared_ptr<Logger> logger = null_logger());
    ~RoleMachine() override;  // defined where State is complete

    // One step: renew the lease when held, campaign when no leader exists, notice deposal or a
    // lost lease. Call at least every lease_ttl / 4.
    void tick();
    // Gives up the role and revokes the lease so the peer can take over at once (graceful stop,
    // operator-initiated failover). The next tick() may campaign again unless `hold_off` is set.
    void resign(Milliseconds hold_off = Milliseconds{0});

    [[nodiscard]] RoleStatus status() const;
    // Called (on the ticking thread, outside the lock) after every role change.
    void on_change(std::function<void(const RoleStatus&)> callback);

    [[nodiscard]] std::vector<Compare> guard() const override;
    [[nodiscard]] Result<void> check() const override;

private:
    struct State;
    std::shared_ptr<Coordinator> coordinator_;
    std::shared_ptr<const Clock> clock_;
    RoleOptions options_;
    std::shared_ptr<Logger> logger_;
    std::unique_ptr<State> s_;
};

}  // namespace signet::ha
