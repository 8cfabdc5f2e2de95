// Standalone appliance, the real signetd: kill -9 in the middle of guarded signing, restart on the
// same var directory (same SoftHSM token, same SQLite file), continue. DESIGN §3:
//   G1  no nonce is acknowledged twice, across both runs;
//   G2  every acknowledged nonce was durable (its sign.nonce audit record exists) before release;
//   G3  values after the restart exceed every value acknowledged before it;
//   gaps only where a request failed after allocation, each audited as nonce.gap;
//   a watermark acknowledged before the crash never signs another payload afterwards;
//   a reserved nonce is consumed exactly once, whether or not its consumption raced the crash.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "signet/pkcs11/algorithm.hpp"
#include "signet_test/crypto_oracle.hpp"
#include "signet_test/daemon_api.hpp"
#include "signet_test/daemon_harness.hpp"
#include "signet_test/daemon_load.hpp"
#include "signet_test/independent_verify.hpp"

namespace test = signet::test;
namespace json = boost::json;
using test::ApiClient;
using test::ApiReply;
using namespace std::chrono_literals;

namespace {

// What the audit log says happened to each value of one key's counter.
struct CounterAudit {
    std::set<std::uint64_t> signed_values;    // sign.nonce / sign.watermark records with a nonce
    std::set<std::uint64_t> reserved_values;  // nonce.reserve
    std::set<std::uint64_t> consumed_reservations;  // sign.nonce with "reserved": true
    std::set<std::uint64_t> gaps;                   // nonce.gap
};

CounterAudit counter_audit(ApiClient& admin, const std::string& key_id) {
    CounterAudit a;
    for (const auto& r : test::audit_records(admin)) {
        if (test::str(r, "subject") != key_id) continue;
        const std::string action = test::str(r, "action");
        const auto& details = r.at("details").as_object();
        if (!details.contains("nonce")) continue;
        const std::uint64_t n = test::u64(details, "nonce");
        if (action == "nonce.gap") {
            a.gaps.insert(n);
        } else if (action == "nonce.reserve") {
            a.reserved_values.insert(n);
        } else if (action == "sign.nonce" || action == "sign.watermark") {
            const auto* reserved = details.if_contains("reserved");
            (reserved && reserved->is_bool() && reserved->as_bool() ? a.consumed_reservations
                                                                    : a.signed_values)
                .insert(n);
        }
    }
    return a;
}

// CHECKs G2 and the gap rule for values 1..max over acknowledged reservations `acked` of a
// "reserved" key: each acknowledged one audited, every lower value reserved or a gap, once.
void check_reservations_accounted(const CounterAudit& a, const std::set<std::uint64_t>& acked) {
    std::vector<std::string> problems;
    for (const std::uint64_t n : acked) {
        if (!a.reserved_values.count(n))
            problems.push_back("acknowledged reservation " + std::to_string(n) + " is not audited");
    }
    const std::uint64_t max = acked.empty() ? 0 : *acked.rbegin();
    for (std::uint64_t v = 1; v <= max && problems.size() < 20; ++v) {
        const auto uses = a.reserved_values.count(v) + a.signed_values.count(v) + a.gaps.count(v);
        if (uses != 1) {
            problems.push_back("value " + std::to_string(v) + ": reserved, signed or a gap " +
                               std::to_string(uses) + " times");
        }
    }
    INFO(test::joined(problems));
    CHECK(problems.empty());
}

// CHECKs G2 and the gap rule for values 1..max over acknowledged nonces `acked`.
void check_accounted(const CounterAudit& a, const std::set<std::uint64_t>& acked) {
    std::vector<std::string> problems;
    for (const std::uint64_t n : acked) {
        if (!a.signed_values.count(n))
            problems.push_back("acknowledged nonce " + std::to_string(n) + " is not audited");
    }
    const std::uint64_t max = acked.empty() ? 0 : *acked.rbegin();
    for (std::uint64_t v = 1; v <= max; ++v) {
        const int uses = static_cast<int>(a.signed_values.count(v) + a.reserved_values.count(v));
        if (uses + static_cast<int>(a.gaps.count(v)) != 1 && problems.size() < 20) {
            problems.push_back("value " + std::to_string(v) + ": signed/reserved " +
                               std::to_string(uses) + " times, audited as gap " +
                               std::to_string(a.gaps.count(v)) + " times");
        }
    }
    INFO(test::joined(problems));
    CHECK(problems.empty());
}

std::set<std::uint64_t> acked_nonces(const std::vector<test::SignOp>& ops) {
    std::set<std::uint64_t> out;
    for (const auto& o : test::acknowledged(ops)) out.insert(o.nonce);
    return out;
}

// Threads of a crashed load that ended without a response: each stops at its first one.
long load_threads_lost(const std::vector<test::SignOp>& ops) {
    std::set<int> threads;
    for (const auto& o : ops) threads.insert(o.thread);
    return static_cast<long>(threads.size());
}

}  // namespace

TEST_CASE("kill -9 during nonce load: no nonce twice, acknowledged ones durable, gaps audited",
          "[daemon][integration][crash][nonce]") {
    test::ProvisionedDaemon p;
    ApiClient setup = p.api(p.admin);
    const auto key = test::create_key(setup, "ecdsa-p256", "crash-nonce", {{"nonces", "envelope"}});
    const std::string key_id = test::str(key, "id");
    const signet::Bytes spki =
        test::spki_of_pem(test::str(key.at("public_key").as_object(), "pem"));

    // Three crashes under load, each followed by a restart on the same var directory, then a
    // clean run. Every run's history is kept; the checks look at all of them together.
    constexpr int kCrashes = 3;
    std::vector<std::vector<test::SignOp>> runs;
    for (int crash = 0; crash <= kCrashes; ++crash) {
        const bool last = crash == kCrashes;
        test::NonceLoad load(p.daemon.client_options(), p.signer.token, key_id,
                             {.threads = last ? 4 : 8,
                              .per_thread = last ? 25 : 500,
                              .salt = "run" + std::to_string(crash)});
        load.start();
        if (!last) {
            REQUIRE(load.wait_acked(100, 60s));
            p.daemon.kill9();  // while the clients have requests in flight
        }
        load.join();
        runs.push_back(load.ops());
        const auto lost = std::ranges::count_if(
            runs.back(), [](const test::SignOp& o) { return o.transport_failed; });
        INFO("run " << crash << ": " << test::acknowledged(runs.back()).size() << " acknowledged, "
                    << lost << " without response");
        CHECK(lost == (last ? 0 : load_threads_lost(runs.back())));
        if (!last) p.daemon.start();
    }

    std::vector<test::SignOp> all;
    std::set<std::uint64_t> acked;
    std::uint64_t max_before = 0;
    for (const auto& run : runs) {
        all.insert(all.end(), run.begin(), run.end());
        const auto run_acked = acked_nonces(run);
        REQUIRE_FALSE(run_acked.empty());
        CHECK(*run_acked.begin() > max_before);  // G3 across each restart
        max_before = *run_acked.rbegin();
        acked.insert(run_acked.begin(), run_acked.end());
        const auto order = test::per_thread_order_violations(run);
        INFO(test::joined(order));
        CHECK(order.empty());
    }
    for (const auto& v : {test::duplicate_nonces(all), test::realtime_order_violations(all),
                          test::envelope_violations(all, key_id, spki)}) {
        INFO(test::joined(v));
        CHECK(v.empty());
    }
    for (const auto& o : runs.back()) {
        INFO("after the last restart: thread " << o.thread << " op " << o.index << " HTTP "
                                               << o.status);
        CHECK(o.acked);
    }

    ApiClient admin = p.api(p.admin);
    const CounterAudit audit = counter_audit(admin, key_id);
    INFO(audit.gaps.size() << " gaps audited");
    check_accounted(audit, acked);
    test::check_audit_chain(admin);
}

TEST_CASE(
    "kill -9 during watermark signing: an acknowledged watermark is never re-signed differently",
    "[daemon][integration][crash][watermark]") {
    test::ProvisionedDaemon p;
    ApiClient setup = p.api(p.admin);
    const auto key =
        test::create_key(setup, "ecdsa-p256", "validator", {{"watermark_required", true}});
    const std::string key_id = test::str(key, "id");
    const signet::Bytes spki =
        test::spki_of_pem(test::str(key.at("public_key").as_object(), "pem"));
    const std::string k = "/v1/keys/" + key_id + "/sign";
    auto block = [](std::uint64_t h, const char* fork = "") {
        return test::sha256_hex("block " + std::to_string(h) + fork);
    };
    auto body = [](std::uint64_t h, const std::string& digest) {
        return json::object{{"digest", digest}, {"watermark", json::array{h, 0}}};
    };

    // One validator signing heights 1, 2, 3, ... until the crash (bounded in count and time).
    std::atomic<std::uint64_t> acked_height{0};
    std::optional<std::uint64_t> unanswered;
    std::vector<std::pair<std::uint64_t, signet::Bytes>> signatures;
    std::thread validator([&] {
        ApiClient api(p.daemon.client_options(), p.signer.token);
        const auto deadline = std::chrono::steady_clock::now() + 60s;
        for (std::uint64_t h = 1; h <= 5000 && std::chrono::steady_clock::now() < deadline; ++h) {
            auto r = api.try_request("POST", k, json::serialize(body(h, block(h))));
            if (!r) {
                unanswered = h;
                return;
            }
            if (r->status != 200) return;
            signatures.emplace_back(h, test::unhex(test::str(r->object(), "signature")));
            acked_height = h;
        }
    });
    const auto wait_until = std::chrono::steady_clock::now() + 60s;
    while (acked_height < 30 && std::chrono::steady_clock::now() < wait_until)
        std::this_thread::sleep_for(5ms);
    p.daemon.kill9();
    validator.join();
    const std::uint64_t w = acked_height;
    REQUIRE(w >= 30);
    for (const auto& [h, sig] : signatures) {
        INFO("height " << h);
        CHECK(test::evp_verify(signet::pkcs11::Algorithm::ecdsa_p256, spki, test::unhex(block(h)),
                               sig));
    }

    p.daemon.start();
    ApiClient signer = p.api(p.signer);
    ApiClient admin = p.api(p.admin);
    // What became durable: the audit log holds one sign.watermark record per signed height.
    std::map<std::uint64_t, std::set<std::string>> durable;
    for (const auto& r : test::audit_with_action(admin, "sign.watermark")) {
        const auto& d = r.at("details").as_object();
        durable[d.at("watermark").as_array().at(0).to_number<std::uint64_t>()].insert(
            test::str(d, "digest"));
    }
    for (const auto& [h, digests] : durable) {
        INFO("height " << h);
        CHECK(digests.size() == 1);  // never two payloads at one watermark
    }
    REQUIRE_FALSE(durable.empty());
    const std::uint64_t stored = durable.rbegin()->first;
    INFO("acknowledged up to " << w << ", durable up to " << stored << ", unanswered "
                               << (unanswered ? std::to_string(*unanswered) : "none"));
    REQUIRE((stored == w || (unanswered && stored == *unanswered)));

    // Every acknowledged height, and lower ones, refuse a different payload.
    for (const std::uint64_t h : {w, w - 1, std::uint64_t{1}}) {
        INFO("height " << h);
        test::check_api_error(signer.post(k, body(h, block(h, "-fork"))), 409,
                              "watermark_regression");
    }
    if (stored == w) {
        // Nothing newer became durable: the same payload at w may be signed again, and w+1 is new.
        const ApiReply same = signer.post(k, body(w, block(w)));
        INFO(same.describe());
        CHECK(same.status == 200);
        CHECK(signer.post(k, body(w + 1, block(w + 1, "-after"))).status == 200);
    } else {
        // The unanswered request became durable: its height is taken by its own payload.
        test::check_api_error(signer.post(k, body(stored, block(stored, "-fork"))), 409,
                              "watermark_regression");
        CHECK(signer.post(k, body(stored, block(stored))).status == 200);
    }
    // A higher round at the same height is higher; a lower one is not.
    CHECK(signer
              .post(k, json::object{{"digest", block(w + 1, "-r1")},
                                    {"watermark", json::array{w + 1, 1}}})
              .status == 200);
    test::check_api_error(signer.post(k, json::object{{"digest", block(w + 1, "-r0")},
                                                      {"watermark", json::array{w + 1, 0}}}),
                          409, "watermark_regression");
    test::check_audit_chain(admin);
}

TEST_CASE("kill -9 while reserved nonces are consumed: each reservation is used exactly once",
          "[daemon][integration][crash][nonce]") {
    test::ProvisionedDaemon p;
    ApiClient admin = p.api(p.admin);
    const auto other_cred = test::create_client(admin, "signer-2", "signer");
    const std::string key_id =
        test::str(test::create_key(admin, "ecdsa-p256", "account", {{"nonces", "reserved"}}), "id");
    const std::string base = "/v1/keys/" + key_id;
    ApiClient signer = p.api(p.signer);
    ApiClient other = p.api(other_cred);
    auto reserve = [&](ApiClient& who) {
        const ApiReply r = who.post(base + "/nonces", json::object{});
        INFO(r.describe());
        REQUIRE(r.status == 201);
        return test::u64(r.object(), "nonce");
    };
    auto consume = [&](ApiClient& who, std::uint64_t n) {
        return who.post(base + "/sign",
                        json::object{{"digest", test::sha256_hex("tx " + std::to_string(n))},
                                     {"reserved_nonce", n}});
    };
    std::vector<std::uint64_t> mine;
    for (int i = 0; i < 24; ++i) mine.push_back(reserve(signer));
    const std::uint64_t theirs = reserve(other);
    const std::uint64_t kept = reserve(signer);  // never consumed before the crash
    const ApiReply first = consume(signer, mine[0]);
    REQUIRE(first.status == 200);
    CHECK(test::u64(first.object(), "nonce") == mine[0]);

    // Consume the rest one by one while other clients reserve nonces from the same counter (a
    // "reserved" key signs nothing else); crash.
    constexpr int kReservers = 4;
    std::vector<std::vector<std::uint64_t>> load_reserved(kReservers);  // read after join
    std::atomic<std::size_t> load_acked{0};
    std::vector<std::thread> load;
    for (int t = 0; t < kReservers; ++t) {
        load.emplace_back([&, t] {
            ApiClient api(p.daemon.client_options(), other_cred.token);
            for (int i = 0; i < 500; ++i) {
                auto r = api.try_request("POST", base + "/nonces");
                if (!r || r->status != 201) return;
                load_reserved[static_cast<std::size_t>(t)].push_back(
                    test::u64(r->object(), "nonce"));
                ++load_acked;
            }
        });
    }
    std::set<std::uint64_t> acked_consumed{mine[0]};  // written by the consumer, read after join
    std::atomic<std::size_t> consumed_count{1};
    std::atomic<bool> consumer_done{false};
    std::thread consumer([&] {
        ApiClient api(p.daemon.client_options(), p.signer.token);
        for (std::size_t i = 1; i < mine.size(); ++i) {
            auto r =
                api.try_request("POST", base + "/sign",
                                json::serialize(json::object{{"digest", test::sha256_hex("tx")},
                                                             {"reserved_nonce", mine[i]}}));
            if (!r) break;
            if (r->status == 200) {
                acked_consumed.insert(mine[i]);
                ++consumed_count;
            }
            std::this_thread::sleep_for(10ms);
        }
        consumer_done = true;
    });
    const auto until = std::chrono::steady_clock::now() + 60s;
    while ((load_acked < 60 || (consumed_count < 8 && !consumer_done)) &&
           std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(5ms);
    }
    REQUIRE(load_acked >= 60);
    p.daemon.kill9();
    consumer.join();
    for (auto& t : load) t.join();

    p.daemon.start();
    ApiClient admin2 = p.api(p.admin);
    ApiClient signer2 = p.api(p.signer);
    ApiClient other2 = p.api(other_cred);
    const CounterAudit audit = counter_audit(admin2, key_id);
    for (const std::uint64_t n : mine) {
        INFO("reserved nonce " << n);
        const bool consumed = audit.consumed_reservations.count(n) > 0;
        if (acked_consumed.count(n)) CHECK(consumed);  // durable before it was acknowledged
        const ApiReply again = consume(signer2, n);
        if (consumed) {
            test::check_api_error(again, 409, "reservation_invalid");
        } else {
            CHECK(again.status == 200);  // reserved but never consumed: usable, once
            test::check_api_error(consume(signer2, n), 409, "reservation_invalid");
        }
    }
    test::check_api_error(consume(signer2, theirs), 409, "reservation_invalid");
    CHECK(consume(other2, theirs).status == 200);
    CHECK(consume(signer2, kept).status == 200);
    test::check_api_error(consume(signer2, kept), 409, "reservation_invalid");

    // No two reservations share a value, and new values are above everything.
    std::set<std::uint64_t> acked;
    std::size_t load_total = 0;
    for (const auto& r : load_reserved) {
        CHECK(std::ranges::is_sorted(r));
        load_total += r.size();
        acked.insert(r.begin(), r.end());
    }
    CHECK(acked.size() == load_total);
    for (const std::uint64_t n : mine) CHECK(acked.count(n) == 0);
    CHECK(acked.count(theirs) == 0);
    CHECK(acked.count(kept) == 0);
    const std::uint64_t fresh = reserve(signer2);
    CHECK(fresh > std::max(*acked.rbegin(), kept));
    // Outstanding: the load's durable reservations (every one of mine, theirs and kept is now
    // consumed) and `fresh`.
    const ApiReply c = admin2.get(base + "/counter");
    REQUIRE(c.status == 200);
    CHECK(test::u64(c.object(), "reserved_outstanding") ==
          audit.reserved_values.size() - mine.size() - 2 + 1);
    acked.insert(mine.begin(), mine.end());
    acked.insert({theirs, kept});
    check_reservations_accounted(counter_audit(admin2, key_id), acked);
    test::check_audit_chain(admin2);
}
