// SigningService: the appliance behind the REST API. Every request goes
//   authenticate -> role -> key policy -> rate limit -> watermark / nonce -> HSM sign
//   -> durable audit (for privileged, nonce- and watermark-bearing operations) -> response.
// Plain signatures are tallied per client, key and minute and written to the audit log by a
// background flush (and at shutdown).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>

#include "catalog.hpp"
#include "committer.hpp"
#include "nonce_authority.hpp"
#include "pair.hpp"
#include "pair_catalog.hpp"
#include "pair_members.hpp"
#include "rate_limiter.hpp"
#include "signet/core/clock.hpp"
#include "signet/core/logger.hpp"
#include "signet/pkcs11/key_store.hpp"
#include "signet/pkcs11/self_test.hpp"
#include "signet/web/metrics.hpp"
#include "signet/web/service.hpp"
#include "watermark_guard.hpp"

namespace signet::daemon {

struct ServiceOptions {
    std::size_t batch_max = 256;
    std::chrono::seconds tally_flush_interval{60};
    std::optional<Bytes> setup_token_hash;   // present until the first admin exists
    std::filesystem::path setup_token_file;  // removed once setup is complete
};

struct ServiceDeps {
    std::shared_ptr<Catalog> catalog;
    std::shared_ptr<pkcs11::KeyStore> keys;
    std::shared_ptr<Committer> committer;
    std::shared_ptr<NonceAuthority> nonces;
    std::shared_ptr<WatermarkGuard> watermarks;
    std::shared_ptr<Db> reader;  // read-only queries (audit); guarded by the service
    std::shared_ptr<const Clock> clock;
    std::shared_ptr<Logger> logger;
    std::shared_ptr<web::Registry> metrics;
    std::shared_ptr<Pair> pair;  // null: standalone
    // In a pair: keys and clients replicated through etcd, the transport key and KEKs. Null when
    // standalone.
    std::shared_ptr<PairCatalog> replica;
    // In a pair with [ha] forward: the peers' addresses and certificates, for route_signing() and
    // for believing a request the peer forwarded. Null: nothing is forwarded or believed.
    std::shared_ptr<PairMembers> members;
};

class SigningService final : public web::Service {
public:
    SigningService(ServiceDeps deps, ServiceOptions options);
    ~SigningService() override;  // flushes the tally

    // Readiness: the daemon reports the HSM self-test here (not ready until it passed).
    void set_self_test(const pkcs11::SelfTestReport& report);
    // Writes the pending plain-signature tally to the audit log now (and waits for it).
    void flush_tally();
    // The HSM audit key that signs checkpoints; audit_verify() requires the newest checkpoint to be
    // signed by it.
    void set_audit_key(Bytes spki);

    Result<web::Caller> authenticate(const web::Credentials& c) override;
    web::Health health() override;
    Result<web::NewClient> complete_setup(const std::string& setup_token,
                                          const std::string& admin_name,
                                          const web::Credentials& c) override;

    Result<web::KeyDescription> create_key(const web::Caller& c,
                                           const web::CreateKeyParams& p) override;
    Result<std::vector<web::KeyDescription>> list_keys(const web::Caller& c) override;
    Result<web::KeyDescription> get_key(const web::Caller& c, const std::string& id) override;
    Result<web::KeyDescription> disable_key(const web::Caller& c, const std::string& id) override;
    Result<web::KeyDescription> set_policy(const web::Caller& c, const std::string& id,
                                           const web::KeyPolicy& p) override;
    Result<void> destroy_key(const web::Caller& c, const std::string& id) override;

    Result<web::SignResult> sign(const web::Caller& c, const std::string& key_id,
                                 const web::SignParams& p) override;
    Result<std::vector<web::SignResult>> sign_batch(const web::Caller& c, const std::string& key_id,
                                                    const std::vector<Bytes>& digests,
                                                    const web::SignParams& options) override;
    Result<bool> verify(const web::Caller& c, const std::string& key_id, const web::SignParams& p,
                        const Bytes& signature) override;
    Result<std::uint64_t> reserve_nonce(const web::Caller& c, const std::string& key_id) override;
    Result<web::CounterState> counter(const web::Caller& c, const std::string& key_id) override;

    Result<web::NewClient> create_client(const web::Caller& c, const std::string& name,
                                         web::Role role,
                                         const std::optional<std::string>& cert_sha256) override;
    Result<std::vector<web::ClientDescription>> list_clients(const web::Caller& c) override;
    Result<void> revoke_client(const web::Caller& c, const std::string& id) override;

    Result<std::vector<web::AuditRecord>> audit_tail(const web::Caller& c, std::uint64_t after_seq,
                                                     std::size_t limit) override;
    Result<web::AuditVerification> audit_verify(const web::Caller& c) override;
    Result<web::HaStatus> ha_status(const web::Caller& c) override;
    Result<web::PairResult> pair(const web::Caller& c, const std::string& peer,
                                 const std::string& transport_sha256) override;
    std::optional<web::PeerRoute> route_signing(const std::string& key_id) override;
    void forwarded(const web::Caller& c, const std::string& key_id, const web::PeerRoute& to,
                   int status) override;

    // First-run setup was completed on the peer (an active admin arrived through the pair's
    // catalog): the setup token stops working and its file is removed.
    void setup_completed_elsewhere();

private:
    // A request the paired appliance forwarded: believed only on a connection presenting the
    // peer's TLS certificate, and only for a client that is active here.
    Result<web::Caller> authenticate_forwarded(const web::Credentials& c);
    // Audits a failed authentication (durably for the first from an address in a minute) and
    // returns unauthenticated with `why`.
    Error authentication_failed(const web::Credentials& c, const std::string& why);
    // A key the caller may use for `operation` ("sign", "verify", "reserve", "read").
    Result<std::shared_ptr<const KeyRecord>> usable_key(const web::Caller& c, const std::string& id,
                                                        std::string_view operation);
    web::KeyDescription describe(const KeyRecord& k) const;
    // The key's nonce mode admits this request (policy_denied otherwise).
    Result<void> check_nonce_mode(const web::Caller& c, const KeyRecord& key,
                                  const web::SignParams& p);
    // Records a refusal by role, policy, rate limit or guard (a metric, and an audit record
    // aggregated per client, subject, reason and minute, so refusals cannot flood the log) and
    // returns `e`.
    Error refuse(const web::Caller& c, const std::string& subject, std::string_view reason,
                 Error e);
    // Runs `stage` and one audit record in one durable transaction.
    Result<void> commit_with_audit(const std::function<Result<void>(Db&)>& stage, AuditEntry audit);
    Result<void> audit_now(AuditEntry audit);
    std::string now() const;
    // Counts an event for the minute's aggregated audit records.
    void tally_event(const std::string& actor, const std::string& action,
                     const std::string& subject, const std::string& reason,
                     std::uint64_t count = 1);
    std::int64_t minute_now() const;
    void tally_loop();
    void count_hsm_error(const Error& e);
    // not_ready (503) until the HSM self-test has passed: DESIGN §2 says a daemon whose self-test
    // failed refuses to sign, and one whose self-test has not finished has not earned trust yet.
    Result<void> require_ready();
    // In a pair, after the HSM signed and before anything is released: the role still holds.
    Result<void> still_serving() const;

    ServiceDeps d_;
    ServiceOptions options_;
    RateLimiter limiter_;

    std::mutex setup_mu_;
    std::optional<Bytes> setup_token_hash_;  // guarded by setup_mu_

    std::atomic<bool> self_test_passed_{false};
    std::mutex health_mu_;
    std::string not_ready_reason_ = "HSM self-test has not run yet";  // guarded by health_mu_

    std::mutex reader_mu_;                 // serialises use of d_.reader
    std::optional<Bytes> audit_key_spki_;  // guarded by reader_mu_

    // (actor, action, subject, reason, minute) -> count of events not yet in the audit log:
    // plain signatures, refusals, repeated authentication failures.
    std::mutex tally_mu_;
    std::map<std::tuple<std::string, std::string, std::string, std::string, std::int64_t>,
             std::uint64_t>
        tally_;  // guarded by tally_mu_
    // (address, minute) whose first authentication failure was already audited durably.
    static constexpr std::size_t kMaxAuthFailureSources = 4096;
    std::set<std::pair<std::string, std::int64_t>> auth_failures_seen_;  // guarded by tally_mu_
    std::condition_variable tally_cv_;
    bool stopping_ = false;  // guarded by tally_mu_
    std::thread tally_thread_;

    web::Family<web::Counter>& signatures_;
    web::Family<web::Counter>& hsm_errors_;
    web::Family<web::Counter>& denials_;
};

}  // namespace signet::daemon
