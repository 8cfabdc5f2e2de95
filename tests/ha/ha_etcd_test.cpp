// EtcdCoordinator against a real etcd member (Debian's /usr/bin/etcd) on loopback: the wire
// format (base64, int64 strings, omitted defaults), transactions, leases, watches and endpoint
// parsing. Every wait is a bounded poll; assertions are on outcomes, never on durations.
#include "signet/ha/etcd_coordinator.hpp"

#include <atomic>
#include <thread>

#include "etcd_test_helpers.hpp"

// The helpers' namespace brings chrono literals and the ha names used below.
using namespace signet::test::etcd;

TEST_CASE("a txn guarded by the key's mod revision commits once, then takes the failure branch",
          "[ha][integration]") {
    EtcdCluster cluster(cluster_of(1));
    auto c = connect(cluster);
    const std::string key = "counter/a";

    auto missing = c->range(key, "", 2s);
    REQUIRE_OK(missing);
    CHECK(missing->kvs.empty());
    CHECK(missing->revision > 0);

    TxnRequest create;
    create.compare = {Compare::absent(key)};
    create.success = {Op::put(key, "1")};
    create.failure = {Op::get(key)};
    auto created = c->txn(create, 2s);
    REQUIRE_OK(created);
    CHECK(created->succeeded);
    REQUIRE(created->results.size() == 1);  // one (empty) entry for the put

    auto read = c->range(key, "", 2s);
    REQUIRE_OK(read);
    REQUIRE(read->kvs.size() == 1);
    const auto& kv = read->kvs[0];
    CHECK(kv.key == key);
    CHECK(kv.value == "1");
    CHECK(kv.mod_revision == created->revision);
    CHECK(kv.create_revision == created->revision);
    CHECK(kv.version == 1);
    CHECK(kv.lease == 0);

    TxnRequest cas;
    cas.compare = {Compare::mod_revision_equals(key, kv.mod_revision)};
    cas.success = {Op::put(key, "2"), Op::get(key)};
    cas.failure = {Op::get(key)};
    auto won = c->txn(cas, 2s);
    REQUIRE_OK(won);
    CHECK(won->succeeded);
    REQUIRE(won->results.size() == 2);
    CHECK(won->results[0].empty());
    REQUIRE(won->results[1].size() == 1);
    CHECK(won->results[1][0].value == "2");
    CHECK(won->revision > kv.mod_revision);

    // The same guard again is stale: etcd omits "succeeded" and runs the failure branch.
    auto lost = c->txn(cas, 2s);
    REQUIRE_OK(lost);
    CHECK_FALSE(lost->succeeded);
    REQUIRE(lost->results.size() == 1);
    REQUIRE(lost->results[0].size() == 1);
    CHECK(lost->results[0][0].value == "2");
    CHECK(lost->results[0][0].mod_revision == won->revision);
    CHECK(lost->results[0][0].version == 2);

    SECTION("a value comparison and a prefix range see the same store") {
        TxnRequest by_value;
        by_value.compare = {Compare::value_equals(key, "2")};
        by_value.success = {Op::put("counter/b", "x"), Op::del("counter/a")};
        auto r = c->txn(by_value, 2s);
        REQUIRE_OK(r);
        CHECK(r->succeeded);
        auto all = c->range("counter/", signet::ha::prefix_end("counter/"), 2s);
        REQUIRE_OK(all);
        REQUIRE(all->kvs.size() == 1);
        CHECK(all->kvs[0].key == "counter/b");
    }
    SECTION("keys and values are bytes, not text") {
        const std::string bin_key("k\0\xff\x01", 4);
        const std::string bin_value("\0\x80\"\\\n", 5);
        REQUIRE_OK(put(*c, bin_key, bin_value));
        auto r = c->range(bin_key, "", 2s);
        REQUIRE_OK(r);
        REQUIRE(r->kvs.size() == 1);
        CHECK(r->kvs[0].key == bin_key);
        CHECK(r->kvs[0].value == bin_value);
    }
}

TEST_CASE("compare-and-swap increments from several threads at once lose no update",
          "[ha][integration]") {
    EtcdCluster cluster(cluster_of(1));
    auto c = connect(cluster);
    const std::string key = "shared";
    REQUIRE_OK(put(*c, key, "0"));
    constexpr int kThreads = 4;
    constexpr int kEach = 15;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&] {
            for (int done = 0, tries = 0; done < kEach && tries < 500; ++tries) {
                auto cur = c->range(key, "", 2s);
                if (!cur || cur->kvs.size() != 1) {
                    ++failures;
                    return;
                }
                TxnRequest inc;
                inc.compare = {Compare::mod_revision_equals(key, cur->kvs[0].mod_revision)};
                inc.success = {Op::put(key, std::to_string(std::stoi(cur->kvs[0].value) + 1))};
                auto r = c->txn(inc, 2s);
                if (!r) {
                    ++failures;
                    return;
                }
                if (r->succeeded) ++done;
            }
        });
    }
    for (auto& t : threads) t.join();
    CHECK(failures.load() == 0);
    auto r = c->range(key, "", 2s);
    REQUIRE_OK(r);
    REQUIRE(r->kvs.size() == 1);
    CHECK(r->kvs[0].value == std::to_string(kThreads * kEach));
}

TEST_CASE("a key put with a lease disappears when the lease expires", "[ha][integration]") {
    EtcdCluster cluster(cluster_of(1));  // election 500 ms: etcd's minimum TTL is 1 s
    auto c = connect(cluster);
    auto lease = c->lease_grant(1000ms, 2s);
    REQUIRE_OK(lease);
    CHECK(lease->id != 0);
    CHECK(lease->ttl >= 1000ms);
    REQUIRE_OK(put(*c, "leased", "v", lease->id));
    auto r = c->range("leased", "", 2s);
    REQUIRE_OK(r);
    REQUIRE(r->kvs.size() == 1);
    CHECK(r->kvs[0].lease == lease->id);

    CHECK(eventually([&] { return !key_exists(*c, "leased"); }, 10s));
    SECTION("a keepalive after expiry reports lease_not_found") {
        auto k = c->lease_keepalive(lease->id, 2s);
        REQUIRE_FALSE(k.has_value());
        CHECK(has_code(k.error(), HaErrc::lease_not_found));
    }
    SECTION("a put attached to the expired lease is refused as lease_not_found") {
        auto p = put(*c, "late", "v", lease->id);
        REQUIRE_FALSE(p.has_value());
        CHECK(has_code(p.error(), HaErrc::lease_not_found));
        CHECK_FALSE(key_exists(*c, "late"));
    }
}

TEST_CASE("keepalives keep a leased key alive past its TTL", "[ha][integration]") {
    EtcdCluster cluster(cluster_of(1));
    auto c = connect(cluster);
    auto lease = c->lease_grant(2000ms, 2s);
    REQUIRE_OK(lease);
    REQUIRE_OK(put(*c, "alive", "v", lease->id));
    // 3 s of renewals every 200 ms against a 2 s TTL.
    for (int i = 0; i < 15; ++i) {
        auto ttl = c->lease_keepalive(lease->id, 1s);
        REQUIRE_OK(ttl);
        CHECK(*ttl == lease->ttl);
        std::this_thread::sleep_for(200ms);
    }
    CHECK(key_exists(*c, "alive"));
    // Without renewals the same lease does run out: the renewals were what kept it.
    CHECK(eventually([&] { return !key_exists(*c, "alive"); }, 10s));
}

TEST_CASE("revoking a lease deletes its keys at once and a second revoke is lease_not_found",
          "[ha][integration]") {
    EtcdCluster cluster(cluster_of(1));
    auto c = connect(cluster);
    auto lease = c->lease_grant(30s, 2s);
    REQUIRE_OK(lease);
    CHECK(lease->ttl == 30s);
    REQUIRE_OK(put(*c, "revoked", "v", lease->id));
    REQUIRE_OK(c->lease_revoke(lease->id, 2s));
    auto r = c->range("revoked", "", 2s);
    REQUIRE_OK(r);
    CHECK(r->kvs.empty());

    auto again = c->lease_revoke(lease->id, 2s);
    REQUIRE_FALSE(again.has_value());
    CHECK(has_code(again.error(), HaErrc::lease_not_found));
    auto keepalive = c->lease_keepalive(lease->id, 2s);
    REQUIRE_FALSE(keepalive.has_value());
    CHECK(has_code(keepalive.error(), HaErrc::lease_not_found));
    auto unknown = c->lease_keepalive(12345, 2s);
    REQUIRE_FALSE(unknown.has_value());
    CHECK(has_code(unknown.error(), HaErrc::lease_not_found));
}

TEST_CASE("a watch delivers puts and deletes in revision order, and none after it is destroyed",
          "[ha][integration]") {
    EtcdCluster cluster(cluster_of(1));
    auto c = connect(cluster);
    auto first = put(*c, "w/a", "1");
    REQUIRE_OK(first);
    const auto start = first->revision;

    WatchLog log;
    auto watch = c->watch("w/", signet::ha::prefix_end("w/"), start, log.handlers());
    REQUIRE_OK(watch);
    REQUIRE_OK(put(*c, "w/b", "2"));
    TxnRequest del;
    del.success = {Op::del("w/a")};
    REQUIRE_OK(c->txn(del, 2s));
    TxnRequest two;
    two.success = {Op::put("w/c", "3"), Op::put("w/d", "4")};
    auto both = c->txn(two, 2s);
    REQUIRE_OK(both);
    REQUIRE_OK(put(*c, "other", "not watched"));

    REQUIRE(log.wait_events(5, 10s));
    const auto events = log.events();
    REQUIRE(events.size() == 5);
    using Type = signet::ha::WatchEvent::Type;
    CHECK((events[0].type == Type::put && events[0].kv.key == "w/a" && events[0].kv.value == "1"));
    CHECK(events[0].kv.mod_revision == start);
    CHECK((events[1].type == Type::put && events[1].kv.key == "w/b"));
    CHECK((events[2].type == Type::del && events[2].kv.key == "w/a"));
    CHECK((events[3].type == Type::put && events[3].kv.key == "w/c"));
    CHECK((events[4].type == Type::put && events[4].kv.key == "w/d"));
    CHECK(events[3].kv.mod_revision == both->revision);
    CHECK(events[4].kv.mod_revision == both->revision);
    // One call per revision: the two puts of one txn arrive together.
    const auto calls = log.calls();
    REQUIRE(calls.size() == 4);
    CHECK(std::is_sorted(calls.begin(), calls.end()));
    CHECK(calls.back() == both->revision);
    CHECK_FALSE(log.error().has_value());

    watch->reset();
    auto later = put(*c, "w/e", "5");
    REQUIRE_OK(later);
    // A second watch from that revision sees the put, so it was published to watchers; the
    // destroyed one still saw nothing more.
    WatchLog second;
    auto watch2 = c->watch("w/", signet::ha::prefix_end("w/"), later->revision, second.handlers());
    REQUIRE_OK(watch2);
    REQUIRE(second.wait_events(1, 10s));
    CHECK(second.events()[0].kv.key == "w/e");
    CHECK(log.events().size() == 5);
    CHECK_FALSE(log.error().has_value());
}

TEST_CASE("a watch from a compacted revision ends with compacted", "[ha][integration]") {
    EtcdCluster cluster(cluster_of(1));
    auto c = connect(cluster);
    std::int64_t last = 0;
    for (int i = 0; i < 5; ++i) {
        auto r = put(*c, "compact/k", std::to_string(i));
        REQUIRE_OK(r);
        last = r->revision;
    }
    const auto answer = cluster.post_json(0, "/v3/kv/compaction",
                                          "{\"revision\":\"" + std::to_string(last) + "\"}");
    INFO("compaction answer: " << answer);
    REQUIRE(answer.find("error") == std::string::npos);

    WatchLog log;
    auto watch = c->watch("compact/", signet::ha::prefix_end("compact/"), 2, log.handlers());
    if (watch) {
        REQUIRE(log.wait_error(10s));
        const auto e = log.error();
        INFO("error: " << e->message());
        CHECK(has_code(*e, HaErrc::compacted));
        CHECK(log.events().empty());
    } else {
        CHECK(has_code(watch.error(), HaErrc::compacted));
    }
}

TEST_CASE("parse_endpoints accepts the documented forms and names the bad entry",
          "[ha][integration]") {
    bool tls = true;
    auto two =
        signet::ha::parse_endpoints("m0=http://127.0.0.1:2379,m1=http://127.0.0.1:2380", &tls);
    REQUIRE_OK(two);
    CHECK_FALSE(tls);
    REQUIRE(two->size() == 2);
    CHECK((*two)[0].name == "m0");
    CHECK((*two)[0].host == "127.0.0.1");
    CHECK((*two)[0].port == 2379);
    CHECK((*two)[1].name == "m1");
    CHECK((*two)[1].port == 2380);

    auto unnamed = signet::ha::parse_endpoints("https://10.0.0.2:2379, https://db.example:2", &tls);
    REQUIRE_OK(unnamed);
    CHECK(tls);
    REQUIRE(unnamed->size() == 2);
    CHECK((*unnamed)[0].name == "10.0.0.2:2379");
    CHECK((*unnamed)[1].host == "db.example");

    auto v6 = signet::ha::parse_endpoints(" local = http://[::1]:23790/ ");
    REQUIRE_OK(v6);
    CHECK(v6->at(0).name == "local");
    CHECK(v6->at(0).host == "::1");
    CHECK(v6->at(0).port == 23790);

    auto default_port = signet::ha::parse_endpoints("http://localhost");
    REQUIRE_OK(default_port);
    CHECK(default_port->at(0).port == 2379);

    const std::vector<std::pair<std::string, std::string>> bad = {
        {"", "empty"},
        {"127.0.0.1:2379", "missing scheme"},
        {"m0=ftp://127.0.0.1:2379", "unsupported scheme"},
        {"http://:2379", "missing host"},
        {"http://127.0.0.1:0", "out of range"},
        {"http://127.0.0.1:70000", "out of range"},
        {"http://127.0.0.1:port", "bad port"},
        {"http://127.0.0.1:", "empty port"},
        {"http://127.0.0.1:2379/v3", "path"},
        {"http://user@127.0.0.1:2379", "user information"},
        {"a=http://h:1,a=http://h:2", "duplicate name"},
        {"http://h:1,https://h:2", "mixes http and https"},
        {"http://h:1,,http://h:2", "empty entry"},
        {"=http://h:1", "bad member name"},
        {"http://[::1:2379", "unterminated"},
    };
    for (const auto& [text, why] : bad) {
        INFO("input: '" << text << "'");
        auto r = signet::ha::parse_endpoints(text);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().is(Errc::invalid_argument));
        CHECK_THAT(r.error().message(), Catch::Contains(why));
    }
    auto second = signet::ha::parse_endpoints("http://h:1,http://h:x");
    REQUIRE_FALSE(second.has_value());
    CHECK_THAT(second.error().message(), Catch::Contains("entry 2 'http://h:x'"));
}
