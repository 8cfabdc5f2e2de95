// EtcdCoordinator under faults on real etcd members: kill -9 (failover), SIGSTOP (outcome
// unknown), quorum loss and recovery, member status, and mutual TLS. Every wait is a bounded
// poll; assertions are on outcomes, never on durations.
#include "signet/ha/etcd_coordinator.hpp"

#include <thread>

#include "etcd_test_helpers.hpp"

// The helpers' namespace brings chrono literals and the ha names used below.
using namespace signet::test::etcd;

TEST_CASE("calls fail over to the next endpoint when the first member is killed",
          "[ha][integration]") {
    EtcdCluster cluster(cluster_of(3));
    auto logger = std::make_shared<RecordingLogger>();
    auto c = connect(cluster, cluster.endpoints(), logger);
    REQUIRE_OK(put(*c, "fo", "before"));
    cluster.kill(0);
    REQUIRE(cluster.wait_for_leader(10s));

    auto r = c->range("fo", "", 3s);
    REQUIRE_OK(r);
    REQUIRE(r->kvs.size() == 1);
    CHECK(r->kvs[0].value == "before");
    // A refused connection proves the request never reached m0, so even a txn moves on.
    REQUIRE_OK(put(*c, "fo", "after"));
    auto after = c->range("fo", "", 3s);
    REQUIRE_OK(after);
    CHECK(after->kvs.at(0).value == "after");
    CHECK(logger->saw("warn:endpoint_failover"));

    // A watch set up now is confirmed by the next member and streams from it.
    WatchLog log;
    auto watch = c->watch("fo", "", after->revision, log.handlers());
    REQUIRE_OK(watch);
    CHECK(log.wait_events(1, 10s));
    CHECK(log.events().at(0).kv.value == "after");
}

TEST_CASE("a watch reports unavailable when its member goes away", "[ha][integration]") {
    EtcdCluster cluster(cluster_of(1));
    auto c = connect(cluster);
    WatchLog log;
    auto watch = c->watch("gone/", signet::ha::prefix_end("gone/"), 0, log.handlers());
    REQUIRE_OK(watch);
    REQUIRE_OK(put(*c, "gone/a", "1"));
    REQUIRE(log.wait_events(1, 10s));
    cluster.kill(0);
    REQUIRE(log.wait_error(10s));
    const auto e = log.error();
    INFO("error: " << e->message());
    CHECK(e->is(Errc::unavailable));
    CHECK(log.events().size() == 1);

    SECTION("and a new watch cannot be set up while no member answers") {
        WatchLog none;
        auto again = c->watch("gone/", "", 0, none.handlers());
        REQUIRE_FALSE(again.has_value());
        CHECK(again.error().is(Errc::unavailable));
    }
}

TEST_CASE("a txn to a stopped member is outcome_unknown within its timeout", "[ha][integration]") {
    EtcdCluster cluster(cluster_of(1));
    auto c = connect(cluster);
    REQUIRE_OK(put(*c, "stopped", "1"));  // leaves a pooled connection to reuse
    cluster.pause(0);

    TxnRequest txn;
    txn.success = {Op::put("stopped", "3")};
    auto late = c->txn(txn, 300ms);
    REQUIRE_FALSE(late.has_value());
    INFO("error: " << late.error().message());
    CHECK(has_code(late.error(), HaErrc::outcome_unknown));
    // A read that goes unanswered changed nothing: it is reported as unavailable.
    auto read = c->range("stopped", "", 300ms);
    REQUIRE_FALSE(read.has_value());
    CHECK(read.error().is(Errc::unavailable));
    auto grant = c->lease_grant(5s, 300ms);
    REQUIRE_FALSE(grant.has_value());
    CHECK(has_code(grant.error(), HaErrc::outcome_unknown));

    cluster.resume(0);
    CHECK(eventually([&] { return put(*c, "stopped", "4").has_value(); }, 10s));
}

TEST_CASE("with quorum lost a txn fails, and succeeds again once the members are back",
          "[ha][integration]") {
    EtcdCluster cluster(cluster_of(3));
    auto c = connect(cluster, cluster.endpoint(0));
    REQUIRE_OK(put(*c, "quorum", "1"));
    cluster.kill(1);
    cluster.kill(2);

    TxnRequest txn;
    txn.success = {Op::put("quorum", "2")};
    auto lost = c->txn(txn, 1500ms);
    REQUIRE_FALSE(lost.has_value());
    INFO("error: " << lost.error().message());
    CHECK((has_code(lost.error(), HaErrc::outcome_unknown) || lost.error().is(Errc::unavailable)));
    auto read = c->range("quorum", "", 1500ms);
    REQUIRE_FALSE(read.has_value());
    CHECK(read.error().is(Errc::unavailable));

    cluster.restart(1);
    cluster.restart(2);
    REQUIRE(cluster.wait_for_leader(15s));
    CHECK(eventually([&] { return c->txn(txn, 2s).has_value(); }, 15s));
    auto r = c->range("quorum", "", 2s);
    REQUIRE_OK(r);
    CHECK(r->kvs.at(0).value == "2");
}

TEST_CASE("members reports the leader, terms, and a member that cannot be reached",
          "[ha][integration]") {
    EtcdCluster cluster(cluster_of(3));
    auto c = connect(cluster);
    cluster.kill(2);
    REQUIRE(cluster.wait_for_leader(10s));
    std::vector<signet::ha::MemberStatus> st;
    // The leader may have been m2: wait (bounded) until the survivors agree on a new one.
    CHECK(eventually(
        [&] {
        st = c->members(1s);
        return std::count_if(st.begin(), st.end(),
                             [](const auto& m) { return m.reachable && m.is_leader; }) == 1;
        },
        10s));
    REQUIRE(st.size() == 3);
    for (std::size_t i = 0; i < 2; ++i) {
        CHECK(st[i].name == "m" + std::to_string(i));
        CHECK(st[i].reachable);
        CHECK(st[i].raft_term > 0);
        CHECK(st[i].error.empty());
        CHECK(st[i].client_url ==
              "http://127.0.0.1:" + std::to_string(cluster.member(i).client_port));
    }
    CHECK(st[2].name == "m2");
    CHECK_FALSE(st[2].reachable);
    CHECK_FALSE(st[2].is_leader);
    CHECK_FALSE(st[2].error.empty());
}

TEST_CASE("with mutual TLS calls succeed with the client certificate and fail without it",
          "[ha][integration]") {
    EtcdCluster cluster(cluster_of(1, true));
    REQUIRE(cluster.endpoints().find("https://") != std::string::npos);
    auto c = connect(cluster);
    REQUIRE_OK(put(*c, "tls", "yes"));
    auto r = c->range("tls", "", 2s);
    REQUIRE_OK(r);
    CHECK(r->kvs.at(0).value == "yes");
    WatchLog log;
    auto watch = c->watch("tls", "", r->revision, log.handlers());
    REQUIRE_OK(watch);
    CHECK(log.wait_events(1, 10s));
    CHECK(c->members(2s).at(0).reachable);

    SECTION("without a client certificate the member refuses the connection") {
        auto anon = connect(cluster, cluster.endpoints(), {}, ClientTls{false, true});
        auto read = anon->range("tls", "", 2s);
        REQUIRE_FALSE(read.has_value());
        INFO("error: " << read.error().message());
        CHECK(read.error().is(Errc::unavailable));
        TxnRequest txn;
        txn.success = {Op::put("tls", "anon")};
        auto write = anon->txn(txn, 2s);
        REQUIRE_FALSE(write.has_value());
        CHECK((write.error().is(Errc::unavailable) ||
               has_code(write.error(), HaErrc::outcome_unknown)));
    }
    SECTION("a member whose certificate the CA did not sign is not trusted") {
        auto wrong = connect(cluster, cluster.endpoints(), {}, ClientTls{true, false});
        auto read = wrong->range("tls", "", 2s);
        REQUIRE_FALSE(read.has_value());
        INFO("error: " << read.error().message());
        CHECK(read.error().is(Errc::unavailable));
    }
    auto still = c->range("tls", "", 2s);
    REQUIRE_OK(still);
    CHECK(still->kvs.at(0).value == "yes");
}
