// SigningService: authentication, readiness and the signing paths. Administration (keys, clients,
// audit, setup) is in service_admin.cpp.
#include "signing_service.hpp"

#include <openssl/crypto.h>

#include <algorithm>

#include "audit_log.hpp"
#include "credentials.hpp"
#include "signet/core/json.hpp"
#include "signet/pkcs11/digest.hpp"
#include "signet/pkcs11/error.hpp"
#include "signet/web/forwarder.hpp"

namespace signet::daemon {

using web::Caller;
using web::Role;

namespace {

constexpr std::string_view kEnvelopeTag = "signet.nonce.v1";

Error denied(Errc code, std::string why) { return make_error(code, std::move(why)); }

// The tally's reason for a request the paired appliance forwarded ("" when it came directly).
std::string via_note(const Caller& c) { return c.via.empty() ? "" : "via " + c.via; }

// {"request_id":..} with "via" when the paired appliance forwarded the request.
std::string request_details(const Caller& c) {
    std::string d = "{";
    if (!c.via.empty()) d += "\"via\":" + json_quote(c.via) + ",";
    return d + "\"request_id\":" + json_quote(c.request_id) + "}";
}

Result<pkcs11::SignRequest> to_sign_request(const KeyRecord& key, const web::SignParams& p) {
    pkcs11::SignRequest req;
    req.data = p.data;
    req.input = p.is_digest ? pkcs11::Input::digest : pkcs11::Input::message;
    const auto hash = pkcs11::parse_hash(p.hash);
    if (!hash)
        return denied(Errc::unprocessable, "unknown hash '" + p.hash + "' (sha256, keccak256)");
    const auto enc = pkcs11::parse_signature_encoding(p.encoding);
    if (!enc)
        return denied(Errc::unprocessable, "unknown encoding '" + p.encoding + "' (der, raw, eth)");
    const auto pad = pkcs11::parse_rsa_padding(p.rsa_padding);
    if (!pad) {
        return denied(Errc::unprocessable,
                      "unknown rsa_padding '" + p.rsa_padding + "' (pkcs1v15, pss)");
    }
    req.hash = *hash;
    req.encoding = *enc;
    req.rsa_padding = *pad;
    // Validation errors (digest length, unsupported combinations) are the client's: 422.
    if (auto v = pkcs11::prepare_sign_input(key.algorithm, req); !v) {
        return Error{make_error_code(v.error().is(Errc::invalid_argument) ? Errc::invalid_argument
                                                                          : Errc::unprocessable),
                     v.error().context};
    }
    return req;
}

// What the envelope binds: the client's digest, or the hash of its message.
Bytes payload_digest(const KeyRecord& key, const web::SignParams& p, pkcs11::Hash hash) {
    if (p.is_digest) return p.data;
    return pkcs11::digest(key.algorithm == pkcs11::Algorithm::ed25519 ? pkcs11::Hash::sha256 : hash,
                          p.data);
}

// envelope = "signet.nonce.v1" || 0x00 || key id (CKA_ID bytes) || u64be(nonce) || payload digest
Bytes nonce_envelope(const KeyRecord& key, std::uint64_t nonce, ByteView payload) {
    Bytes env(kEnvelopeTag.begin(), kEnvelopeTag.end());
    env.push_back(0);
    auto id_bytes = hex_decode(key.id);
    const Bytes id = id_bytes ? std::move(id_bytes).value() : Bytes{};
    env.insert(env.end(), id.begin(), id.end());
    for (int i = 7; i >= 0; --i) env.push_back(static_cast<std::uint8_t>(nonce >> (8 * i)));
    env.insert(env.end(), payload.begin(), payload.end());
    return env;
}

web::SignResult to_result(pkcs11::Signature&& s) {
    web::SignResult r;
    r.signature = std::move(s.bytes);
    r.signed_digest = std::move(s.digest);
    r.recovery_id = s.recovery_id;
    return r;
}

}  // namespace

SigningService::SigningService(ServiceDeps deps, ServiceOptions options)
    : d_(std::move(deps)),
      options_(std::move(options)),
      limiter_(d_.clock),
      setup_token_hash_(options_.setup_token_hash),
      signatures_(d_.metrics->counter("signet_signatures_total",
                                      "Signatures released, by key algorithm", {"algorithm"})),
      hsm_errors_(d_.metrics->counter("signet_hsm_errors_total",
                                      "HSM operations that failed, by CKR name", {"ckr"})),
      denials_(d_.metrics->counter("signet_denials_total",
                                   "Requests refused by authentication, role, policy or guards",
                                   {"reason"})) {
    tally_thread_ = std::thread([this] { tally_loop(); });
}

SigningService::~SigningService() {
    {
        const std::lock_guard lock(tally_mu_);
        stopping_ = true;
    }
    tally_cv_.notify_all();
    if (tally_thread_.joinable()) tally_thread_.join();
    flush_tally();
}

std::string SigningService::now() const { return format_rfc3339(d_.clock->wall()); }

void SigningService::set_self_test(const pkcs11::SelfTestReport& report) {
    const std::lock_guard lock(health_mu_);
    self_test_passed_ = report.passed();
    not_ready_reason_ = report.passed() ? "" : "HSM self-test failed: " + report.summary();
}

web::Health SigningService::health() {
    {
        const std::lock_guard lock(health_mu_);
        if (!self_test_passed_.load()) return web::Health{true, false, not_ready_reason_};
    }
    // Ready means "signs here now": a load balancer sends traffic to the active only. The probe
    // is unauthenticated, so it says only which kind of reason: the role's own message (the
    // active's address, etcd's error text) is for authenticated callers and the log.
    if (d_.pair) {
        if (auto r = d_.pair->may_sign(); !r) {
            const auto& code = r.error().code;
            std::string reason = "not signing now: the pair's role is not settled";
            if (code == make_error_code(ha::HaErrc::not_active)) {
                reason = "not the active appliance";
            } else if (code == make_error_code(ha::HaErrc::fenced) ||
                       code == make_error_code(ha::HaErrc::lease_not_found)) {
                reason = "the pair's lease cannot be proven";
            }
            return web::Health{true, false, std::move(reason)};
        }
    }
    return web::Health{true, true, {}};
}

Result<void> SigningService::audit_now(AuditEntry audit) {
    const std::string ts = now();
    return d_.committer->submit([&](Db& txn) -> Result<void> {
        SIGNET_TRY(AuditLog::append(txn, audit, ts));
        return ok();
    });
}

Result<void> SigningService::commit_with_audit(const std::function<Result<void>(Db&)>& stage,
                                               AuditEntry audit) {
    const std::string ts = now();
    return d_.committer->submit([&](Db& txn) -> Result<void> {
        if (stage) SIGNET_TRY(stage(txn));
        SIGNET_TRY(AuditLog::append(txn, audit, ts));
        return ok();
    });
}

Result<void> SigningService::still_serving() const {
    if (d_.pair) return d_.pair->may_sign();
    return ok();
}

Result<void> SigningService::require_ready() {
    if (!self_test_passed_.load()) {
        const std::lock_guard lock(health_mu_);
        denials_.with({"not_ready"}).inc();
        return denied(Errc::not_ready, "not signing: " + not_ready_reason_);
    }
    if (d_.pair) {
        if (auto r = d_.pair->may_sign(); !r) {
            denials_.with({"ha_role"}).inc();
            return r.error();
        }
    }
    return ok();
}

void SigningService::count_hsm_error(const Error& e) {
    const CK_RV rv = pkcs11::ckr_of(e);
    if (rv != CKR_OK) hsm_errors_.with({pkcs11::ckr_name(rv)}).inc();
}

Result<Caller> SigningService::authenticate(const web::Credentials& cred) {
    if (cred.forwarded_caller) return authenticate_forwarded(cred);
    std::optional<ClientRecord> client;
    std::string why;
    if (cred.token) {
        client = d_.catalog->client_by_token_hash(token_hash(*cred.token));
        if (!client) why = "unknown API token";
    }
    if (cred.cert_sha256 && !cred.token) {
        client = d_.catalog->client_by_cert(*cred.cert_sha256);
        if (!client) why = "client certificate is not registered";
    } else if (client && cred.cert_sha256) {
        // Both presented: they must not name two different clients.
        const auto by_cert = d_.catalog->client_by_cert(*cred.cert_sha256);
        const bool cert_elsewhere = by_cert && by_cert->id != client->id;
        const bool token_pinned_elsewhere =
            client->cert_sha256 && *client->cert_sha256 != *cred.cert_sha256;
        if (cert_elsewhere || token_pinned_elsewhere) {
            client.reset();
            why = "API token and client certificate belong to different clients";
        }
    }
    if (client && client->cert_sha256 && !cred.cert_sha256) {
        // A client registered with a certificate must present it: its token alone is not enough.
        client.reset();
        why = "this client must present its registered TLS client certificate";
    }
    if (!cred.token && !cred.cert_sha256) why = "no credentials (Authorization: Bearer sgt_...)";
    if (client && !client->active) {
        why = "client " + client->id + " is revoked";
        client.reset();
    }
    if (!client) return authentication_failed(cred, why);
    return Caller{client->id, client->name, client->role, cred.remote, cred.request_id, {}};
}

Error SigningService::authentication_failed(const web::Credentials& cred, const std::string& why) {
    denials_.with({"unauthenticated"}).inc();
    // Every authentication failure reaches the audit log. The first from an address in a
    // minute is durable before the response; the rest are counted and written with the
    // minute's tally, so a flood of bad tokens cannot force an fsync per request.
    const std::string ip = cred.remote.substr(0, cred.remote.rfind(':'));
    const std::string actor = "anonymous@" + ip;
    bool first = false;
    {
        const std::lock_guard lock(tally_mu_);
        first = auth_failures_seen_.size() < kMaxAuthFailureSources &&
                auth_failures_seen_.insert({ip, minute_now()}).second;
    }
    if (!first) {
        tally_event(actor, "auth.failure", "", why);
        return denied(Errc::unauthenticated, why);
    }
    auto audited = audit_now({actor, "auth.failure", "", "denied",
                              "{\"reason\":" + json_quote(why) +
                                  ",\"request_id\":" + json_quote(cred.request_id) + "}"});
    if (!audited) return audited.error().within("audit authentication failure");
    return denied(Errc::unauthenticated, why);
}

Result<std::shared_ptr<const KeyRecord>> SigningService::usable_key(const Caller& c,
                                                                    const std::string& id,
                                                                    std::string_view operation) {
    auto key = d_.catalog->key(id);
    if (!key) return denied(Errc::not_found, "no key '" + id + "'");
    const bool use = operation == "sign" || operation == "reserve";
    if (use && c.role != Role::signer) {
        return refuse(
            c, id, "forbidden",
            denied(Errc::forbidden, "role " + std::string(web::to_string(c.role)) + " may not " +
                                        std::string(operation) + "; use a signer client"));
    }
    if (c.role == Role::signer) {
        const auto& allowed = key->policy.clients;
        if (!allowed.empty() && std::ranges::find(allowed, c.client_id) == allowed.end()) {
            return refuse(c, id, "policy",
                          denied(Errc::policy_denied,
                                 "key " + id + "'s policy does not allow client " + c.client_id));
        }
        const auto& ops = key->policy.operations;
        if (operation != "read" && std::ranges::find(ops, operation) == ops.end()) {
            return refuse(c, id, "policy",
                          denied(Errc::policy_denied, "key " + id + "'s policy does not allow '" +
                                                          std::string(operation) + "'"));
        }
    }
    if (use && !key->active) return denied(Errc::key_disabled, "key " + id + " is disabled");
    return key;
}

Result<void> SigningService::check_nonce_mode(const Caller& c, const KeyRecord& key,
                                              const web::SignParams& p) {
    const std::string mode(web::to_string(key.policy.nonces));
    auto no = [&](std::string why) -> Result<void> {
        return refuse(
            c, key.id, "policy",
            denied(Errc::policy_denied, "key " + key.id + " (policy nonces: " + mode + ") " + why));
    };
    switch (key.policy.nonces) {
        case web::NonceMode::none:
            if (p.assign_nonce || p.reserved_nonce) return no("signs without nonces");
            break;
        case web::NonceMode::envelope:
            // Anything but an appliance-built envelope could be a client's forgery of one.
            if (!p.assign_nonce) return no("signs only nonce envelopes: send \"nonce\": true");
            break;
        case web::NonceMode::reserved:
            if (!p.reserved_nonce) {
                return no("signs only with a reserved nonce (POST /v1/keys/" + key.id + "/nonces)");
            }
            break;
    }
    return ok();
}

Error SigningService::refuse(const Caller& c, const std::string& subject, std::string_view reason,
                             Error e) {
    denials_.with({std::string(reason)}).inc();
    tally_event(c.client_id, "access.denied", subject, std::string(reason) + ": " + e.message());
    return e;
}

Result<web::SignResult> SigningService::sign(const Caller& c, const std::string& key_id,
                                             const web::SignParams& p) {
    const auto key = SIGNET_TRY(usable_key(c, key_id, "sign"));
    // Nothing is signed before (or despite a failed) start-up self-test.
    SIGNET_TRY(require_ready());
    if (d_.replica) SIGNET_TRY(d_.replica->check_held(*key));
    if (p.assign_nonce && p.reserved_nonce) {
        return denied(Errc::bad_request,
                      "send either \"nonce\": true or \"reserved_nonce\", not both");
    }
    SIGNET_TRY(check_nonce_mode(c, *key, p));
    if (key->policy.watermark_required && !p.watermark) {
        return refuse(c, key_id, "policy",
                      denied(Errc::policy_denied,
                             "key " + key_id + " requires a watermark on every signature"));
    }
    // Validate before charging the rate limit: a malformed request costs the key nothing.
    pkcs11::SignRequest req = SIGNET_TRY(to_sign_request(*key, p));
    if (!limiter_.try_acquire(key_id, key->policy.rate_limit)) {
        return refuse(c, key_id, "rate_limited",
                      denied(Errc::rate_limited, "key " + key_id + " is over its rate limit"));
    }

    std::unique_ptr<WatermarkLease> lease;
    if (p.watermark) {
        // "The same payload" means the same bytes in the HSM: the prepared digest (or the Ed25519
        // message), not the client's encoding of it. An envelope embeds a fresh nonce, so an equal
        // watermark can never be signed again with "nonce": true.
        const Bytes tbs = SIGNET_TRY(pkcs11::prepare_sign_input(key->algorithm, req));
        auto l = d_.watermarks->begin(key_id, *p.watermark, pkcs11::sha256(tbs),
                                      /*allow_equal=*/!p.assign_nonce);
        if (!l) return refuse(c, key_id, "watermark", l.error());
        lease = std::move(l).value();
    }
    std::unique_ptr<ReservationClaim> claim;
    if (p.reserved_nonce)
        claim = SIGNET_TRY(d_.nonces->claim(key_id, *p.reserved_nonce, c.client_id));
    std::optional<NonceTicket> ticket;
    Bytes envelope;
    if (p.assign_nonce) {
        ticket = SIGNET_TRY(d_.nonces->next(key_id));
        envelope = nonce_envelope(*key, ticket->value, payload_digest(*key, p, req.hash));
        req.data = envelope;
        req.input = pkcs11::Input::message;
    }

    auto sig = d_.keys->sign(key_id, req);
    if (!sig) {
        count_hsm_error(sig.error());
        if (ticket) d_.nonces->burn(*ticket, "signing failed: " + sig.error().message());
        return sig.error().within("sign with key " + key_id);
    }
    web::SignResult out = to_result(std::move(sig).value());
    if (ticket) {
        out.nonce = ticket->value;
        out.envelope = std::move(envelope);
    }
    if (claim) out.nonce = claim->value();

    if (!ticket && !claim && !lease) {
        // The HSM call may have outlived the pair role: release nothing signed after losing it.
        SIGNET_TRY(still_serving());
        tally_event(c.client_id, "sign.plain", key_id, via_note(c));
        signatures_.with({std::string(pkcs11::to_string(key->algorithm))}).inc();
        return out;
    }
    // G2: the nonce / reservation / watermark and the audit record are durable before release.
    std::string details = "{\"digest\":\"" + hex_encode(out.signed_digest) + "\"";
    if (out.nonce) details += ",\"nonce\":" + std::to_string(*out.nonce);
    if (claim) details += ",\"reserved\":true";
    if (lease) details += ",\"watermark\":" + to_string(lease->watermark());
    details += "," + request_details(c).substr(1);
    const std::string action = lease ? "sign.watermark" : "sign.nonce";
    auto committed = commit_with_audit(
        [&](Db& txn) -> Result<void> {
            SIGNET_TRY(still_serving());  // rolls back: a nonce is burnt, the signature withheld
            if (ticket) SIGNET_TRY(d_.nonces->stage_release(txn, *ticket));
            if (claim) SIGNET_TRY(d_.nonces->stage_consume(txn, *claim));
            if (lease) SIGNET_TRY(d_.watermarks->stage(txn, *lease));
            return ok();
        },
        {c.client_id, action, key_id, "ok", details});
    if (ticket) d_.nonces->finish(*ticket, committed.has_value());
    if (!committed) return committed.error().within("make the signature's record durable");
    if (claim) claim->consumed();
    if (lease) lease->committed();
    signatures_.with({std::string(pkcs11::to_string(key->algorithm))}).inc();
    return out;
}

Result<std::vector<web::SignResult>> SigningService::sign_batch(const Caller& c,
                                                                const std::string& key_id,
                                                                const std::vector<Bytes>& digests,
                                                                const web::SignParams& options) {
    const auto key = SIGNET_TRY(usable_key(c, key_id, "sign"));
    SIGNET_TRY(require_ready());
    if (d_.replica) SIGNET_TRY(d_.replica->check_held(*key));
    if (key->policy.nonces != web::NonceMode::none || key->policy.watermark_required) {
        return refuse(c, key_id, "policy",
                      denied(Errc::policy_denied, "key " + key_id +
                                                      " signs only with nonces or watermarks; "
                                                      "batch signing carries neither"));
    }
    if (options.assign_nonce || options.reserved_nonce || options.watermark) {
        return denied(Errc::unprocessable, "batch signing does not take nonces or watermarks");
    }
    if (digests.empty()) return denied(Errc::bad_request, "digests must not be empty");
    if (digests.size() > options_.batch_max) {
        return denied(Errc::payload_too_large,
                      std::to_string(digests.size()) + " digests; at most " +
                          std::to_string(options_.batch_max) + " per batch");
    }
    const auto& rl = key->policy.rate_limit;
    const double burst = rl.burst > 0 ? rl.burst : std::max(1.0, rl.per_second);
    if (rl.per_second > 0 && static_cast<double>(digests.size()) > burst) {
        // Such a batch could never pass the bucket: say so instead of a 429 forever.
        return denied(Errc::payload_too_large,
                      std::to_string(digests.size()) + " digests exceed key " + key_id +
                          "'s rate-limit burst of " + std::to_string(static_cast<long>(burst)));
    }
    if (!limiter_.try_acquire(key_id, key->policy.rate_limit,
                              static_cast<double>(digests.size()))) {
        return refuse(c, key_id, "rate_limited",
                      denied(Errc::rate_limited, "key " + key_id + " is over its rate limit"));
    }
    std::vector<web::SignResult> out;
    out.reserve(digests.size());
    web::SignParams one = options;
    one.is_digest = true;
    for (std::size_t i = 0; i < digests.size(); ++i) {
        one.data = digests[i];
        auto req = to_sign_request(*key, one);
        if (!req) return req.error().within("digest " + std::to_string(i));
        auto sig = d_.keys->sign(key_id, *req);
        if (!sig) {
            count_hsm_error(sig.error());
            return sig.error().within("sign digest " + std::to_string(i) + " with key " + key_id);
        }
        out.push_back(to_result(std::move(sig).value()));
    }
    SIGNET_TRY(still_serving());
    tally_event(c.client_id, "sign.plain", key_id, via_note(c), out.size());
    signatures_.with({std::string(pkcs11::to_string(key->algorithm))}).inc(out.size());
    return out;
}

Result<bool> SigningService::verify(const Caller& c, const std::string& key_id,
                                    const web::SignParams& p, const Bytes& signature) {
    const auto key = SIGNET_TRY(usable_key(c, key_id, "verify"));
    pkcs11::SignRequest req = SIGNET_TRY(to_sign_request(*key, p));
    return pkcs11::verify_signature(key->algorithm, key->spki, req, signature);
}

Result<std::uint64_t> SigningService::reserve_nonce(const Caller& c, const std::string& key_id) {
    const auto key = SIGNET_TRY(usable_key(c, key_id, "reserve"));
    if (key->policy.nonces != web::NonceMode::reserved) {
        return refuse(c, key_id, "policy",
                      denied(Errc::policy_denied,
                             "key " + key_id + " does not use reserved nonces (policy nonces: " +
                                 std::string(web::to_string(key->policy.nonces)) + ")"));
    }
    SIGNET_TRY(require_ready());  // a reserved nonce is only useful to sign with
    if (d_.replica) SIGNET_TRY(d_.replica->check_held(*key));
    if (!limiter_.try_acquire(key_id, key->policy.rate_limit)) {
        return refuse(c, key_id, "rate_limited",
                      denied(Errc::rate_limited, "key " + key_id + " is over its rate limit"));
    }
    return d_.nonces->reserve(key_id, c.client_id,
                              {c.client_id, "nonce.reserve", key_id, "ok", request_details(c)});
}

Result<web::CounterState> SigningService::counter(const Caller& c, const std::string& key_id) {
    SIGNET_TRY(usable_key(c, key_id, "read"));
    return d_.nonces->state(key_id);
}

std::int64_t SigningService::minute_now() const {
    return std::chrono::duration_cast<std::chrono::minutes>(d_.clock->wall().time_since_epoch())
        .count();
}

void SigningService::tally_event(const std::string& actor, const std::string& action,
                                 const std::string& subject, const std::string& reason,
                                 std::uint64_t count) {
    const std::int64_t minute = minute_now();
    const std::lock_guard lock(tally_mu_);
    tally_[{actor, action, subject, reason, minute}] += count;
}

void SigningService::flush_tally() {
    decltype(tally_) pending;
    {
        const std::lock_guard lock(tally_mu_);
        pending.swap(tally_);
        const std::int64_t minute = minute_now();
        std::erase_if(auth_failures_seen_, [&](const auto& k) { return k.second < minute; });
    }
    if (pending.empty()) return;
    const std::string ts = now();
    auto r = d_.committer->submit([&](Db& txn) -> Result<void> {
        for (const auto& [k, count] : pending) {
            const auto& [actor, action, subject, reason, minute] = k;
            const auto start = std::chrono::system_clock::time_point(std::chrono::minutes(minute));
            std::string details = "{\"count\":" + std::to_string(count) +
                                  ",\"minute\":" + json_quote(format_rfc3339(start));
            if (!reason.empty()) details += ",\"reason\":" + json_quote(reason);
            details += "}";
            SIGNET_TRY(AuditLog::append(
                txn, {actor, action, subject, action == "sign.plain" ? "ok" : "denied", details},
                ts));
        }
        return ok();
    });
    if (!r) {
        d_.logger->log(LogLevel::error, "service", "tally_flush_failed",
                       {{"error", r.error().message()}, {"records", pending.size()}});
        // Nothing is dropped: the counts go back and are written with the next flush.
        const std::lock_guard lock(tally_mu_);
        for (auto& [k, count] : pending) tally_[k] += count;
    }
}

void SigningService::tally_loop() {
    std::unique_lock lock(tally_mu_);
    while (!stopping_) {
        tally_cv_.wait_for(lock, options_.tally_flush_interval, [&] { return stopping_; });
        if (stopping_) break;
        lock.unlock();
        flush_tally();
        lock.lock();
    }
}

}  // namespace signet::daemon
