// The fake coordinator itself: etcd's MVCC, lease and watch semantics that the role machine and
// allocator tests rely on, and per-coordinator faults on a shared store.
#include "signet_test/fake_coordinator.hpp"

#include <catch2/catch.hpp>
#include <vector>

#include "signet_test/result_matchers.hpp"

using namespace std::chrono_literals;
using signet::ha::Compare;
using signet::ha::HaErrc;
using signet::ha::Op;
using signet::ha::TxnRequest;
using signet::ha::WatchEvent;
using signet::test::FakeClock;
using signet::test::FakeCoordinator;
using signet::test::FakeStore;
using signet::test::Fault;

namespace {

struct Fixture {
    std::shared_ptr<FakeClock> clock = std::make_shared<FakeClock>();
    std::shared_ptr<FakeStore> store = std::make_shared<FakeStore>(clock);
    FakeCoordinator a{store};
    FakeCoordinator b{store};
};

TxnRequest puts(std::vector<std::pair<std::string, std::string>> kvs, std::int64_t lease = 0) {
    TxnRequest t;
    for (auto& [k, v] : kvs) t.success.push_back(Op::put(k, v, lease));
    return t;
}

// Records every watch delivery.
struct Recorder {
    std::vector<std::pair<std::int64_t, std::vector<WatchEvent>>> batches;
    std::vector<signet::Error> errors;
    signet::ha::WatchHandlers handlers() {
        return {[this](const std::vector<WatchEvent>& e, std::int64_t rev) {
            batches.emplace_back(rev, e);
                },
                [this](const signet::Error& e) { errors.push_back(e); }};
    }
};

}  // namespace

TEST_CASE("a write txn advances the store revision once however many puts it carries",
          "[ha][unit]") {
    Fixture f;
    CHECK(f.store->revision() == 1);
    auto r = f.a.txn(puts({{"/x", "1"}, {"/y", "2"}}), 1s);
    REQUIRE_OK(r);
    CHECK(r->succeeded);
    CHECK(r->revision == 2);
    CHECK(r->results.size() == 2);
    r = f.a.txn(puts({{"/x", "3"}}), 1s);
    REQUIRE_OK(r);
    CHECK(r->revision == 3);
    auto x = f.a.range("/x", {}, 1s);
    REQUIRE_OK(x);
    REQUIRE(x->kvs.size() == 1);
    CHECK(x->kvs[0].value == "3");
    CHECK(x->kvs[0].create_revision == 2);
    CHECK(x->kvs[0].mod_revision == 3);
    CHECK(x->kvs[0].version == 2);

    // Reads, a failed compare with only reads, and a delete of nothing change nothing.
    TxnRequest t;
    t.compare.push_back(Compare::absent("/x"));
    t.success.push_back(Op::put("/x", "never"));
    t.failure.push_back(Op::get("/x"));
    t.failure.push_back(Op::del("/nothing"));
    r = f.b.txn(t, 1s);
    REQUIRE_OK(r);
    CHECK_FALSE(r->succeeded);
    CHECK(r->revision == 3);
    REQUIRE(r->results.size() == 2);
    REQUIRE(r->results[0].size() == 1);
    CHECK(r->results[0][0].value == "3");
    CHECK(r->results[1].empty());
    CHECK(f.store->revision() == 3);
}

TEST_CASE("compares on a missing key see zero revisions and fail on any value", "[ha][unit]") {
    Fixture f;
    TxnRequest by_value;  // etcd: a value compare on a missing key always fails
    by_value.compare = {Compare::value_equals("/m", "")};
    by_value.success.push_back(Op::put("/m", "v"));
    auto miss = f.a.txn(by_value, 1s);
    REQUIRE_OK(miss);
    CHECK_FALSE(miss->succeeded);
    TxnRequest t;
    t.compare = {Compare::absent("/m"), Compare::mod_revision_equals("/m", 0)};
    t.success.push_back(Op::put("/m", "v"));
    auto r = f.a.txn(t, 1s);
    REQUIRE_OK(r);
    CHECK(r->succeeded);
    r = f.a.txn(t, 1s);  // now present
    REQUIRE_OK(r);
    CHECK_FALSE(r->succeeded);
    REQUIRE_OK(f.a.txn(
        [] {
        TxnRequest d;
        d.success.push_back(Op::del("/m"));
        return d;
        }(),
        1s));
    CHECK(f.store->dump("/").empty());
}

TEST_CASE("an expired lease takes its keys in one revision and watchers see the deletes",
          "[ha][unit]") {
    Fixture f;
    Recorder rec;
    auto w = f.b.watch("/l/", signet::ha::prefix_end("/l/"), 0, rec.handlers());
    REQUIRE_OK(w);
    auto lease = f.a.lease_grant(1000ms, 1s);
    REQUIRE_OK(lease);
    REQUIRE_OK(f.a.txn(puts({{"/l/a", "1"}, {"/l/b", "2"}}, lease->id), 1s));
    f.clock->advance(999ms);
    f.store->expire_leases();
    CHECK(f.store->dump("/l/").size() == 2);
    f.clock->advance(1ms);
    f.store->expire_leases();
    CHECK(f.store->dump("/l/").empty());
    REQUIRE(rec.batches.size() == 2);
    CHECK(rec.batches[1].first == 3);
    REQUIRE(rec.batches[1].second.size() == 2);
    CHECK(rec.batches[1].second[0].type == WatchEvent::Type::del);
    CHECK(f.store->revision() == 3);
    auto ka = f.a.lease_keepalive(lease->id, 1s);
    REQUIRE_FALSE(ka.has_value());
    CHECK(ka.error().code == make_error_code(HaErrc::lease_not_found));
    auto put = f.a.txn(puts({{"/l/c", "3"}}, lease->id), 1s);
    REQUIRE_FALSE(put.has_value());
    CHECK(put.error().code == make_error_code(HaErrc::lease_not_found));
}

TEST_CASE("a keep-alive renews a lease from now, and one past its TTL is revoked instead",
          "[ha][unit]") {
    Fixture f;
    auto lease = f.a.lease_grant(1000ms, 1s);
    REQUIRE_OK(lease);
    f.clock->advance(900ms);
    auto ka = f.a.lease_keepalive(lease->id, 1s);
    REQUIRE_OK(ka);
    CHECK(*ka == 1000ms);
    f.clock->advance(900ms);
    f.store->expire_leases();
    REQUIRE_OK(f.a.lease_keepalive(lease->id, 1s));
    f.clock->advance(1000ms);  // expired by the clock, not yet collected
    ka = f.a.lease_keepalive(lease->id, 1s);
    REQUIRE_FALSE(ka.has_value());
    CHECK(ka.error().code == make_error_code(HaErrc::lease_not_found));
    CHECK(f.a.lease_revoke(lease->id, 1s).error().code == make_error_code(HaErrc::lease_not_found));
}

TEST_CASE("a watch replays kept history in revision order and reports compaction beyond it",
          "[ha][unit]") {
    Fixture f;
    f.store->set_history_limit(2);
    for (int i = 0; i < 4; ++i) REQUIRE_OK(f.a.txn(puts({{"/w", std::to_string(i)}}), 1s));
    CHECK(f.store->revision() == 5);
    Recorder replay;
    auto w = f.b.watch("/w", {}, 4, replay.handlers());
    REQUIRE_OK(w);
    REQUIRE(replay.batches.size() == 2);
    CHECK(replay.batches[0].first == 4);
    CHECK(replay.batches[1].first == 5);
    CHECK(replay.batches[1].second[0].kv.value == "3");
    REQUIRE_OK(f.a.txn(puts({{"/w", "live"}}), 1s));
    REQUIRE(replay.batches.size() == 3);
    CHECK(replay.batches[2].first == 6);

    Recorder old;
    auto w2 = f.b.watch("/w", {}, 2, old.handlers());
    REQUIRE_OK(w2);
    REQUIRE(old.errors.size() == 1);
    CHECK(old.errors[0].code == make_error_code(HaErrc::compacted));

    w->reset();  // cancelled: no more deliveries
    REQUIRE_OK(f.a.txn(puts({{"/w", "after"}}), 1s));
    CHECK(replay.batches.size() == 3);
}

TEST_CASE(
    "faults apply to one coordinator: lost replies apply, lost requests and partitions do "
    "not",
    "[ha][unit]") {
    Fixture f;
    SECTION("lost reply") {
        f.a.inject(Fault::lost_reply, 1, true);
        REQUIRE_OK(f.a.range("/k", {}, 1s));  // txn_only: reads are not affected
        auto r = f.a.txn(puts({{"/k", "1"}}), 1s);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == make_error_code(HaErrc::outcome_unknown));
        CHECK(f.store->dump("/k").size() == 1);
    }
    SECTION("lost request") {
        f.a.inject(Fault::lost_request);
        auto r = f.a.txn(puts({{"/k", "1"}}), 1s);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == make_error_code(HaErrc::outcome_unknown));
        CHECK(f.store->dump("/k").empty());
    }
    SECTION("partition") {
        Recorder rec;
        auto w = f.a.watch("/k", {}, 0, rec.handlers());
        REQUIRE_OK(w);
        f.a.partition(true);
        REQUIRE(rec.errors.size() == 1);
        CHECK(rec.errors[0].code == make_error_code(signet::Errc::unavailable));
        auto r = f.a.txn(puts({{"/k", "1"}}), 1s);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().code == make_error_code(signet::Errc::unavailable));
        CHECK_FALSE(f.a.members(1s).at(0).reachable);
        CHECK(f.b.members(1s).at(0).reachable);
        REQUIRE_OK(f.b.txn(puts({{"/k", "2"}}), 1s));
        CHECK(rec.batches.empty());
    }
    CHECK(f.a.txns() == 1);  // faulted txns are counted too
}
