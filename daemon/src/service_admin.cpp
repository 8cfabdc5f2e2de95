// SigningService: first-run setup, keys, clients and the audit log.
#include <openssl/crypto.h>

#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cctype>

#include "audit_checkpointer.hpp"
#include "audit_log.hpp"
#include "credentials.hpp"
#include "signet/core/json.hpp"
#include "signet/pkcs11/public_key.hpp"
#include "signet/web/json_codec.hpp"
#include "signing_service.hpp"

namespace signet::daemon {

using web::Caller;
using web::Role;

namespace {

Error denied(Errc code, std::string why) { return make_error(code, std::move(why)); }

Result<void> require_role(const Caller& c, std::initializer_list<Role> roles,
                          std::string_view what) {
    if (std::ranges::find(roles, c.role) != roles.end()) return ok();
    return denied(Errc::forbidden,
                  "role " + std::string(web::to_string(c.role)) + " may not " + std::string(what));
}

Result<void> check_name(std::string_view name, std::string_view what) {
    if (name.empty() || name.size() > 128) {
        return denied(Errc::invalid_argument, std::string(what) + " must be 1 to 128 characters");
    }
    for (const char ch : name) {
        if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) {
            return denied(Errc::invalid_argument,
                          std::string(what) + " must not contain control characters");
        }
    }
    return ok();
}

// Lower-case 64-digit hex; colons (as printed by `openssl x509 -fingerprint`) are dropped.
Result<std::string> normalise_fingerprint(std::string_view in) {
    std::string out;
    for (const char ch : in) {
        if (ch == ':') continue;
        out += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    }
    if (out.size() != 64 || !hex_decode(out)) {
        return denied(Errc::invalid_argument,
                      "cert_sha256 must be a SHA-256 fingerprint (64 hex digits)");
    }
    return out;
}

web::ClientDescription describe_client(const ClientRecord& r) {
    return {r.id, r.name, r.role, r.active ? "active" : "revoked", r.created_at, r.cert_sha256};
}

// In a pair, a catalog change is published to etcd before it is committed locally: this takes the
// pair's write lock (one change at a time with the apply path) and refuses where changes may not
// be made now (a hot standby: the error names the active). Standalone: an empty lock.
Result<std::unique_lock<std::mutex>> begin_change(PairCatalog* replica) {
    if (!replica) return std::unique_lock<std::mutex>{};
    auto lock = replica->write_lock();
    SIGNET_TRY(replica->may_write());
    return lock;
}

}  // namespace

web::KeyDescription SigningService::describe(const KeyRecord& k) const {
    web::KeyDescription d;
    d.id = k.id;
    d.label = k.label;
    d.algorithm = pkcs11::to_string(k.algorithm);
    d.key_class = pkcs11::to_string(k.key_class);
    d.state = k.active ? "active" : "disabled";
    d.created_at = k.created_at;
    d.public_key_pem = pkcs11::spki_to_pem(k.spki);
    if (auto jwk = pkcs11::spki_to_jwk(k.algorithm, k.spki)) d.jwk_json = jwk->to_json();
    if (k.algorithm == pkcs11::Algorithm::ecdsa_secp256k1) {
        if (auto addr = pkcs11::ethereum_address(k.spki)) d.ethereum_address = *addr;
    }
    d.policy = k.policy;
    if (d_.replica) d.holders = d_.replica->holders(k);
    return d;
}

Result<web::NewClient> SigningService::complete_setup(const std::string& setup_token,
                                                      const std::string& admin_name,
                                                      const web::Credentials& cred) {
    SIGNET_TRY(check_name(admin_name, "name"));
    // Lock order: the pair's write lock before setup_mu_ (the apply path holds the former when it
    // calls setup_completed_elsewhere()).
    std::unique_lock<std::mutex> change;
    if (d_.replica) change = d_.replica->write_lock();
    const std::lock_guard lock(setup_mu_);
    if (d_.replica && d_.catalog->has_active_admin()) {
        return denied(Errc::conflict, "setup is already complete (done on the peer)");
    }
    if (!setup_token_hash_) return denied(Errc::conflict, "setup is already complete");
    const Bytes presented = token_hash(setup_token);
    if (CRYPTO_memcmp(presented.data(), setup_token_hash_->data(), presented.size()) != 0) {
        SIGNET_TRY(audit_now({"anonymous@" + cred.remote, "auth.failure", "setup", "denied",
                              R"({"reason":"wrong setup token"})"}));
        return denied(Errc::unauthenticated, "wrong setup token");
    }
    web::NewClient out;
    out.token = new_token(kApiTokenPrefix);
    ClientRecord rec{new_id("cl_"), admin_name, Role::admin, token_hash(out.token),
                     std::nullopt,  true,       now(),       std::nullopt};
    if (d_.replica) {
        SIGNET_TRY(d_.replica->may_write());
        SIGNET_TRY(d_.replica->publish_setup(rec));
    }
    SIGNET_TRY(commit_with_audit(
        [&](Db& txn) -> Result<void> {
            SIGNET_TRY(Catalog::stage_put_client(txn, rec));
            auto del = SIGNET_TRY(txn.cached("DELETE FROM meta WHERE name = 'setup_token_hash'"));
            return del->run();
        },
        {"setup", "setup.complete", rec.id, "ok", "{\"admin\":" + json_quote(admin_name) + "}"}));
    setup_token_hash_.reset();
    if (!options_.setup_token_file.empty()) {
        std::error_code ec;  // best effort: the token is already useless
        std::filesystem::remove(options_.setup_token_file, ec);
    }
    out.client = describe_client(rec);
    d_.catalog->apply_put_client(std::move(rec));
    return out;
}

Result<web::KeyDescription> SigningService::create_key(const Caller& c,
                                                       const web::CreateKeyParams& p) {
    SIGNET_TRY(require_role(c, {Role::admin}, "create keys"));
    const auto alg = pkcs11::parse_algorithm(p.algorithm);
    if (!alg) {
        return denied(Errc::unprocessable,
                      "unknown algorithm '" + p.algorithm +
                          "' (ecdsa-p256, ecdsa-secp256k1, ed25519, rsa-2048, rsa-3072)");
    }
    SIGNET_TRY(check_name(p.label, "label"));
    if (p.replicable && *alg == pkcs11::Algorithm::ed25519) {
        return denied(
            Errc::not_replicable,
            "ed25519 keys are not replicable on this HSM (it cannot wrap them); create it "
            "with \"replicable\": false");
    }
    for (const auto& id : p.policy.clients) {
        if (!d_.catalog->client(id))
            return denied(Errc::unprocessable, "policy names unknown client '" + id + "'");
    }
    // Checked before the HSM generates anything: a standby must not make keys the pair never sees.
    if (d_.replica) SIGNET_TRY(d_.replica->may_write());
    const auto info = d_.keys->generate(
        {*alg, p.replicable ? pkcs11::KeyClass::replicable : pkcs11::KeyClass::local, p.label,
         std::nullopt});
    if (!info) {
        count_hsm_error(info.error());
        return info.error().within("generate key in the HSM");
    }
    KeyRecord rec{info->id, p.label,     *alg,           info->key_class, true,
                  now(),    c.client_id, info->spki_der, p.policy,        {}};
    std::unique_lock<std::mutex> change;
    if (d_.replica) {
        rec.holder = d_.replica->name();
        change = d_.replica->write_lock();
        // Wrapped at creation once the peer holds this appliance's KEK, so the peer's HSM gets
        // the key without another ceremony.
        auto published = [&]() -> Result<void> {
            auto wrapped = SIGNET_TRY(d_.replica->pairing().wrap(rec));
            return d_.replica->publish_key(std::nullopt, rec, std::move(wrapped));
        }();
        if (!published) {
            (void)d_.keys->destroy(rec.id);  // the pair never learnt of it
            return published.error();
        }
    }
    auto r = commit_with_audit(
        [&](Db& txn) { return Catalog::stage_put_key(txn, rec); },
        {c.client_id, "key.create", rec.id, "ok",
         "{\"algorithm\":" + json_quote(p.algorithm) + ",\"label\":" + json_quote(p.label) +
             ",\"class\":\"" + std::string(pkcs11::to_string(rec.key_class)) + "\"}"});
    if (!r) {
        // Never leave a key the store does not know about, nor a record the pair cannot use.
        if (d_.replica) (void)d_.replica->publish_destroyed(rec);
        (void)d_.keys->destroy(rec.id);
        return r.error();
    }
    d_.catalog->apply_put_key(rec);
    return describe(rec);
}

Result<std::vector<web::KeyDescription>> SigningService::list_keys(const Caller& c) {
    std::vector<web::KeyDescription> out;
    for (const auto& k : d_.catalog->keys()) {
        if (c.role == Role::signer && !k->policy.clients.empty() &&
            std::ranges::find(k->policy.clients, c.client_id) == k->policy.clients.end()) {
            continue;
        }
        out.push_back(describe(*k));
    }
    return out;
}

Result<web::KeyDescription> SigningService::get_key(const Caller& c, const std::string& id) {
    const auto key = SIGNET_TRY(usable_key(c, id, "read"));
    return describe(*key);
}

Result<web::KeyDescription> SigningService::disable_key(const Caller& c, const std::string& id) {
    SIGNET_TRY(require_role(c, {Role::admin}, "disable keys"));
    auto change = SIGNET_TRY(begin_change(d_.replica.get()));
    const auto key = d_.catalog->key(id);
    if (!key) return denied(Errc::not_found, "no key '" + id + "'");
    KeyRecord rec = *key;
    rec.active = false;
    if (d_.replica) SIGNET_TRY(d_.replica->publish_key(*key, rec));
    SIGNET_TRY(commit_with_audit([&](Db& txn) { return Catalog::stage_put_key(txn, rec); },
                                 {c.client_id, "key.disable", id, "ok", "{}"}));
    d_.catalog->apply_put_key(rec);
    return describe(rec);
}

Result<web::KeyDescription> SigningService::set_policy(const Caller& c, const std::string& id,
                                                       const web::KeyPolicy& p) {
    SIGNET_TRY(require_role(c, {Role::admin}, "change key policies"));
    auto change = SIGNET_TRY(begin_change(d_.replica.get()));
    const auto key = d_.catalog->key(id);
    if (!key) return denied(Errc::not_found, "no key '" + id + "'");
    if (p.nonces != key->policy.nonces) {
        // A key's nonce guarantee depends on it never having signed anything else.
        return denied(Errc::conflict, "a key's nonce mode is fixed when it is created (key " + id +
                                          " uses \"" +
                                          std::string(web::to_string(key->policy.nonces)) + "\")");
    }
    for (const auto& cid : p.clients) {
        if (!d_.catalog->client(cid)) {
            return denied(Errc::unprocessable, "policy names unknown client '" + cid + "'");
        }
    }
    KeyRecord rec = *key;
    rec.policy = p;
    if (d_.replica) SIGNET_TRY(d_.replica->publish_key(*key, rec));
    SIGNET_TRY(commit_with_audit(
        [&](Db& txn) { return Catalog::stage_put_key(txn, rec); },
        {c.client_id, "key.policy", id, "ok",
         "{\"before\":" + boost::json::serialize(web::policy_to_json(key->policy)) +
             ",\"after\":" + boost::json::serialize(web::policy_to_json(p)) + "}"}));
    d_.catalog->apply_put_key(rec);
    return describe(rec);
}

Result<void> SigningService::destroy_key(const Caller& c, const std::string& id) {
    SIGNET_TRY(require_role(c, {Role::admin}, "destroy keys"));
    auto change = SIGNET_TRY(begin_change(d_.replica.get()));
    const auto key = d_.catalog->key(id);
    if (!key) return denied(Errc::not_found, "no key '" + id + "'");
    // The pair first: once etcd has the tombstone, the peer destroys its copy too.
    if (d_.replica) SIGNET_TRY(d_.replica->publish_destroyed(*key));
    // Store first: a failure after this leaves an unreachable HSM object, never a store entry
    // pointing at a key that no longer exists.
    SIGNET_TRY(commit_with_audit([&](Db& txn) { return Catalog::stage_delete_key(txn, id); },
                                 {c.client_id, "key.destroy", id, "ok", "{}"}));
    d_.catalog->apply_delete_key(id);
    d_.nonces->forget(id);
    limiter_.forget(id);
    if (auto r = d_.keys->destroy(id); !r) {
        d_.logger->log(LogLevel::error, "service", "hsm_destroy_failed",
                       {{"key", id}, {"error", r.error().message()}});
        d_.committer->post([this, id, msg = r.error().message(),
                            ts = now()](Db& txn) -> Result<void> {
            SIGNET_TRY(AuditLog::append(
                txn,
                {"system", "key.destroy_hsm", id, "failed", "{\"error\":" + json_quote(msg) + "}"},
                ts));
            return ok();
        });
    }
    return ok();
}

Result<web::NewClient> SigningService::create_client(
    const Caller& c, const std::string& name, Role role,
    const std::optional<std::string>& cert_sha256) {
    SIGNET_TRY(require_role(c, {Role::admin}, "create clients"));
    SIGNET_TRY(check_name(name, "name"));
    std::optional<std::string> fp;
    if (cert_sha256) {
        fp = SIGNET_TRY(normalise_fingerprint(*cert_sha256));
        if (d_.catalog->client_by_cert(*fp)) {
            return denied(Errc::already_exists, "that certificate is already mapped to a client");
        }
    }
    web::NewClient out;
    out.token = new_token(kApiTokenPrefix);
    ClientRecord rec{new_id("cl_"), name,  role,        token_hash(out.token), fp,
                     true,          now(), std::nullopt};
    auto change = SIGNET_TRY(begin_change(d_.replica.get()));
    if (d_.replica) SIGNET_TRY(d_.replica->publish_client(std::nullopt, rec));
    SIGNET_TRY(commit_with_audit([&](Db& txn) { return Catalog::stage_put_client(txn, rec); },
                                 {c.client_id, "client.create", rec.id, "ok",
                                  "{\"name\":" + json_quote(name) + ",\"role\":\"" +
                                      std::string(web::to_string(role)) + "\"}"}));
    out.client = describe_client(rec);
    d_.catalog->apply_put_client(std::move(rec));
    return out;
}

Result<std::vector<web::ClientDescription>> SigningService::list_clients(const Caller& c) {
    SIGNET_TRY(require_role(c, {Role::admin, Role::auditor}, "list clients"));
    std::vector<web::ClientDescription> out;
    for (const auto& r : d_.catalog->clients()) out.push_back(describe_client(r));
    return out;
}

Result<void> SigningService::revoke_client(const Caller& c, const std::string& id) {
    SIGNET_TRY(require_role(c, {Role::admin}, "revoke clients"));
    auto change = SIGNET_TRY(begin_change(d_.replica.get()));
    const auto before = d_.catalog->client(id);
    if (!before) return denied(Errc::not_found, "no client '" + id + "'");
    if (!before->active) return ok();
    // Checked here first, because in a pair etcd has the revocation before the store's own check
    // below runs; the pair's publish checks the other admins again in etcd, where both
    // appliances' revocations meet.
    if (Catalog::is_active_admin(*before) && d_.catalog->other_active_admins(id) == 0) {
        return denied(Errc::conflict, "cannot revoke the last active admin");
    }
    auto rec = before;
    rec->active = false;
    rec->revoked_at = now();
    if (d_.replica) SIGNET_TRY(d_.replica->publish_client(before, *rec));
    SIGNET_TRY(commit_with_audit(
        [&](Db& txn) -> Result<void> {
            SIGNET_TRY(Catalog::stage_put_client(txn, *rec));
            // Inside the writer's transaction: two admins revoking each other at once on one
            // appliance cannot both pass it.
            if (rec->role != Role::admin) return ok();
            return Catalog::stage_check_active_admin(txn);
        },
        {c.client_id, "client.revoke", id, "ok", "{}"}));
    d_.catalog->apply_put_client(std::move(*rec));
    return ok();
}

Result<std::vector<web::AuditRecord>> SigningService::audit_tail(const Caller& c,
                                                                 std::uint64_t after_seq,
                                                                 std::size_t limit) {
    SIGNET_TRY(require_role(c, {Role::admin, Role::auditor}, "read the audit log"));
    const std::lock_guard lock(reader_mu_);
    return AuditLog::tail(*d_.reader, after_seq, std::clamp<std::size_t>(limit, 1, 1000));
}

Result<web::AuditVerification> SigningService::audit_verify(const Caller& c) {
    SIGNET_TRY(require_role(c, {Role::admin, Role::auditor}, "verify the audit log"));
    AuditLog::VerifyOptions o;
    {
        const std::lock_guard lock(reader_mu_);
        o.pinned_spki = audit_key_spki_;
    }
    if (o.pinned_spki) {
        // The newest checkpoint as the HSM recorded it: a database writer cannot roll it back.
        auto anchor = d_.keys->read_internal_data(kAuditAnchorName);
        if (!anchor) return anchor.error().within("read the audit anchor from the HSM");
        o.anchor = parse_audit_anchor(*anchor);
        o.anchor_from_hsm = true;
    }
    const std::lock_guard lock(reader_mu_);
    return AuditLog::verify(*d_.reader, o);
}

void SigningService::set_audit_key(Bytes spki) {
    const std::lock_guard lock(reader_mu_);
    audit_key_spki_ = std::move(spki);
}

Result<web::HaStatus> SigningService::ha_status(const Caller& c) {
    SIGNET_TRY(require_role(c, {Role::admin, Role::auditor}, "read the HA status"));
    if (!d_.pair) return web::HaStatus{};
    web::HaStatus h = d_.pair->status(true);
    if (d_.replica) {
        h.transport_sha256 = d_.replica->pairing().transport_sha256();
        h.kek_to = d_.replica->pairing().exported_to();
        h.kek_from = d_.replica->pairing().imported_from();
    }
    return h;
}

Result<web::PairResult> SigningService::pair(const Caller& c, const std::string& peer,
                                             const std::string& transport_sha256) {
    SIGNET_TRY(require_role(c, {Role::admin}, "pair appliances"));
    if (!d_.replica) {
        return denied(Errc::conflict,
                      "this appliance is standalone: configure [ha] before pairing HSMs");
    }
    return d_.replica->pair_with(c.client_id, peer, transport_sha256);
}

void SigningService::setup_completed_elsewhere() {
    const std::lock_guard lock(setup_mu_);
    if (!setup_token_hash_) return;
    setup_token_hash_.reset();
    if (!options_.setup_token_file.empty()) {
        std::error_code ec;  // best effort: the token is already useless
        std::filesystem::remove(options_.setup_token_file, ec);
    }
    d_.logger->log(LogLevel::info, "service", "setup_complete_on_peer",
                   {{"setup_token", "revoked"}});
}

}  // namespace signet::daemon
