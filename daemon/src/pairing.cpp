#include "pairing.hpp"

#include <algorithm>
#include <cctype>

#include "audit_log.hpp"
#include "signet/core/json.hpp"
#include "signet/core/secret_buffer.hpp"
#include "signet/pkcs11/digest.hpp"
#include "signet/pkcs11/replication.hpp"

namespace signet::daemon {
namespace {

// The HSM object that names the transport key pair: it sits on the same token as the key, so a
// store restored from a backup can never point at another token's transport key.
constexpr std::string_view kTransportPointer = "signet.transport.id";
constexpr std::string_view kTransportLabel = "signet.transport";

std::string kek_label(const std::string& sender, const std::string& receiver) {
    return "signet.kek." + sender + "." + receiver;
}

// Lower-case 64-digit hex; colons (aa:bb:..) and spaces are dropped.
Result<std::string> normalise_sha256(std::string_view in) {
    std::string out;
    for (const char ch : in) {
        if (ch == ':' || ch == ' ') continue;
        out += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    }
    if (out.size() != 64 || !hex_decode(out)) {
        return make_error(Errc::invalid_argument,
                          "transport_sha256 must be a SHA-256 fingerprint (64 hex digits)");
    }
    return out;
}

Result<void> put_meta(Db& txn, const std::string& name, const std::string& value) {
    auto st = SIGNET_TRY(
        txn.cached("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET "
                   "value = excluded.value"));
    st->bind(1, name).bind(2, value);
    return st->run();
}

}  // namespace

Pairing::Pairing(PairingDeps deps) : d_(std::move(deps)) {}

const std::string& Pairing::name() const noexcept { return d_.pair->name(); }
const std::string& Pairing::transport_sha256() const noexcept { return transport_sha256_; }

Result<std::shared_ptr<Pairing>> Pairing::start(PairingDeps deps) {
    std::shared_ptr<Pairing> p(new Pairing(std::move(deps)));
    pkcs11::KeyStore& keys = *p->d_.keys;
    const auto pointer = SIGNET_TRY(keys.read_internal_data(kTransportPointer));
    std::optional<pkcs11::KeyInfo> info;
    if (pointer) {
        auto found = keys.get(std::string(pointer->begin(), pointer->end()));
        if (found) {
            info = std::move(found).value();
        } else if (!found.error().is(Errc::not_found)) {
            return found.error().within("find the transport key");
        }
    }
    bool created = false;
    if (!info) {
        info = SIGNET_TRY(pkcs11::generate_transport_key(keys, std::string(kTransportLabel)));
        SIGNET_TRY(keys.write_internal_data(kTransportPointer, as_bytes(info->id)));
        created = true;
    }
    p->transport_id_ = info->id;
    p->transport_spki_ = info->spki_der;
    p->transport_sha256_ = hex_encode(pkcs11::sha256(info->spki_der));
    if (created) {
        const std::string sha = p->transport_sha256_;
        SIGNET_TRY(p->d_.committer->submit([&](Db& txn) -> Result<void> {
            SIGNET_TRY(AuditLog::append(txn,
                                        {"system", "ha.transport_key_created", info->id, "ok",
                                         "{\"spki_sha256\":\"" + sha + "\"}"},
                                        format_rfc3339(p->d_.clock->wall())));
            return ok();
        }));
    }
    // KEK directions survive restarts in the meta table.
    std::map<std::string, std::string> out, in;
    SIGNET_TRY(p->d_.committer->submit([&](Db& txn) -> Result<void> {
        auto st =
            SIGNET_TRY(txn.prepare("SELECT name, value FROM meta WHERE name LIKE 'pair.kek_%'"));
        while (SIGNET_TRY(st.step())) {
            const std::string n = st.text(0);
            if (n.starts_with("pair.kek_out.")) out[n.substr(13)] = st.text(1);
            if (n.starts_with("pair.kek_in.")) in[n.substr(12)] = st.text(1);
        }
        return ok();
    }));
    {
        const std::lock_guard lock(p->mu_);
        p->out_ = std::move(out);
        p->in_ = std::move(in);
    }
    p->d_.logger->log(LogLevel::info, "pairing", "transport_key",
                      {{"spki_sha256", p->transport_sha256_},
                       {"created", created ? "yes" : "no"},
                       {"name", p->name()}});
    return p;
}

Result<void> Pairing::publish_transport() {
    const std::string key = d_.pair->prefix() + "pairing/transport/" + name();
    const std::string value = encode_transport(transport_spki_);
    const auto current = SIGNET_TRY(d_.pair->coordinator()->range(key, {}, d_.timeout));
    if (!current.kvs.empty() && current.kvs.front().value == value) return ok();
    ha::TxnRequest t;
    t.success.push_back(ha::Op::put(key, value));
    SIGNET_TRY(d_.pair->coordinator()->txn(t, d_.timeout));
    return ok();
}

Result<PairingResult> Pairing::export_to(const std::string& peer,
                                         const std::string& transport_sha256,
                                         const std::string& actor) {
    bool audited = false;
    auto r = export_unaudited(peer, transport_sha256, actor, audited);
    if (r || audited) return r;
    // Every attempt of a crypto-officer action is audited, including the ones that failed.
    auto a = d_.committer->submit([&](Db& txn) -> Result<void> {
        SIGNET_TRY(AuditLog::append(txn,
                                    {actor, "ha.pair", peer, "failed",
                                     "{\"error\":" + json_quote(r.error().message()) + "}"},
                                    format_rfc3339(d_.clock->wall())));
        return ok();
    });
    if (!a) return a.error().within("audit the failed pairing");
    return r;
}

Result<PairingResult> Pairing::export_unaudited(const std::string& peer,
                                                const std::string& transport_sha256,
                                                const std::string& actor, bool& audited) {
    // The peer must be an appliance name ([ha] name: 1-64 letters, digits, '-' or '_') other than
    // this one's, and (below) one whose transport key is published in this pair's keyspace.
    const bool valid_name =
        !peer.empty() && peer.size() <= 64 && std::ranges::all_of(peer, [](char ch) {
            return std::isalnum(static_cast<unsigned char>(ch)) != 0 || ch == '-' || ch == '_';
        });
    if (!valid_name || peer == name()) {
        return make_error(Errc::invalid_argument,
                          "peer must name the other appliance of the pair (not '" +
                              (valid_name ? peer : std::string("an invalid name")) + "')");
    }
    const std::string expected = SIGNET_TRY(normalise_sha256(transport_sha256));
    if (d_.so_pin_file.empty()) {
        return make_error(Errc::unprocessable,
                          "[ha] so_pin_file is not set: the pairing ceremony needs the HSM "
                          "security officer's PIN");
    }
    const std::lock_guard ceremony(ceremony_mu_);
    const std::string key = d_.pair->prefix() + "pairing/transport/" + peer;
    const auto published = SIGNET_TRY(d_.pair->coordinator()->range(key, {}, d_.timeout));
    if (published.kvs.empty()) {
        return make_error(Errc::not_found, "appliance '" + peer +
                                               "' has not published a transport key in this "
                                               "pair (is it running with [ha] name = \"" +
                                               peer + "\"?)");
    }
    const Bytes spki = SIGNET_TRY(decode_transport(published.kvs.front().value));
    const std::string actual = hex_encode(pkcs11::sha256(spki));
    // The pin: anyone with write access to etcd could publish a transport key of their own under
    // the peer's name and receive the KEK (and with it every replicable key). Only the fingerprint
    // the operator read off the peer appliance itself decides whom the KEK is wrapped for.
    if (actual != expected) {
        auto r = d_.committer->submit([&](Db& txn) -> Result<void> {
            SIGNET_TRY(AuditLog::append(txn,
                                        {actor, "ha.pair", peer, "denied",
                                         "{\"reason\":\"transport key fingerprint mismatch\","
                                         "\"expected\":\"" +
                                             expected + "\",\"published\":\"" + actual + "\"}"},
                                        format_rfc3339(d_.clock->wall())));
            return ok();
        });
        if (!r) return r.error().within("audit the refused pairing");
        audited = true;
        return make_error(Errc::conflict,
                          "the transport key published for '" + peer + "' has SHA-256 " + actual +
                              ", not the " + expected +
                              " you supplied: refusing to wrap the key-encryption key for it "
                              "(read the fingerprint off the peer's own console or log)");
    }
    auto so_pin = read_secret_file(d_.so_pin_file);
    if (!so_pin) {
        return make_error(Errc::unprocessable, "cannot read [ha] so_pin_file (" +
                                                   d_.so_pin_file.string() +
                                                   "): " + so_pin.error().message());
    }
    auto exported = pkcs11::export_kek(*d_.keys, *so_pin, spki, kek_label(name(), peer));
    if (!exported) return exported.error().within("export the key-encryption key for " + peer);
    KekEntry entry{name(), peer, exported->kek_id, exported->blob, actual};
    ha::TxnRequest t;
    t.success.push_back(
        ha::Op::put(d_.pair->prefix() + "pairing/kek/" + name() + "/" + peer, encode_kek(entry)));
    if (auto r = d_.pair->coordinator()->txn(t, d_.timeout); !r) {
        return r.error().within("publish the key-encryption key for " + peer);
    }
    audited = true;  // remember() audits the success in the transaction that records the KEK
    SIGNET_TRY(remember(
        "pair.kek_out." + peer, entry.kek_id,
        {actor, "ha.pair", peer, "ok",
         "{\"kek_id\":\"" + entry.kek_id + "\",\"peer_transport_sha256\":\"" + actual + "\"}"}));
    {
        const std::lock_guard lock(mu_);
        out_[peer] = entry.kek_id;
    }
    d_.logger->log(LogLevel::info, "pairing", "kek_exported",
                   {{"peer", peer}, {"kek_id", entry.kek_id}, {"peer_transport_sha256", actual}});
    return PairingResult{peer, entry.kek_id, actual};
}

Result<bool> Pairing::import_from(const KekEntry& kek) {
    if (kek.receiver != name() || kek.sender == name()) return false;
    if (incoming_kek(kek.sender) == kek.kek_id) return false;
    if (!kek.transport_sha256.empty() && kek.transport_sha256 != transport_sha256_) {
        // Wrapped for an earlier transport key of this appliance: it cannot be unwrapped here.
        return make_error(Errc::conflict, "the KEK from " + kek.sender +
                                              " was wrapped for transport key " +
                                              kek.transport_sha256 + ", not this appliance's " +
                                              transport_sha256_ + "; pair again on " + kek.sender);
    }
    auto r = pkcs11::import_kek(*d_.keys, transport_id_, {kek.kek_id, kek.blob},
                                kek_label(kek.sender, name()));
    // A KEK already on the token was imported before the store recorded it (crash in between).
    if (!r && !r.error().is(Errc::already_exists)) {
        return r.error().within("import the key-encryption key from " + kek.sender);
    }
    SIGNET_TRY(remember("pair.kek_in." + kek.sender, kek.kek_id,
                        {"pair:" + kek.sender, "ha.kek_import", kek.sender, "ok",
                         "{\"kek_id\":\"" + kek.kek_id + "\"}"}));
    {
        const std::lock_guard lock(mu_);
        in_[kek.sender] = kek.kek_id;
    }
    d_.logger->log(LogLevel::info, "pairing", "kek_imported",
                   {{"sender", kek.sender}, {"kek_id", kek.kek_id}});
    return true;
}

Result<void> Pairing::remember(const std::string& meta_name, const std::string& kek_id,
                               AuditEntry audit) {
    return d_.committer->submit([&](Db& txn) -> Result<void> {
        SIGNET_TRY(put_meta(txn, meta_name, kek_id));
        SIGNET_TRY(AuditLog::append(txn, audit, format_rfc3339(d_.clock->wall())));
        return ok();
    });
}

std::optional<std::string> Pairing::outgoing_kek() const {
    const std::lock_guard lock(mu_);
    // A pair has one peer, so there is at most one outgoing KEK (a repeated ceremony replaces it).
    if (out_.empty()) return std::nullopt;
    return out_.begin()->second;
}

std::optional<std::string> Pairing::incoming_kek(const std::string& sender) const {
    const std::lock_guard lock(mu_);
    const auto it = in_.find(sender);
    if (it == in_.end()) return std::nullopt;
    return it->second;
}

std::vector<std::string> Pairing::exported_to() const {
    const std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& [peer, kek] : out_) out.push_back(peer);
    return out;
}

std::vector<std::string> Pairing::imported_from() const {
    const std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& [sender, kek] : in_) out.push_back(sender);
    return out;
}

Result<std::optional<WrappedBlob>> Pairing::wrap(const KeyRecord& key) {
    const auto kek = outgoing_kek();
    if (!kek || key.key_class != pkcs11::KeyClass::replicable) {
        return std::optional<WrappedBlob>{};
    }
    auto w = pkcs11::wrap_key(*d_.keys, key.id, *kek);
    if (!w) return w.error().within("wrap key " + key.id + " for the peer");
    return std::optional<WrappedBlob>{WrappedBlob{*kek, std::move(w->blob)}};
}

Result<void> Pairing::unwrap(const KeyRecord& key, const WrappedBlob& wrapped) {
    const auto kek = incoming_kek(key.holder);
    if (!kek || *kek != wrapped.kek_id) {
        return make_error(Errc::unavailable, "key " + key.id + " is wrapped under KEK " +
                                                 wrapped.kek_id + ", which " + key.holder +
                                                 " has not exported to this appliance yet");
    }
    const pkcs11::WrappedKey w{key.id, key.label, key.algorithm, key.spki, wrapped.blob};
    auto r = pkcs11::unwrap_key(*d_.keys, w, *kek);
    if (r) return ok();
    if (r.error().is(Errc::already_exists)) {
        // Unwrapped before (a restart between unwrap and its record): it must be the same key.
        const auto here = SIGNET_TRY(d_.keys->get(key.id));
        if (here.spki_der == key.spki) return ok();
        return make_error(Errc::conflict,
                          "key id " + key.id + " is on this HSM with another public key");
    }
    return r.error().within("unwrap key " + key.id + " from " + key.holder);
}

}  // namespace signet::daemon
