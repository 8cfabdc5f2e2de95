// Standalone appliance, the real signetd: G1 and G3 (DESIGN §3) under concurrency. Many clients
// ask for the next nonce of one key at once; every client records when it invoked and when it got
// its answer, and the history is checked: unique values, increasing per client, and real-time
// order (if A completed before B was invoked, n(A) < n(B)). Nothing failed, so there are no gaps.
// Also the watermark guard's check-sign-persist atomicity under racing signers.
#include <algorithm>
#include <barrier>
#include <catch2/catch.hpp>
#include <map>
#include <numeric>
#include <set>
#include <thread>

#include "signet_test/daemon_api.hpp"
#include "signet_test/daemon_harness.hpp"
#include "signet_test/daemon_load.hpp"

namespace test = signet::test;
namespace json = boost::json;
using test::ApiClient;

namespace {

std::vector<std::uint64_t> nonces_of(const std::vector<test::SignOp>& ops) {
    std::vector<std::uint64_t> out;
    for (const auto& o : test::acknowledged(ops)) out.push_back(o.nonce);
    std::ranges::sort(out);
    return out;
}

std::vector<std::uint64_t> one_to(std::uint64_t n) {
    std::vector<std::uint64_t> v(n);
    std::iota(v.begin(), v.end(), 1);
    return v;
}

// Every history check of daemon_load.hpp, with the violations in the failure message.
void check_history(const std::vector<test::SignOp>& ops, const std::string& key_id,
                   const std::string& pem) {
    const auto dups = test::duplicate_nonces(ops);
    INFO(test::joined(dups));
    CHECK(dups.empty());
    const auto order = test::per_thread_order_violations(ops);
    INFO(test::joined(order));
    CHECK(order.empty());
    const auto realtime = test::realtime_order_violations(ops);
    INFO(test::joined(realtime));
    CHECK(realtime.empty());
    const auto sigs = test::envelope_violations(ops, key_id, test::spki_of_pem(pem));
    INFO(test::joined(sigs));
    CHECK(sigs.empty());
}

std::set<std::uint64_t> audited_nonces(ApiClient& admin, const std::string& action,
                                       const std::string& key_id) {
    std::set<std::uint64_t> out;
    for (const auto& r : test::audit_with_action(admin, action)) {
        if (test::str(r, "subject") == key_id)
            out.insert(test::u64(r.at("details").as_object(), "nonce"));
    }
    return out;
}

}  // namespace

TEST_CASE("eight clients signing with nonces on one key get unique, real-time ordered nonces",
          "[daemon][integration][nonce][concurrency]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    const auto key = test::create_key(admin, "ecdsa-p256", "concurrent", {{"nonces", "envelope"}});
    const std::string key_id = test::str(key, "id");
    const std::string pem = test::str(key.at("public_key").as_object(), "pem");

    test::NonceLoad load(p.daemon.client_options(), p.signer.token, key_id,
                         {.threads = 8, .per_thread = 50});
    load.start();
    load.join();
    const auto& ops = load.ops();
    REQUIRE(ops.size() == 400);
    for (const auto& o : ops) {
        INFO("thread " << o.thread << " op " << o.index << ": HTTP " << o.status << " "
                       << o.error_code);
        REQUIRE(o.acked);
    }
    check_history(ops, key_id, pem);
    // Nothing failed after allocation, so nothing was skipped.
    CHECK(nonces_of(ops) == one_to(400));

    const test::ApiReply c = admin.get("/v1/keys/" + key_id + "/counter");
    REQUIRE(c.status == 200);
    CHECK(test::u64(c.object(), "last_issued") == 400);
    const auto audited = audited_nonces(admin, "sign.nonce", key_id);
    CHECK(audited.size() == 400);
    CHECK(std::vector<std::uint64_t>(audited.begin(), audited.end()) == one_to(400));
    CHECK(test::audit_with_action(admin, "nonce.gap").empty());
    test::check_audit_chain(admin);
}

TEST_CASE("racing reservations and their signatures never collide, and each key counts alone",
          "[daemon][integration][nonce][concurrency]") {
    // A key either signs appliance-assigned envelopes or consumes reservations, never both (its
    // "nonces" mode): reservations race on one key while envelope signers load two others.
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    const std::string key_id = test::str(
        test::create_key(admin, "ecdsa-p256", "reserved-counter", {{"nonces", "reserved"}}), "id");
    const auto envelope = test::str(
        test::create_key(admin, "ecdsa-p256", "envelope-counter", {{"nonces", "envelope"}}), "id");
    const auto other = test::str(
        test::create_key(admin, "ecdsa-p256", "other-counter", {{"nonces", "envelope"}}), "id");

    test::NonceLoad load(p.daemon.client_options(), p.signer.token, envelope,
                         {.threads = 4, .per_thread = 40});
    test::NonceLoad elsewhere(p.daemon.client_options(), p.signer.token, other,
                              {.threads = 2, .per_thread = 40, .salt = "other"});
    constexpr int kReservers = 4, kReservations = 30;
    std::vector<std::vector<std::uint64_t>> reserved(kReservers), consumed(kReservers);
    std::vector<std::string> failures(kReservers);  // each thread's first unexpected reply
    std::vector<std::thread> reservers;
    load.start();
    elsewhere.start();
    for (int t = 0; t < kReservers; ++t) {
        reservers.emplace_back([&, t] {
            const auto ti = static_cast<std::size_t>(t);
            ApiClient api(p.daemon.client_options(), p.signer.token);
            for (int i = 0; i < kReservations; ++i) {
                auto r = api.try_request("POST", "/v1/keys/" + key_id + "/nonces");
                if (!r || r->status != 201) {
                    failures[ti] =
                        r ? std::to_string(r->status) + " " + r->body : r.error().message();
                    break;
                }
                const std::uint64_t n = test::u64(r->object(), "nonce");
                reserved[ti].push_back(n);
                if (i % 2 != 0) continue;  // every other reservation is signed with at once
                const std::string body = json::serialize(json::object{
                    {"digest", test::sha256_hex("r" + std::to_string(n))}, {"reserved_nonce", n}});
                auto s = api.try_request("POST", "/v1/keys/" + key_id + "/sign", body);
                if (s && s->status == 200 && test::u64(s->object(), "nonce") == n) {
                    consumed[ti].push_back(n);
                } else if (failures[ti].empty()) {
                    failures[ti] =
                        s ? std::to_string(s->status) + " " + s->body : s.error().message();
                }
            }
        });
    }
    for (auto& t : reservers) t.join();
    load.join();
    elsewhere.join();

    std::vector<std::uint64_t> all;
    std::size_t signed_count = 0;
    for (std::size_t t = 0; t < reserved.size(); ++t) {
        INFO("reserver " << t << ": " << failures[t]);
        REQUIRE(reserved[t].size() == kReservations);
        CHECK(consumed[t].size() == kReservations / 2);
        signed_count += consumed[t].size();
        CHECK(std::ranges::is_sorted(reserved[t]));
        all.insert(all.end(), reserved[t].begin(), reserved[t].end());
    }
    std::ranges::sort(all);
    CHECK(all == one_to(kReservers * kReservations));
    // The envelope keys' counters are their own.
    CHECK(nonces_of(load.ops()) == one_to(160));
    CHECK(nonces_of(elsewhere.ops()) == one_to(80));
    const test::ApiReply c = admin.get("/v1/keys/" + key_id + "/counter");
    REQUIRE(c.status == 200);
    CHECK(test::u64(c.object(), "reserved_outstanding") ==
          kReservers * kReservations - signed_count);
    CHECK(audited_nonces(admin, "sign.nonce", key_id).size() == signed_count);
}

TEST_CASE("racing signers at one watermark: exactly one payload is signed per height",
          "[daemon][integration][watermark][concurrency]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    const std::string key_id = test::str(
        test::create_key(admin, "ecdsa-p256", "racing-validator", {{"watermark_required", true}}),
        "id");
    constexpr int kThreads = 8, kHeights = 20;
    // status[h][t]: the HTTP status thread t got at height h.
    std::vector<std::vector<int>> status(kHeights + 1, std::vector<int>(kThreads, 0));
    std::barrier sync(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            ApiClient api(p.daemon.client_options(), p.signer.token);
            for (std::uint64_t h = 1; h <= kHeights; ++h) {
                const std::string digest =
                    test::sha256_hex("h" + std::to_string(h) + " by " + std::to_string(t));
                const std::string body = json::serialize(
                    json::object{{"digest", digest}, {"watermark", json::array{h}}});
                sync.arrive_and_wait();  // every thread asks for height h at the same moment
                auto r = api.try_request("POST", "/v1/keys/" + key_id + "/sign", body);
                status[h][static_cast<std::size_t>(t)] = r ? r->status : -1;
            }
        });
    }
    for (auto& t : threads) t.join();
    for (std::uint64_t h = 1; h <= kHeights; ++h) {
        INFO("height " << h);
        CHECK(std::ranges::count(status[h], 200) == 1);
        CHECK(std::ranges::count(status[h], 409) == kThreads - 1);
    }
    std::map<std::string, int> per_height;
    for (const auto& r : test::audit_with_action(admin, "sign.watermark")) {
        ++per_height[json::serialize(r.at("details").as_object().at("watermark"))];
    }
    CHECK(per_height.size() == kHeights);
    for (const auto& [w, n] : per_height) {
        INFO("watermark " << w);
        CHECK(n == 1);
    }
}
