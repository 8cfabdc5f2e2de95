// A pair of real appliances on real etcd members (loopback): the nonce guarantees of DESIGN §3
// across failover, fencing, dual-active allocation and etcd member loss. Clients record every
// invoke and completion; the history checkers of the standalone suite judge G1 and G3 over the
// union of what both appliances returned.
#include <signal.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>
#include <thread>

#include "signet_test/daemon_load.hpp"
#include "signet_test/pair_harness.hpp"

using namespace std::chrono_literals;
using signet::test::ApiClient;
using signet::test::ApiReply;
using signet::test::LoadOptions;
using signet::test::NonceLoad;
using signet::test::PairOptions;
using signet::test::SignetDaemon;
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

// Signs with `sign_once` (bounded: 100 tries, 50 ms apart) until the appliance refuses with 503;
// every nonce signed meanwhile must be above `last`, which follows them. True when refused.
template <class Sign>
bool signs_until_refused(Sign&& sign_once, std::uint64_t& last) {
    for (int i = 0; i < 100; ++i) {
        const ApiReply r = sign_once("until-refused-" + std::to_string(i));
        if (r.status != 200) {
            INFO(r.describe());
            CHECK(r.status == 503);
            return true;
        }
        const auto n = signet::test::u64(r.object(), "nonce");
        CHECK(n > last);
        last = n;
        std::this_thread::sleep_for(50ms);
    }
    return false;
}

}  // namespace

TEST_CASE("a hot standby without forwarding refuses to sign, names the active, and is not ready",
          "[ha][integration]") {
    PairOptions no_forward;
    no_forward.forward = false;
    TestPair pair(no_forward);
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

    // The same in /metrics (refreshed every 2 s), with every etcd member's health.
    auto metrics_show = [&](std::size_t i, const std::string& line) {
        ApiClient anon(pair.appliance(i).client_options(5s), "");
        for (int n = 0; n < 100; ++n) {
            if (anon.get("/metrics").body.find(line) != std::string::npos) return true;
            std::this_thread::sleep_for(50ms);
        }
        return false;
    };
    CHECK(metrics_show(0, "signet_ha_role{role=\"active\"} 1"));
    CHECK(metrics_show(1, "signet_ha_role{role=\"standby\"} 1"));
    CHECK(metrics_show(1, "signet_etcd_member_up{member=\"m2\"} 1"));
    CHECK(metrics_show(0, "signet_ha_allocation_total{kind=\"issued\"}"));
}

TEST_CASE("a hot standby forwards signing requests to the active, which audits them as forwarded",
          "[ha][integration]") {
    PairOptions options;
    options.forward_timeout_ms = 1000;
    TestPair pair(options);
    ApiClient admin_a = pair.api(0);
    const auto key = signet::test::create_key(admin_a, "ecdsa-p256", "fwd", envelope_policy());
    const std::string id = signet::test::str(key, "id");
    const auto signer = pair.create_signer();
    ApiClient sa = pair.api(0, signer.token);
    ApiClient sb = pair.api(1, signer.token);
    const signet::test::json::object nonce_body{{"digest", digest("x")}, {"nonce", true}};

    // Signed on the standby, served by the active: one counter, in order, whichever one is asked.
    std::uint64_t last = 0;
    for (int i = 0; i < 3; ++i) {
        const ApiReply r = sb.post("/v1/keys/" + id + "/sign", nonce_body);
        INFO(r.describe());
        REQUIRE(r.status == 200);
        CHECK(r.headers.at("X-Signet-Served-By") == "a");
        const auto n = signet::test::u64(r.object(), "nonce");
        CHECK(n > last);
        last = n;
        const auto direct = signet::test::u64(signet::test::sign(sa, id, nonce_body), "nonce");
        CHECK(direct > last);
        last = direct;
    }
    // The active's audit names the client, and the standby as the appliance that forwarded it.
    const auto records = signet::test::audit_with_action(admin_a, "sign.nonce");
    const auto via_b = std::count_if(records.begin(), records.end(), [&](const auto& rec) {
        return signet::test::json::serialize(rec).find(R"("via":"b")") != std::string::npos &&
               signet::test::str(rec, "actor") == signer.id;
    });
    CHECK(via_b == 3);

    // Reservations too: reserved through b, consumed through b, and refused a second time.
    const auto rkey =
        signet::test::create_key(admin_a, "ecdsa-p256", "fwd-reserved", {{"nonces", "reserved"}});
    const std::string rid = signet::test::str(rkey, "id");
    const ApiReply reserved = sb.post("/v1/keys/" + rid + "/nonces", signet::test::json::object{});
    INFO(reserved.describe());
    REQUIRE(reserved.status == 201);
    CHECK(reserved.headers.at("X-Signet-Served-By") == "a");
    const auto value = signet::test::u64(reserved.object(), "nonce");
    const signet::test::json::object use{{"digest", digest("r")}, {"reserved_nonce", value}};
    const ApiReply used = sb.post("/v1/keys/" + rid + "/sign", use);
    INFO(used.describe());
    CHECK(used.status == 200);
    CHECK(signet::test::u64(used.object(), "nonce") == value);
    signet::test::check_api_error(sb.post("/v1/keys/" + rid + "/sign", use), 409,
                                  "reservation_invalid");

    // A bad token stops at the standby; nothing reaches the active.
    ApiClient intruder = pair.api(1, "sgt_not-a-token");
    const ApiReply bad = intruder.post("/v1/keys/" + id + "/sign", nonce_body);
    signet::test::check_api_error(bad, 401, "unauthenticated");
    CHECK(bad.headers.count("X-Signet-Served-By") == 0);

    // Claiming to be the peer takes the peer's TLS certificate: a client's token, or none, with
    // the forwarding header is refused and signs nothing.
    const auto counter_before = admin_a.get("/v1/keys/" + id + "/counter").body;
    for (const std::string& token : {signer.token, std::string()}) {
        ApiClient forger(pair.appliance(0).client_options(5s), token);
        const ApiReply r = forger.request(
            "POST", "/v1/keys/" + id + "/sign", signet::test::json::serialize(nonce_body),
            {{"Content-Type", "application/json"}, {"X-Signet-Forwarded-Caller", signer.id}});
        INFO(r.describe());
        signet::test::check_api_error(r, 401, "unauthenticated");
        CHECK_THAT(r.error_message(), Catch::Contains("only from the paired appliance"));
    }
    CHECK(admin_a.get("/v1/keys/" + id + "/counter").body == counter_before);

    // Only signing routes take forwarded requests: elsewhere the header fails authentication.
    const ApiReply admin_route =
        admin_a.request("GET", "/v1/clients", {}, {{"X-Signet-Forwarded-Caller", signer.id}});
    INFO(admin_route.describe());
    signet::test::check_api_error(admin_route, 401, "unauthenticated");
    CHECK_THAT(admin_route.error_message(), Catch::Contains("only on the signing routes"));

    // The active stops answering while a request is on its way (a kept-alive connection): the
    // standby cannot know whether it was signed, and says so.
    pair.appliance(0).send_signal(SIGSTOP);
    const ApiReply lost = sb.post("/v1/keys/" + id + "/sign", nonce_body);
    pair.appliance(0).send_signal(SIGCONT);
    INFO(lost.describe());
    signet::test::check_api_error(lost, 502, "peer_outcome_unknown");
    CHECK_THAT(lost.error_message(), Catch::Contains("may have been signed there"));
    CHECK(lost.headers.count("Retry-After") == 0);
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
    lo.per_thread = 200;
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

    // a, restarted, audits the unreleased rest of the block it held when it was killed: above
    // every nonce it returned, never issued by anyone.
    std::uint64_t max_a = 0;
    for (const auto& o : ops) {
        if (o.acked && o.target == 0) max_a = std::max(max_a, o.nonce);
    }
    pair.appliance(0).start(false);
    REQUIRE(pair.wait_role(0, "standby", 30s));
    ApiClient admin_a = pair.api(0);
    std::size_t crash_gaps = 0;
    for (const auto& g : signet::test::audit_with_action(admin_a, "nonce.gap")) {
        const auto& d = g.at("details").as_object();
        if (signet::test::str(d, "reason").find("crash") == std::string::npos) continue;
        ++crash_gaps;
        CHECK(signet::test::u64(d, "nonce") > max_a);
        CHECK(signet::test::u64(d, "last") >= signet::test::u64(d, "nonce"));
    }
    CHECK(crash_gaps >= 1);
}

TEST_CASE(
    "a SIGSTOPped active that wakes after the standby took over never signs as active again, "
    "though its lease may still be alive",
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
    // b took over on a's silent heartbeat or on etcd's expiry of a's lease, whichever came first
    // (a renews its lease only once half of it is gone, so either may): when it was the
    // heartbeat, a wakes to find its lease still alive, and must refuse all the same.

    // Right after waking, and for a while after, a never signs itself: its lease is provably
    // gone. It refuses, or (once it knows b is the active) forwards to b, whose nonces go on
    // above b's.
    std::uint64_t last = b_nonce;
    int forwarded = 0;
    for (int i = 0; i < 20; ++i) {
        const ApiReply r = sa.post("/v1/keys/" + id + "/sign",
                                   {{"digest", digest("w" + std::to_string(i))}, {"nonce", true}});
        INFO("attempt " << i << ": " << r.describe());
        if (r.status == 200) {
            CHECK(r.headers.at("X-Signet-Served-By") == "b");
            const auto n = signet::test::u64(r.object(), "nonce");
            CHECK(n > last);
            last = n;
            ++forwarded;
        } else {
            CHECK(r.status == 503);
        }
        std::this_thread::sleep_for(50ms);
    }
    INFO(forwarded << " of 20 attempts on a were forwarded to b");
    CHECK(forwarded > 0);  // a learns that b is the active within a tick of waking
    CHECK(pair.wait_role(0, "standby", 10s));
    const auto later = signet::test::sign(sb, id, {{"digest", digest("3")}, {"nonce", true}});
    CHECK(signet::test::u64(later, "nonce") > last);
}

TEST_CASE("dual-active appliances signing one key at once never share a nonce",
          "[ha][integration][dual]") {
    const std::string allocation =
        GENERATE(std::string("fast"), std::string("strict"), std::string("dense"));
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
    // In fast and dense mode a request may lose every compare-and-swap round to the peer and get a
    // retryable 503 (conflict_retry); strict batches do not race. Nothing else may fail.
    std::size_t retryable = 0;
    for (const auto& o : all) {
        if (o.acked) continue;
        INFO("HTTP " << o.status << " " << o.error_code);
        CHECK((o.status == 503 && o.error_code == "conflict_retry"));
        ++retryable;
    }
    CHECK(signet::test::acknowledged(all).size() + retryable == 360);
    CHECK(retryable <= (allocation == "strict" ? 0U : 18U));
    // Every appliance's own sequence increases; strict and dense order the union in real time.
    const auto per_thread = signet::test::per_thread_order_violations(all);
    INFO(signet::test::joined(per_thread));
    CHECK(per_thread.empty());
    check_unique_and_ordered(all, allocation != "fast");
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
        std::uint64_t last = nonces.back();
        const bool refused = signs_until_refused(sign_once, last);
        if (last != nonces.back()) nonces.push_back(last);
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

TEST_CASE("a pair whose etcd lost a counter never goes below the values an appliance issued",
          "[ha][integration][restore]") {
    TestPair pair;
    ApiClient admin = pair.api(0);
    const auto key = signet::test::create_key(admin, "ecdsa-p256", "floor", envelope_policy());
    const std::string id = signet::test::str(key, "id");
    const auto signer = pair.create_signer();
    std::uint64_t last = 0;
    {
        ApiClient sa = pair.api(0, signer.token);
        for (int i = 0; i < 5; ++i) {
            last = signet::test::u64(
                signet::test::sign(sa, id,
                                   {{"digest", digest("f" + std::to_string(i))}, {"nonce", true}}),
                "nonce");
        }
    }
    // etcd restored from a snapshot older than the key's use: its counter key is gone.
    const std::string counter =
        signet::base64_encode(signet::to_bytes("/signet/test/counters/" + id));
    (void)pair.etcd().post_json(0, "/v3/kv/deleterange", "{\"key\":\"" + counter + "\"}");
    // b takes over: it knows nothing of a's values but what etcd says. a, restarted, knows its
    // own local copies and raises the pair's counter past them on first use.
    pair.appliance(1).kill9();
    pair.appliance(0).restart();
    REQUIRE(pair.wait_signing(0, 30s));
    ApiClient sa = pair.api(0, signer.token);
    const auto next = signet::test::sign(sa, id, {{"digest", digest("after")}, {"nonce", true}});
    CHECK(signet::test::u64(next, "nonce") > last);
}

TEST_CASE("a store that has been in a pair refuses to start standalone", "[ha][integration]") {
    TestPair pair;
    SignetDaemon& a = pair.appliance(0);
    a.stop();
    // The same store and tokens with the [ha] section left out.
    std::ifstream in(a.config_path());
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    text = text.substr(0, text.find("[ha]"));
    const auto standalone = a.var_dir() / "standalone.toml";
    std::ofstream(standalone) << text;
    const auto out =
        signet::test::run_process({signet::test::signetd_path(), "--config", standalone.string()},
                                  {{"SOFTHSM2_CONF", a.softhsm_conf().string()}}, 60s);
    INFO(out.err);
    CHECK(out.status.exited_with(1));
    CHECK_THAT(out.err, Catch::Contains("belongs to pair 'test'"));
}

TEST_CASE(
    "without a witness, losing the peer stops signing until a forced promotion bumps every "
    "counter",
    "[ha][integration][promote]") {
    PairOptions po;
    po.etcd_members = 2;  // a's and b's members only: two voters
    TestPair pair(po);
    ApiClient admin = pair.api(0);
    const auto key = signet::test::create_key(admin, "ecdsa-p256", "p", envelope_policy());
    const std::string id = signet::test::str(key, "id");
    const auto signer = pair.create_signer();
    SignetDaemon& a = pair.appliance(0);
    std::uint64_t last = 0;
    auto sign_once = [&](const std::string& tag) {
        ApiClient s = pair.api(0, signer.token);
        return s.post("/v1/keys/" + id + "/sign", {{"digest", digest(tag)}, {"nonce", true}});
    };
    for (int i = 0; i < 3; ++i) {
        last = signet::test::u64(sign_once("p" + std::to_string(i)).object(), "nonce");
    }

    pair.appliance(1).kill9();
    pair.etcd().kill(1);
    const bool refused = signs_until_refused(sign_once, last);
    REQUIRE(refused);

    const std::string config = a.config_path().string();
    // Refused, changing nothing, while signetd runs, and without the operator's confirmation.
    const auto running =
        signet::test::run_signetctl({"ha", "force-promote", "--config", config, "--peer-fenced"});
    CHECK(running.status.exited_with(1));
    CHECK_THAT(running.err, Catch::Contains("another signetd"));
    a.stop();
    const auto unconfirmed =
        signet::test::run_signetctl({"ha", "force-promote", "--config", config});
    CHECK(unconfirmed.status.exited_with(1));
    CHECK_THAT(unconfirmed.err, Catch::Contains("--peer-fenced"));

    // The operator re-forms a's member as a one-member cluster, then promotes.
    pair.etcd().kill(0);
    pair.etcd().force_new_cluster(0);
    REQUIRE(pair.etcd().wait_for_leader(15s));
    const auto promoted =
        signet::test::run_signetctl({"ha", "force-promote", "--config", config, "--peer-fenced"});
    INFO(promoted.out << promoted.err);
    REQUIRE(promoted.status.exited_with(0));
    const auto report = signet::test::json::parse(promoted.out).as_object();
    const auto margin = signet::test::u64(report, "margin");
    CHECK(margin > 0);
    REQUIRE(report.at("raised").as_array().size() == 1);
    const auto& raised = report.at("raised").as_array().at(0).as_object();
    CHECK(signet::test::str(raised, "counter") == id);
    CHECK(signet::test::u64(raised, "after") == signet::test::u64(raised, "before") + margin);
    CHECK(signet::test::u64(raised, "before") >= last);

    a.start(false);
    REQUIRE(pair.wait_signing(0, 30s));
    const ApiReply r = sign_once("promoted");
    INFO(r.describe());
    REQUIRE(r.status == 200);
    CHECK(signet::test::u64(r.object(), "nonce") > signet::test::u64(raised, "after"));
    ApiClient audit = pair.api(0);
    CHECK(signet::test::audit_with_action(audit, "ha.force_promote").size() == 1);
    CHECK(report.at("fenced").as_array() == signet::test::json::array{"b"});

    // b comes back on its old store: refused, naming the promotion and the guide.
    SignetDaemon& b = pair.appliance(1);
    const auto stale = b.run_another({}, 60s);
    INFO(stale.err);
    CHECK(stale.status.exited_with(1));
    CHECK_THAT(stale.err, Catch::Contains("fenced by a forced promotion"));
    CHECK_THAT(stale.err, Catch::Contains("signetctl ha rejoin"));
    // The guide: the store is to be wiped (exit 1); once it is, b may start (exit 0).
    const std::string b_config = b.config_path().string();
    auto guide = [&](int expected_exit) {
        const auto g = signet::test::run_signetctl({"ha", "rejoin", "--config", b_config});
        INFO(g.out << g.err);
        CHECK(g.status.exited_with(expected_exit));
        return signet::test::json::parse(g.out).as_object();
    };
    const auto before = guide(1);
    CHECK(before.at("fenced").as_object().at("by").as_string() == "a");
    const auto& store_step = before.at("steps").as_array().at(1).as_object();
    CHECK_FALSE(store_step.at("done").as_bool());
    CHECK_THAT(std::string(store_step.at("how").as_string()), Catch::Contains("mv "));
    std::filesystem::remove_all(b.data_dir());
    CHECK(guide(0).at("ready_to_start").as_bool());

    // Wiped, b joins as a new appliance (audited), and its standby forwards to a, above a's mark.
    b.start(false);
    REQUIRE(pair.wait_role(1, "standby", 30s));
    CHECK(guide(1).at("fenced").is_null());  // 1: signetd runs on b now
    ApiClient admin_b = pair.api(1);
    CHECK(signet::test::audit_with_action(admin_b, "ha.rejoin").size() == 1);
    ApiClient sb = pair.api(1, signer.token);
    const ApiReply via_b =
        sb.post("/v1/keys/" + id + "/sign", {{"digest", digest("rejoined")}, {"nonce", true}});
    INFO(via_b.describe());
    REQUIRE(via_b.status == 200);
    CHECK(via_b.headers.at("X-Signet-Served-By") == "a");
    CHECK(signet::test::u64(via_b.object(), "nonce") > signet::test::u64(r.object(), "nonce"));
}

TEST_CASE("an appliance whose pair settings differ from its peer's refuses to start",
          "[ha][integration]") {
    TestPair pair;
    SignetDaemon& b = pair.appliance(1);
    b.stop();
    b.set_option("ha", "mode", "\"dual-active\"");
    const auto out = b.run_another({}, 60s);
    INFO(out.err);
    CHECK(out.status.exited_with(1));
    CHECK_THAT(out.err, Catch::Contains("differ from the pair's"));
    // a still signs as the active.
    CHECK(pair.role(0) == "active");
}
