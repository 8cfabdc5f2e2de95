// Concurrent signing load against a running signetd, recorded as a history (invoke and complete
// times on CLOCK_MONOTONIC, outcome, nonce, signature) that the checkers below judge: the shape of
// the Jepsen-style histories DESIGN §7 describes, for the standalone appliance.
#pragma once

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "signet/core/bytes.hpp"
#include "signet/web/client.hpp"

namespace signet::test {

using namespace std::chrono_literals;
using SteadyTime = std::chrono::steady_clock::time_point;

struct SignOp {
    int thread = 0;
    int index = 0;   // position in its thread's sequence
    int target = 0;  // which appliance it was sent to (0: the first client, then `failover`)
    SteadyTime invoked{}, completed{};
    bool acked = false;             // HTTP 200 arrived
    bool transport_failed = false;  // no response (connection refused/reset: the daemon died)
    int status = 0;
    std::string error_code;
    std::string digest_hex;  // the payload digest the client sent
    std::uint64_t nonce = 0;
    Bytes signature, envelope;
};

struct LoadOptions {
    int threads = 8;
    int per_thread = 50;                            // bound on requests per thread
    std::chrono::milliseconds max_duration = 120s;  // bound on the whole run
    std::string salt = "load";                      // makes payloads distinct across loads
    // Other appliances of a pair. With any, a thread whose request fails (no response, or 503)
    // moves on to the next appliance after `failover_pause` and goes on, instead of stopping.
    std::vector<web::ClientOptions> failover{};
    std::chrono::milliseconds failover_pause{20};
};

// `threads` threads, each with its own connection, send {"digest": ..., "nonce": true} to one key
// until `per_thread` requests, the first transport failure (unless `failover` names other
// appliances), or `max_duration`.
class NonceLoad {
public:
    NonceLoad(web::ClientOptions client, std::string token, std::string key_id,
              LoadOptions options);
    ~NonceLoad();  // joins
    NonceLoad(const NonceLoad&) = delete;
    NonceLoad& operator=(const NonceLoad&) = delete;

    void start();
    // True once `n` requests were acknowledged; false when the bound passed or every thread ended.
    [[nodiscard]] bool wait_acked(std::size_t n, std::chrono::milliseconds bound);
    void join();
    // The history (after join()).
    [[nodiscard]] const std::vector<SignOp>& ops() const noexcept { return ops_; }
    [[nodiscard]] std::size_t acked() const noexcept { return acked_.load(); }

private:
    void run(int thread);

    web::ClientOptions client_;
    std::string token_, key_id_;
    LoadOptions options_;
    SteadyTime deadline_{};
    std::atomic<std::size_t> acked_{0};
    std::atomic<int> running_{0};
    std::mutex mu_;
    std::vector<SignOp> ops_;  // guarded by mu_ while threads run
    std::vector<std::thread> threads_;
};

// Acknowledged operations only.
[[nodiscard]] std::vector<SignOp> acknowledged(const std::vector<SignOp>& ops);

// Violations (human-readable, at most `limit` each) of:
//   G1: a nonce acknowledged twice;
[[nodiscard]] std::vector<std::string> duplicate_nonces(const std::vector<SignOp>& ops,
                                                        std::size_t limit = 10);
//   per-thread order: each thread's acknowledged nonces strictly increase;
[[nodiscard]] std::vector<std::string> per_thread_order_violations(const std::vector<SignOp>& ops,
                                                                   std::size_t limit = 10);
//   G3: if A completed before B was invoked then n(A) < n(B);
[[nodiscard]] std::vector<std::string> realtime_order_violations(const std::vector<SignOp>& ops,
                                                                 std::size_t limit = 10);
//   the envelope is the documented one and the ECDSA P-256 signature verifies over it (OpenSSL
//   EVP, independently of Signet). `spki` is the key's SubjectPublicKeyInfo.
[[nodiscard]] std::vector<std::string> envelope_violations(const std::vector<SignOp>& ops,
                                                           const std::string& key_id,
                                                           const Bytes& spki,
                                                           std::size_t limit = 10);

// Joins violations for an INFO message.
[[nodiscard]] std::string joined(const std::vector<std::string>& lines);

}  // namespace signet::test
