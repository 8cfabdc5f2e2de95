// A pair of real appliances on real etcd members (loopback): the nonce guarantees of DESIGN §3
// across failover, fencing, dual-active allocation and etcd member loss. Clients record every
// invoke and completion; the history checkers of the standalone suite judge G1 and G3 over the
// union of what both appliances returned.
#include <signal.h>

#include <catch2/catch.hpp>
#include <thread>

#include "signet_test/daemon_load.hpp"
#include "signet_test/pair_harness.hpp"

using namespace std::chrono_literals;
using signet::test::ApiClient;
using signet::test::ApiReply;
using signet::test::LoadOptions;
using signet::test::NonceLoad;
using signet::test::PairOptions;
using signet::test::SignOp;
using signet::test::TestPair;

namespace {

std::string digest(const std::string& s) { return signet::test::sha256_hex(s); }

// G1 and G3 over a history, with the violations in the failure message.
void check_unique_and_ordered(const std::vector<SignOp>& ops, bool realtime) {
    const auto dups = signet::test::duplicate_nonces(ops);
    INFO(signet::test::joined(dups));
    CHECK(dups.empty());
    if (realtime) {
        const auto order = signet::test::realtime_order_violations(ops);
        INFO(signet::test::joined(order));
        CHECK(order.empty());
    }
}

std::size_t acked_on(const std::vector<SignOp>& ops, int target) {
    return static_cast<std::size_t>(std::count_if(
        ops.begin(), ops.end(), [&](const SignOp& o) { return o.acked && o.target == target; }));
}

signet::test::json::object envelope_policy() { return {{"nonces", "envelope"}}; }

}  // namespace

TEST_CASE("a hot standby refuses to sign, names the active, and is not ready",
          "[ha][integration]") {
    TestPair pair;
    ApiClient a = pair.api(0);
    const auto key = signet::test::create_key(a, "ecdsa-p256", "on-a");
    const std::string id = signet::test::str(key, "id");
    const auto signer = pair.create_signer();
    ApiClient sa = pair.api(0, signer.token);
    signet::test::sign(sa, id, {{"digest", digest("x")}});

    ApiClient sb = pair.api(1, signer.token);
    const ApiReply r = sb.post("/v1/keys/" + id + "/sign", {{"digest", digest("x")}});
    INFO(r.describe());
    signet::test::check_api_error(r, 503, "not_active");
    CHECK(r.error_message().find(pair.appliance(0).url()) != std::string::npos);
    CHECK(r.headers.count("Retry-After") == 1);

    ApiClient anon_b(pair.appliance(1).client_options(5s), "");
    CHECK(anon_b.get("/v1/health/ready").status == 503);
    ApiClient anon_a(pair.appliance(0).client_options(5s), "");
    CHECK(anon_a.get("/v1/health/ready").status == 200);

    const ApiReply st = pair.ha_status(1);
    REQUIRE(st.status == 200);
    CHECK(signet::test::str(st.object(), "role") == "standby");
    CHECK(signet::test::str(st.object().at("leader").as_object(), "name") == "a");
}

TEST_CASE("kill -9 of the active under nonce load: the standby takes over and no nonce repeats",
          "[ha][integration][failover]") {
    TestPair pair;
    pair.pair_hsms();
    const auto key = pair.create_replicated_key(0, "ecdsa-p256", envelope_policy());
    const std::string id = signet::test::str(key, "id");
    const std::string pem = signet::test::str(key.at("public_key").as_object(), "pem");
    const auto signer = pair.create_signer();
    const auto before = pair.ha_status(0);
    const auto term_a = signet::test::u64(before.object().at("leader").as_object(), "term");

    LoadOptions lo;
    lo.threads = 4;
    lo.per_thread = 400;
    lo.max_duration = 60s;
    lo.failover = {pair.appliance(1).client_options(5s)};
    NonceLoad load(pair.appliance(0).client_options(5s), signer.token, id, lo);
    load.start();
    REQUIRE(load.wait_acked(100, 30s));
    pair.appliance(0).kill9();
    REQUIRE(pair.wait_role(1, "active", 20s));
    load.join();
    const auto& ops = load.ops();
    INFO(pair.logs().substr(0, 4000));
    CHECK(acked_on(ops, 0) >= 100);
    CHECK(acked_on(ops, 1) > 0);
    check_unique_and_ordered(ops, true);
    const auto env = signet::test::envelope_violations(ops, id, signet::test::spki_of_pem(pem));
    INFO(signet::test::joined(env));
    CHECK(env.empty());
    const auto after = pair.ha_status(1);
    CHECK(signet::test::u64(after.object().at("leader").as_object(), "term") > term_a);
}

TEST_CASE("a SIGSTOPped active that wakes after losing its lease never signs as active again",
          "[ha][integration][fencing]") {
    TestPair pair;
    pair.pair_hsms();
    const auto key = pair.create_replicated_key(0, "ecdsa-p256", envelope_policy());
    const std::string id = signet::test::str(key, "id");
    const auto signer = pair.create_signer();
    ApiClient sa = pair.api(0, signer.token);
    const auto first = signet::test::sign(sa, id, {{"digest", digest("1")}, {"nonce", true}});

    pair.appliance(0).send_signal(SIGSTOP);
    const bool took_over = pair.wait_role(1, "active", 20s);
    ApiClient sb = pair.api(1, signer.token);
    std::uint64_t b_nonce = 0;
    if (took_over) {
        b_nonce = signet::test::u64(
            signet::test::sign(sb, id, {{"digest", digest("2")}, {"nonce", true}}), "nonce");
    }
    pair.appliance(0).send_signal(SIGCONT);
    REQUIRE(took_over);
    CHECK(b_nonce > signet::test::u64(first, "nonce"));

    // Right after waking, and for a while after, a refuses: its lease is provably gone.
    for (int i = 0; i < 20; ++i) {
        const ApiReply r = sa.post("/v1/keys/" + id + "/sign",
                                   {{"digest", digest("w" + std::to_string(i))}, {"nonce", true}});
        INFO("attempt " << i << ": " << r.describe());
        CHECK(r.status == 503);
        std::this_thread::sleep_for(50ms);
    }
    CHECK(pair.wait_role(0, "standby", 10s));
    const auto later = signet::test::sign(sb, id, {{"digest", digest("3")}, {"nonce", true}});
    CHECK(signet::test::u64(later, "nonce") > b_nonce);
}

TEST_CASE("dual-active appliances signing one key at once never share a nonce",
          "[ha][integration][dual]") {
    const std::string allocation = GENERATE(std::string("fast"), std::string("strict"));
    INFO("allocation " << allocation);
    PairOptions po;
    po.mode = "dual-active";
    po.allocation = allocation;
    TestPair pair(po);
    pair.pair_hsms();
    const auto key = pair.create_replicated_key(0, "ecdsa-p256", envelope_policy());
    const std::string id = signet::test::str(key, "id");
    const auto signer = pair.create_signer();

    LoadOptions lo;
    lo.threads = 3;
    lo.per_thread = 60;
    lo.salt = "a";
    NonceLoad on_a(pair.appliance(0).client_options(10s), signer.token, id, lo);
    lo.salt = "b";
    NonceLoad on_b(pair.appliance(1).client_options(10s), signer.token, id, lo);
    on_a.start();
    on_b.start();
    on_a.join();
    on_b.join();
    std::vector<SignOp> all = on_a.ops();
    for (SignOp o : on_b.ops()) {
        o.thread += 100;  // distinct thread ids in the union
        o.target = 1;
        all.push_back(o);
    }
    // A request may lose every compare-and-swap round to the peer and get a retryable 503
    // (conflict_retry); nothing else may fail.
    std::size_t retryable = 0;
    for (const auto& o : all) {
        if (o.acked) continue;
        INFO("HTTP " << o.status << " " << o.error_code);
        CHECK((o.status == 503 && o.error_code == "conflict_retry"));
        ++retryable;
    }
    CHECK(signet::test::acknowledged(all).size() + retryable == 360);
    CHECK(retryable <= 18);
    // Every appliance's own sequence increases; strict mode orders the union in real time.
    const auto per_thread = signet::test::per_thread_order_violations(all);
    INFO(signet::test::joined(per_thread));
    CHECK(per_thread.empty());
    check_unique_and_ordered(all, allocation == "strict");
}

TEST_CASE("the pair signs while etcd has quorum, stops without it, and resumes without reuse",
          "[ha][integration][quorum]") {
    TestPair pair;
    ApiClient admin = pair.api(0);
    const auto key = signet::test::create_key(admin, "ecdsa-p256", "q", envelope_policy());
    const std::string id = signet::test::str(key, "id");
    const auto signer = pair.create_signer();
    ApiClient sa = pair.api(0, signer.token);
    std::vector<std::uint64_t> nonces;
    auto sign_once = [&](const std::string& tag) {
        return sa.post("/v1/keys/" + id + "/sign", {{"digest", digest(tag)}, {"nonce", true}});
    };
    auto take = [&](const ApiReply& r) {
        nonces.push_back(signet::test::u64(r.object(), "nonce"));
    };

    take(sign_once("before"));
    SECTION("losing the witness keeps the pair signing") {
        pair.etcd().kill(2);
        for (int i = 0; i < 5; ++i) {
            const ApiReply r = sign_once("no-witness-" + std::to_string(i));
            INFO(r.describe());
            REQUIRE(r.status == 200);
            take(r);
        }
    }
    SECTION("killing the etcd leader costs at most a re-election") {
        const int leader = pair.etcd().leader();
        REQUIRE(leader >= 0);
        pair.etcd().kill(static_cast<std::size_t>(leader));
        REQUIRE(pair.etcd().wait_for_leader(10s));
        // etcd extends leases across a re-election, and a reaches the new leader through its
        // other endpoints even when its own member was the one killed: a stays the signer.
        REQUIRE(pair.wait_signing(0, 15s));
        const ApiReply r = sign_once("re-elected");
        INFO(r.describe());
        REQUIRE(r.status == 200);
        take(r);
    }
    SECTION("losing two of three members stops signing until one returns") {
        pair.etcd().kill(2);
        pair.etcd().kill(1);
        // The active's lease cannot be renewed: within a bounded time it refuses, with a reason.
        bool refused = false;
        for (int i = 0; i < 100 && !refused; ++i) {
            const ApiReply r = sign_once("lost-" + std::to_string(i));
            if (r.status == 200) {
                take(r);
            } else {
                INFO(r.describe());
                CHECK(r.status == 503);
                refused = true;
            }
            std::this_thread::sleep_for(50ms);
        }
        REQUIRE(refused);
        pair.etcd().restart(1);
        REQUIRE(pair.etcd().wait_for_leader(15s));
        REQUIRE(pair.wait_signing(0, 20s));
        const ApiReply r = sign_once("after");
        INFO(r.describe());
        REQUIRE(r.status == 200);
        take(r);
    }
    for (std::size_t i = 1; i < nonces.size(); ++i) CHECK(nonces[i] > nonces[i - 1]);
}
