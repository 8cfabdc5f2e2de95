// ha: the role machine (hot-standby election with a fenced lease, dual-active membership) on the
// fake coordinator. Time is a FakeClock; leases expire only when the test says so.
#include "signet/ha/role.hpp"

#include <catch2/catch.hpp>
#include <utility>
#include <vector>

#include "signet_test/fake_coordinator.hpp"
#include "signet_test/result_matchers.hpp"

using namespace std::chrono_literals;
using signet::ha::Compare;
using signet::ha::HaErrc;
using signet::ha::Op;
using signet::ha::PairMode;
using signet::ha::Role;
using signet::ha::RoleMachine;
using signet::ha::RoleOptions;
using signet::ha::RoleStatus;
using signet::ha::TxnRequest;
using signet::test::FakeClock;
using signet::test::FakeCoordinator;
using signet::test::FakeStore;
using signet::test::Fault;

namespace {

const std::string kPrefix = "/signet/t/";

RoleOptions options(const std::string& name, PairMode mode = PairMode::hot_standby,
                    std::chrono::milliseconds beat_timeout = 0ms) {
    RoleOptions o;
    o.prefix = kPrefix;
    o.name = name;
    o.url = "https://" + name + ":8443";
    o.mode = mode;
    o.lease_ttl = 1000ms;
    o.safety_margin = 150ms;
    o.call_timeout = 300ms;
    o.beat_timeout = beat_timeout;
    return o;
}

// One store, two appliances "a" and "b", each with its own coordinator (and faults).
struct Pair {
    explicit Pair(PairMode mode = PairMode::hot_standby, std::chrono::milliseconds beat = 0ms)
        : a(ca, clock, options("a", mode, beat)), b(cb, clock, options("b", mode, beat)) {}

    std::shared_ptr<FakeClock> clock = std::make_shared<FakeClock>();
    std::shared_ptr<FakeStore> store = std::make_shared<FakeStore>(clock);
    std::shared_ptr<FakeCoordinator> ca = std::make_shared<FakeCoordinator>(store);
    std::shared_ptr<FakeCoordinator> cb = std::make_shared<FakeCoordinator>(store);
    RoleMachine a;
    RoleMachine b;

    [[nodiscard]] signet::ha::KeyValue key(const std::string& name) const {
        for (const auto& kv : store->dump(kPrefix)) {
            if (kv.key == kPrefix + name) return kv;
        }
        return {};
    }
    [[nodiscard]] signet::ha::KeyValue leader() const { return key("leader"); }
};

bool fails_with(const signet::Result<void>& r, HaErrc e) {
    return !r && r.error().code == make_error_code(e);
}

// An allocation-shaped txn: the fence's guard plus one put.
bool commits_with(FakeCoordinator& c, const std::vector<Compare>& guard) {
    TxnRequest t;
    t.compare = guard;
    t.success.push_back(Op::put(kPrefix + "counters/k", "1"));
    auto r = c.txn(t, 100ms);
    REQUIRE_OK(r);
    return r->succeeded;
}

}  // namespace

TEST_CASE(
    "the first appliance to tick campaigns and becomes active with the leader key's create "
    "revision as its term",
    "[ha][unit]") {
    Pair p;
    p.a.tick();
    const RoleStatus st = p.a.status();
    CHECK(st.role == Role::active);
    CHECK(st.leader_name == "a");
    CHECK(st.term == p.leader().create_revision);
    CHECK(st.term > 0);
    CHECK(st.lease_remaining == 850ms);
    CHECK_OK(p.a.check());
    const auto g = p.a.guard();
    REQUIRE(g.size() == 1);
    CHECK(g[0].key == kPrefix + "leader");
    CHECK(g[0].target == Compare::Target::create_revision);
    CHECK(g[0].number == st.term);
    CHECK(commits_with(*p.ca, g));
}

TEST_CASE("the lease deadline counts from the send time of the grant, not from the reply",
          "[ha][unit]") {
    Pair p;
    bool once = false;
    // The campaign's txn takes 200 ms: the proof of validity must not include that time.
    p.ca->before_txn([&] {
        if (!std::exchange(once, true)) p.clock->advance(200ms);
    });
    p.a.tick();
    REQUIRE(p.a.status().role == Role::active);
    CHECK(p.a.status().lease_remaining == 650ms);
    p.clock->advance(650ms);
    CHECK(fails_with(p.a.check(), HaErrc::fenced));
}

TEST_CASE("a second appliance on the same store is standby and names the active", "[ha][unit]") {
    Pair p;
    p.a.tick();
    p.b.tick();
    const RoleStatus st = p.b.status();
    CHECK(st.role == Role::standby);
    CHECK(st.leader_name == "a");
    CHECK(st.leader_url == "https://a:8443");
    auto r = p.b.check();
    REQUIRE(fails_with(r, HaErrc::not_active));
    CHECK_THAT(r.error().message(), Catch::Contains("https://a:8443"));
    // A standby's guard never holds, even before any active exists.
    CHECK_FALSE(commits_with(*p.cb, p.b.guard()));
    p.b.tick();
    CHECK(p.b.status().role == Role::standby);
    CHECK(p.a.status().role == Role::active);
}

TEST_CASE(
    "an active that stops renewing loses the role and the standby takes over with a higher "
    "term",
    "[ha][unit]") {
    Pair p;
    std::vector<RoleStatus> a_changes;
    // Runs outside the lock: calling back into the machine must not deadlock.
    p.a.on_change([&](const RoleStatus& st) {
        a_changes.push_back(st);
        (void)p.a.check();
        (void)p.a.status();
    });
    p.a.tick();
    p.b.tick();
    const std::int64_t old_term = p.a.status().term;
    p.clock->advance(1000ms);
    p.store->expire_leases();
    CHECK(p.leader().create_revision == 0);  // the key went with the lease

    p.b.tick();
    CHECK(p.b.status().role == Role::active);
    CHECK(p.b.status().term > old_term);
    CHECK_OK(p.b.check());
    CHECK(fails_with(p.a.check(), HaErrc::fenced));  // by the clock, before any tick

    p.a.tick();  // keep-alive: lease_not_found
    CHECK(p.a.status().role == Role::standby);
    CHECK(p.a.status().leader_name == "b");
    CHECK(fails_with(p.a.check(), HaErrc::not_active));
    REQUIRE(a_changes.size() == 2);
    CHECK(a_changes[0].role == Role::active);
    CHECK(a_changes[1].role == Role::standby);
    CHECK(p.a.status().transitions == 2);
}

TEST_CASE("a partitioned active fails check() by the monotonic clock before its lease can expire",
          "[ha][unit]") {
    Pair p;
    p.a.tick();
    p.b.tick();
    p.ca->partition(true);
    p.clock->advance(849ms);
    CHECK_OK(p.a.check());
    p.clock->advance(1ms);  // send time of the grant + TTL - margin
    // No tick, no answer from anyone: the clock alone fences it.
    CHECK(fails_with(p.a.check(), HaErrc::fenced));
    CHECK(p.a.status().role == Role::isolated);
    p.a.tick();
    CHECK(p.a.status().role == Role::isolated);

    // The standby cannot take over before etcd expires the lease, which is later still.
    p.b.tick();
    CHECK(p.b.status().role == Role::standby);
    p.clock->advance(150ms);
    p.store->expire_leases();
    p.b.tick();
    CHECK(p.b.status().role == Role::active);
    CHECK_OK(p.b.check());
    CHECK_FALSE(p.a.check().has_value());

    p.ca->partition(false);
    p.a.tick();
    CHECK(p.a.status().role == Role::standby);
    CHECK(p.a.status().leader_name == "b");
}

TEST_CASE("the guard of a deposed active makes its allocation transaction fail", "[ha][unit]") {
    Pair p;
    p.a.tick();
    p.b.tick();
    // An operator revokes the active's lease: the active has not heard and its clock is fine.
    FakeCoordinator op(p.store);
    REQUIRE_OK(op.lease_revoke(p.leader().lease, 100ms));
    p.b.tick();
    REQUIRE(p.b.status().role == Role::active);
    CHECK_OK(p.a.check());  // still believes it is active
    CHECK_FALSE(commits_with(*p.ca, p.a.guard()));
    CHECK(commits_with(*p.cb, p.b.guard()));
    // Its next tick notices that the key is no longer its own.
    p.a.tick();
    CHECK(p.a.status().role == Role::standby);
    CHECK(p.a.status().leader_name == "b");
}

TEST_CASE("resign hands the role over at once", "[ha][unit]") {
    Pair p;
    p.a.tick();
    p.b.tick();
    SECTION("without hold-off") {
        p.a.resign();
        CHECK(fails_with(p.a.check(), HaErrc::not_active));
        p.b.tick();  // no clock advance: the lease was revoked
        CHECK(p.b.status().role == Role::active);
        p.a.tick();
        CHECK(p.a.status().role == Role::standby);
        CHECK(p.a.status().leader_name == "b");
    }
    SECTION("with a hold-off the resigned appliance does not campaign until it has elapsed") {
        p.a.resign(5000ms);
        p.a.tick();
        CHECK(p.a.status().role == Role::standby);
        CHECK(p.leader().create_revision == 0);
        p.clock->advance(5000ms);
        p.a.tick();
        CHECK(p.a.status().role == Role::active);
    }
}

TEST_CASE("a lost keep-alive reply keeps the role until the deadline, then isolates",
          "[ha][unit]") {
    Pair p;
    std::vector<Role> changes;
    p.a.on_change([&](const RoleStatus& st) { changes.push_back(st.role); });
    p.a.tick();  // deadline: t0 + 850 ms
    p.clock->advance(300ms);
    p.ca->inject(Fault::lost_reply);  // renewed in the store, but we cannot know it
    p.a.tick();
    CHECK(p.a.status().role == Role::active);
    p.clock->advance(549ms);
    CHECK_OK(p.a.check());
    p.clock->advance(1ms);
    CHECK(fails_with(p.a.check(), HaErrc::fenced));
    p.ca->inject(Fault::unavailable);
    p.a.tick();
    CHECK(p.a.status().role == Role::isolated);
    // The lease was in fact renewed at t0 + 300 ms: the next answered keep-alive restores the role
    // under the same term.
    const std::int64_t term = p.leader().create_revision;
    p.a.tick();
    CHECK(p.a.status().role == Role::active);
    CHECK(p.a.status().term == term);
    CHECK_OK(p.a.check());
    CHECK(changes == std::vector<Role>{Role::active, Role::isolated, Role::active});
}

TEST_CASE("a campaign whose answer is lost reads the leader key back to learn whether it won",
          "[ha][unit]") {
    Pair p;
    SECTION("applied") {
        p.ca->inject(Fault::lost_reply, 1, true);
        p.a.tick();
        CHECK(p.a.status().role == Role::active);
        CHECK(p.a.status().term == p.leader().create_revision);
    }
    SECTION("not applied") {
        p.ca->inject(Fault::lost_request, 1, true);
        p.a.tick();
        CHECK(p.a.status().role == Role::isolated);
        CHECK(p.store->dump(kPrefix).empty());
        p.a.tick();
        CHECK(p.a.status().role == Role::active);
    }
}

TEST_CASE("a standby that cannot reach the coordinator is isolated", "[ha][unit]") {
    Pair p;
    p.a.tick();
    p.b.tick();
    p.cb->partition(true);
    p.b.tick();
    CHECK(p.b.status().role == Role::isolated);
    CHECK(fails_with(p.b.check(), HaErrc::fenced));
    CHECK_OK(p.a.check());
}

TEST_CASE(
    "dual-active appliances are both dual and a partitioned one turns isolated after its "
    "deadline",
    "[ha][unit]") {
    Pair p(PairMode::dual_active);
    CHECK(fails_with(p.a.check(), HaErrc::fenced));  // starting
    p.a.tick();
    p.b.tick();
    CHECK(p.a.status().role == Role::dual);
    CHECK(p.b.status().role == Role::dual);
    CHECK_OK(p.a.check());
    CHECK_OK(p.b.check());
    CHECK(p.a.guard().empty());
    std::vector<std::string> keys;
    for (const auto& kv : p.store->dump(kPrefix)) keys.push_back(kv.key);
    CHECK(keys == std::vector<std::string>{kPrefix + "members/a", kPrefix + "members/b"});

    p.ca->partition(true);
    p.clock->advance(500ms);
    p.a.tick();
    p.b.tick();
    CHECK(p.a.status().role == Role::dual);  // deadline not passed yet
    CHECK_OK(p.a.check());
    p.clock->advance(350ms);
    CHECK(fails_with(p.a.check(), HaErrc::fenced));
    p.a.tick();
    p.b.tick();
    CHECK(p.a.status().role == Role::isolated);
    CHECK(p.b.status().role == Role::dual);
    CHECK_OK(p.b.check());

    // Healed after its lease expired: it joins again with a new member lease.
    p.clock->advance(200ms);
    p.store->expire_leases();
    p.ca->partition(false);
    p.a.tick();
    CHECK(p.a.status().role == Role::dual);
    CHECK_OK(p.a.check());
}

TEST_CASE("pair modes and roles have stable names", "[ha][unit]") {
    for (auto m : {PairMode::hot_standby, PairMode::dual_active}) {
        CHECK(signet::ha::parse_pair_mode(signet::ha::to_string(m)) == m);
    }
    CHECK(signet::ha::to_string(PairMode::hot_standby) == "hot-standby");
    CHECK(signet::ha::to_string(PairMode::dual_active) == "dual-active");
    CHECK_FALSE(signet::ha::parse_pair_mode("standalone"));
    CHECK(signet::ha::to_string(Role::isolated) == "isolated");
    CHECK(signet::ha::to_string(Role::dual) == "dual");
}

TEST_CASE("an on_change callback may call back into the machine, even resign()", "[ha][unit]") {
    Pair p;
    std::vector<Role> seen;
    p.a.on_change([&](const RoleStatus& st) {
        seen.push_back(st.role);
        if (st.role == Role::active) p.a.resign();
    });
    p.a.tick();
    CHECK(seen == std::vector<Role>{Role::active, Role::standby});
    CHECK(p.leader().create_revision == 0);
    CHECK(fails_with(p.a.check(), HaErrc::not_active));
}

// Heartbeat takeover: beat_timeout 500 ms, margin 150 ms, lease TTL 1 s. Leases never expire in
// these tests unless they say so: every takeover below happens before etcd would expire the lease.
TEST_CASE(
    "with heartbeats a standby takes over a silent active after beat_timeout + margin, before "
    "its lease expires, and the old active is fenced by then",
    "[ha][unit]") {
    Pair p(PairMode::hot_standby, 500ms);
    p.a.tick();  // t0: active, beat deadline t0 + 500 ms
    p.b.tick();  // first sight of (term, no heartbeat yet)
    const std::int64_t old_term = p.a.status().term;
    p.clock->advance(100ms);
    p.a.tick();  // t0 + 100: heartbeat, deadline t0 + 600
    CHECK(p.key("beat").value == "a");
    CHECK(p.key("beat").lease == p.leader().lease);  // goes with the leader's lease
    CHECK(p.a.status().lease_remaining == 500ms);
    p.b.tick();  // sees the heartbeat at t0 + 100
    // a dies here. Its lease (renewed at t0 + 100) would stand until t0 + 1100.
    p.clock->advance(499ms);
    CHECK_OK(p.a.check());
    p.clock->advance(1ms);
    CHECK(fails_with(p.a.check(), HaErrc::fenced));  // t0 + 600: by its own clock
    p.clock->advance(149ms);
    p.b.tick();  // silent for 649 ms: not yet
    CHECK(p.b.status().role == Role::standby);
    CHECK(p.leader().create_revision == old_term);
    p.clock->advance(1ms);
    p.b.tick();  // 650 ms: delete the silent leader key, campaign
    CHECK(p.b.status().role == Role::active);
    CHECK(p.b.status().term > old_term);
    CHECK_OK(p.b.check());
    CHECK(commits_with(*p.cb, p.b.guard()));
    CHECK_FALSE(commits_with(*p.ca, p.a.guard()));

    // a wakes up: its heartbeat fails the guard, so it learns it was deposed and steps down.
    p.a.tick();
    CHECK(p.a.status().role == Role::standby);
    CHECK(p.a.status().leader_name == "b");
    CHECK(fails_with(p.a.check(), HaErrc::not_active));
}

TEST_CASE("with heartbeats a standby never takes over while the active's heartbeats commit",
          "[ha][unit]") {
    Pair p(PairMode::hot_standby, 500ms);
    p.a.tick();
    p.b.tick();
    const std::uint64_t calls = p.ca->calls();
    const std::uint64_t txns = p.ca->txns();
    for (int i = 0; i < 60; ++i) {  // 6 s: many lease TTLs and heartbeat timeouts
        p.clock->advance(100ms);
        p.a.tick();
        p.b.tick();
        REQUIRE(p.b.status().role == Role::standby);
        REQUIRE_OK(p.a.check());
        p.store->expire_leases();  // the lease is renewed in time though not on every tick
    }
    CHECK(p.a.status().transitions == 1);
    CHECK(p.ca->txns() - txns == 60);  // a heartbeat per tick
    // Keep-alives once half the lease's provable validity is gone: every 4th tick.
    CHECK(p.ca->calls() - calls - 60 == 15);
}

TEST_CASE(
    "with heartbeats a takeover loses to a heartbeat that commits between the standby's read "
    "and its delete",
    "[ha][unit]") {
    Pair p(PairMode::hot_standby, 500ms);
    p.a.tick();
    p.b.tick();
    const std::int64_t term = p.a.status().term;
    p.clock->advance(700ms);  // a was stalled (fenced by now), b has seen nothing new
    CHECK(fails_with(p.a.check(), HaErrc::fenced));
    // a resumes just as b decides: its heartbeat commits before b's delete.
    p.cb->before_txn([&] { p.a.tick(); });
    p.b.tick();
    p.cb->before_txn({});
    CHECK(p.b.status().role == Role::standby);
    CHECK(p.a.status().role == Role::active);
    CHECK(p.leader().create_revision == term);
    CHECK_OK(p.a.check());
    // b counts afresh from the heartbeat it now sees.
    p.clock->advance(100ms);
    p.b.tick();
    CHECK(p.b.status().role == Role::standby);
}

TEST_CASE(
    "with heartbeats an active whose heartbeats do not commit stops issuing beat_timeout after "
    "the last one that did, though its keep-alives succeed",
    "[ha][unit]") {
    Pair p(PairMode::hot_standby, 500ms);
    std::vector<Role> changes;
    p.a.on_change([&](const RoleStatus& st) { changes.push_back(st.role); });
    p.a.tick();  // t0: deadline t0 + 500 by the campaign
    for (int i = 0; i < 4; ++i) {
        p.clock->advance(100ms);
        p.ca->inject(Fault::lost_request, 1, true);  // the heartbeat txn never arrives
        p.a.tick();                                  // the keep-alive does
        REQUIRE(p.a.status().role == Role::active);
    }
    p.clock->advance(99ms);
    CHECK_OK(p.a.check());  // t0 + 499
    p.clock->advance(1ms);
    CHECK(fails_with(p.a.check(), HaErrc::fenced));
    CHECK(p.a.status().role == Role::isolated);
    p.ca->inject(Fault::lost_request, 1, true);
    p.a.tick();
    CHECK(changes == std::vector<Role>{Role::active, Role::isolated});
    // A heartbeat that commits under the same term gives the role back.
    p.a.tick();
    CHECK(p.a.status().role == Role::active);
    CHECK_OK(p.a.check());
    CHECK(changes == std::vector<Role>{Role::active, Role::isolated, Role::active});
}

TEST_CASE(
    "with heartbeats a standby that could not reach etcd counts the active's silence afresh once "
    "it can",
    "[ha][unit]") {
    Pair p(PairMode::hot_standby, 500ms);
    p.a.tick();
    p.b.tick();  // sees (term, no heartbeat) at t0
    // An etcd re-election: neither appliance gets an answer for 700 ms (past beat_timeout + margin,
    // within the lease).
    p.ca->partition(true);
    p.cb->partition(true);
    for (int i = 0; i < 7; ++i) {
        p.clock->advance(100ms);
        p.a.tick();
        p.b.tick();
    }
    CHECK(p.b.status().role == Role::isolated);
    p.ca->partition(false);
    p.cb->partition(false);
    p.b.tick();  // answered again: the clock starts now, not at t0
    CHECK(p.b.status().role == Role::standby);
    p.clock->advance(200ms);
    p.b.tick();
    CHECK(p.b.status().role == Role::standby);
    p.a.tick();  // the active's heartbeat lands within the standby's window
    CHECK(p.a.status().role == Role::active);
    for (int i = 0; i < 10; ++i) {
        p.clock->advance(100ms);
        p.a.tick();
        p.b.tick();
        REQUIRE(p.b.status().role == Role::standby);
    }
    CHECK_OK(p.a.check());
}

TEST_CASE(
    "with heartbeats a heartbeat whose reply is lost does not extend the active's deadline, and "
    "the standby counts afresh from it",
    "[ha][unit]") {
    Pair p(PairMode::hot_standby, 500ms);
    p.a.tick();  // t0: deadline t0 + 500
    p.b.tick();
    p.clock->advance(100ms);
    const std::int64_t before = p.store->revision();
    p.ca->inject(Fault::lost_reply, 1, true);  // the heartbeat commits; a cannot know it
    p.a.tick();
    REQUIRE(p.key("beat").mod_revision > before);
    CHECK(p.a.status().lease_remaining == 400ms);  // still counted from t0
    p.b.tick();                                    // sees the heartbeat at t0 + 100
    p.clock->advance(400ms);
    CHECK(fails_with(p.a.check(), HaErrc::fenced));
    // a stays silent from here: b's count started at t0 + 100, not t0.
    p.clock->advance(149ms);  // t0 + 649: 650 ms after t0, 549 ms after the heartbeat
    p.b.tick();
    CHECK(p.b.status().role == Role::standby);
    p.clock->advance(101ms);  // 650 ms after the heartbeat
    p.b.tick();
    CHECK(p.b.status().role == Role::active);
}
