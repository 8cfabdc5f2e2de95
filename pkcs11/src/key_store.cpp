#include "signet/pkcs11/key_store.hpp"

#include <algorithm>
#include <map>

#include "attributes.hpp"
#include "signet/pkcs11/public_key.hpp"

namespace signet::pkcs11 {
using namespace detail;

namespace {

constexpr std::size_t kIdBytes = 16;
constexpr std::size_t kMaxLabel = 128;
constexpr std::size_t kMaxObjects = 1'000'000;

// Only secp256k1 signatures need the public point (the recovery id). Decoding an SPKI costs
// ~0.3 ms with OpenSSL 3 (measured): not paid for the other algorithms, at 10,000 keys it was
// most of the start-up handle warm-up.
bool needs_public_point(Algorithm a) { return a == Algorithm::ecdsa_secp256k1; }
// DER DigestInfo prefix for SHA-256 (RFC 8017 §9.2 note 1), for CKM_RSA_PKCS over a digest.
constexpr std::uint8_t kSha256DigestInfo[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                              0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                              0x01, 0x05, 0x00, 0x04, 0x20};
Result<void> check_label(std::string_view label) {
    if (label.empty() || label.size() > kMaxLabel) {
        return make_error(Errc::invalid_argument, "label must be 1 to 128 bytes");
    }
    for (const char c : label) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            return make_error(Errc::invalid_argument, "label must not contain control characters");
        }
    }
    return ok();
}

Result<Bytes> parse_id(std::string_view id_hex) {
    auto id = hex_decode(id_hex);
    if (!id || id->empty() || id->size() > 64) {
        return make_error(Errc::invalid_argument, "key id must be 1 to 64 bytes of hex");
    }
    return std::move(id).value();
}

std::string as_text(const Bytes& b) { return std::string(b.begin(), b.end()); }

Result<Bytes> spki_of_public(Session& s, CK_OBJECT_HANDLE pub, Algorithm a) {
    if (is_rsa(a)) {
        const Bytes n = SIGNET_TRY(get_attribute(s, pub, CKA_MODULUS));
        const Bytes e = SIGNET_TRY(get_attribute(s, pub, CKA_PUBLIC_EXPONENT));
        return spki_from_rsa(n, e);
    }
    const Bytes point = SIGNET_TRY(get_attribute(s, pub, CKA_EC_POINT));
    return spki_from_ec_point(a, point);
}

// What identifies the algorithm of a key pair, read from its public half.
Result<Algorithm> algorithm_of_public(Session& s, CK_OBJECT_HANDLE pub) {
    const CK_ULONG type = SIGNET_TRY(get_ulong(s, pub, CKA_KEY_TYPE));
    if (type == CKK_RSA) {
        const Bytes n = SIGNET_TRY(get_attribute(s, pub, CKA_MODULUS));
        return algorithm_of(type, {}, n.size() - (n.size() > 0 && n[0] == 0 ? 1 : 0));
    }
    const Bytes params = SIGNET_TRY(get_attribute(s, pub, CKA_EC_PARAMS));
    return algorithm_of(type, params, 0);
}

// Handles of a pair from its two objects (any order); not_found when a half is missing.
Result<KeyHandles> pair_handles(Session& s, const std::vector<CK_OBJECT_HANDLE>& objects,
                                const std::string& id_hex, std::uint64_t epoch) {
    KeyHandles kh;
    for (const CK_OBJECT_HANDLE h : objects) {
        const CK_ULONG cls = SIGNET_TRY(get_ulong(s, h, CKA_CLASS));
        if (cls == CKO_PRIVATE_KEY) kh.private_key = h;
        if (cls == CKO_PUBLIC_KEY) kh.public_key = h;
    }
    if (kh.private_key == CK_INVALID_HANDLE) {
        return make_error(Errc::not_found, "no key " + id_hex + " on the token");
    }
    if (kh.public_key == CK_INVALID_HANDLE) {
        return make_error(Errc::not_found, "public half of key " + id_hex + " is missing");
    }
    kh.algorithm = SIGNET_TRY(algorithm_of_public(s, kh.public_key));
    if (needs_public_point(kh.algorithm)) {
        const Bytes spki = SIGNET_TRY(spki_of_public(s, kh.public_key, kh.algorithm));
        kh.public_point = SIGNET_TRY(spki_public_point(kh.algorithm, spki));
    }
    kh.epoch = epoch;
    return kh;
}

}  // namespace

KeyStore::KeyStore(std::shared_ptr<Token> token) : token_(std::move(token)) {}

void KeyStore::remember(const std::string& id_hex, const KeyHandles& h) {
    const std::lock_guard lock(mu_);
    cache_[id_hex] = h;
}

void KeyStore::forget(std::string_view id_hex) {
    const std::lock_guard lock(mu_);
    cache_.erase(std::string(id_hex));
}

Result<KeyInfo> KeyStore::generate(const KeySpec& spec) {
    if (spec.label.starts_with(kInternalLabelPrefix)) {
        return make_error(Errc::invalid_argument,
                          "labels starting with 'signet.' are reserved for the appliance");
    }
    return generate_unchecked(spec, spec.id.has_value());
}

Result<KeyInfo> KeyStore::generate_unchecked(const KeySpec& spec, bool check_id) {
    SIGNET_TRY(check_label(spec.label));
    Bytes id;
    if (spec.id) {
        if (spec.id->empty() || spec.id->size() > 64) {
            return make_error(Errc::invalid_argument, "key id must be 1 to 64 bytes");
        }
        id = *spec.id;
    } else {
        id = SIGNET_TRY(token_->random(kIdBytes));
    }
    const std::string id_hex = hex_encode(id);
    const std::lock_guard objects(object_mu_);
    const std::string op = "generate " + std::string(to_string(spec.algorithm)) + " key " + id_hex;
    KeyHandles kh;
    int attempt = 0;
    SIGNET_TRY(token_->run(op, [&](Session& s) -> Result<void> {
        const std::uint64_t epoch = token_->handle_epoch();  // before the objects exist
        const bool retry = attempt++ > 0;
        if (check_id || retry) {
            // A caller-chosen id may be taken; and a retry after a recoverable failure may find
            // the pair the first attempt created: adopt a whole pair, remove a half one.
            AttributeList t;
            t.add_bytes(CKA_ID, id);
            const auto found = SIGNET_TRY(find_objects(s, t, 3));
            if (!retry && !found.empty()) {  // only a caller-chosen id can be taken already
                return make_error(Errc::already_exists,
                                  "key id " + id_hex + " is already on the token");
            }
            if (found.size() == 2) {
                kh = SIGNET_TRY(pair_handles(s, found, id_hex, epoch));
                return ok();
            }
            for (const CK_OBJECT_HANDLE h : found) (void)s.fn().C_DestroyObject(s.handle(), h);
        }
        AttributeList pub, priv;
        signing_key_templates(spec.algorithm, spec.key_class == KeyClass::replicable, spec.label,
                              id, TemplateUse::generate, pub, priv);
        CK_MECHANISM mech{traits(spec.algorithm).keygen, nullptr, 0};
        KeyHandles created;
        const CK_RV rv =
            s.fn().C_GenerateKeyPair(s.handle(), &mech, pub.data(), pub.size(), priv.data(),
                                     priv.size(), &created.public_key, &created.private_key);
        if (rv != CKR_OK) return ck_error(rv, "C_GenerateKeyPair");
        created.algorithm = spec.algorithm;
        created.epoch = epoch;
        kh = created;
        return ok();
    }));
    // Described separately: a recovery here must not generate the pair again.
    return token_->run(op, [&](Session& s) -> Result<KeyInfo> {
        // The known handles are used when still valid; a recovery in between means a search.
        const KeyHandles h =
            kh.epoch == token_->handle_epoch() ? kh : SIGNET_TRY(handles(s, id_hex));
        KeyInfo info = SIGNET_TRY(describe(s, h, id_hex));
        KeyHandles cached = h;
        if (needs_public_point(cached.algorithm)) {
            cached.public_point = SIGNET_TRY(spki_public_point(cached.algorithm, info.spki_der));
        }
        remember(id_hex, cached);
        return info;
    });
}

Result<KeyInfo> KeyStore::describe(Session& s, const KeyHandles& h, const std::string& id_hex) {
    KeyInfo info;
    info.id = id_hex;
    info.label = as_text(SIGNET_TRY(get_attribute(s, h.private_key, CKA_LABEL)));
    info.algorithm = h.algorithm;
    info.key_class = SIGNET_TRY(get_bool(s, h.private_key, CKA_EXTRACTABLE)) ? KeyClass::replicable
                                                                             : KeyClass::local;
    CK_OBJECT_HANDLE pub = h.public_key;
    if (pub == CK_INVALID_HANDLE) {
        AttributeList t;
        t.add_ulong(CKA_CLASS, CKO_PUBLIC_KEY).add_bytes(CKA_ID, SIGNET_TRY(parse_id(id_hex)));
        const auto found = SIGNET_TRY(find_objects(s, t, 1));
        if (found.empty())
            return make_error(Errc::not_found, "public half of key " + id_hex + " is missing");
        pub = found.front();
    }
    info.spki_der = SIGNET_TRY(spki_of_public(s, pub, h.algorithm));
    return info;
}

Result<KeyHandles> KeyStore::lookup(Session& s, const std::string& id_hex, std::uint64_t epoch) {
    // One search by CKA_ID returns both halves.
    AttributeList t;
    t.add_bytes(CKA_ID, SIGNET_TRY(parse_id(id_hex)));
    const auto objects = SIGNET_TRY(find_objects(s, t, 3));
    if (objects.size() > 2) {
        return make_error(Errc::internal, "more than two objects share key id " + id_hex);
    }
    return pair_handles(s, objects, id_hex, epoch);
}

Result<KeyHandles> KeyStore::handles(Session& s, std::string_view id_view) {
    const std::string id_hex = hex_encode(SIGNET_TRY(parse_id(id_view)));
    auto cached = [&]() -> std::optional<KeyHandles> {
        const std::lock_guard lock(mu_);
        const auto it = cache_.find(id_hex);
        if (it != cache_.end() && it->second.epoch == token_->handle_epoch()) return it->second;
        return std::nullopt;
    };
    if (auto h = cached()) return *h;
    // Single flight: a search reads every object on SoftHSM; N threads asking for the same cold
    // key wait for the first one instead of all scanning the token.
    const std::lock_guard single(lookup_mu_);
    if (auto h = cached()) return *h;
    const std::uint64_t epoch = token_->handle_epoch();
    const KeyHandles kh = SIGNET_TRY(lookup(s, id_hex, epoch));
    remember(id_hex, kh);
    return kh;
}

Result<std::size_t> KeyStore::warm_up(const std::vector<KeyHint>& hints) {
    std::map<Bytes, const KeyHint*> wanted;
    for (const KeyHint& h : hints) {
        if (auto id = parse_id(h.id)) wanted[std::move(id).value()] = &h;
    }
    return token_->run("warm up key handles", [&](Session& s) -> Result<std::size_t> {
        const std::uint64_t epoch = token_->handle_epoch();
        AttributeList t;
        t.add_ulong(CKA_CLASS, CKO_PRIVATE_KEY);
        std::size_t found = 0;
        for (const CK_OBJECT_HANDLE h : SIGNET_TRY(find_objects(s, t, kMaxObjects))) {
            const auto it = wanted.find(SIGNET_TRY(get_attribute(s, h, CKA_ID)));
            if (it == wanted.end()) continue;
            KeyHandles kh;
            kh.private_key = h;
            kh.algorithm = it->second->algorithm;
            if (needs_public_point(kh.algorithm)) {
                auto point = spki_public_point(kh.algorithm, it->second->spki_der);
                if (!point) continue;  // a bad hint: leave it to a normal lookup
                kh.public_point = std::move(point).value();
            }
            kh.epoch = epoch;
            remember(hex_encode(it->first), kh);
            ++found;
        }
        return found;
    });
}

Result<KeyInfo> KeyStore::get(std::string_view id_hex) {
    return token_->run("get key " + std::string(id_hex), [&](Session& s) -> Result<KeyInfo> {
        const auto kh = SIGNET_TRY(handles(s, id_hex));
        return describe(s, kh, hex_encode(SIGNET_TRY(parse_id(id_hex))));
    });
}

Result<std::vector<KeyInfo>> KeyStore::list() {
    return token_->run("list keys", [&](Session& s) -> Result<std::vector<KeyInfo>> {
        AttributeList priv_t;
        priv_t.add_ulong(CKA_CLASS, CKO_PRIVATE_KEY);
        const auto privs = SIGNET_TRY(find_objects(s, priv_t, kMaxObjects));
        // One pass over the public keys instead of one search per private key.
        AttributeList pub_t;
        pub_t.add_ulong(CKA_CLASS, CKO_PUBLIC_KEY);
        std::map<Bytes, CK_OBJECT_HANDLE> pub_by_id;
        for (const CK_OBJECT_HANDLE h : SIGNET_TRY(find_objects(s, pub_t, kMaxObjects))) {
            pub_by_id[SIGNET_TRY(get_attribute(s, h, CKA_ID))] = h;
        }
        std::vector<KeyInfo> out;
        out.reserve(privs.size());
        for (const CK_OBJECT_HANDLE h : privs) {
            const std::string label = as_text(SIGNET_TRY(get_attribute(s, h, CKA_LABEL)));
            if (label.starts_with(kInternalLabelPrefix)) continue;
            const Bytes id = SIGNET_TRY(get_attribute(s, h, CKA_ID));
            const auto pub = pub_by_id.find(id);
            if (pub == pub_by_id.end()) continue;  // not a Signet key pair
            auto alg = algorithm_of_public(s, pub->second);
            if (!alg) continue;  // a key type Signet does not use
            out.push_back(
                SIGNET_TRY(describe(s, KeyHandles{h, pub->second, *alg, {}, 0}, hex_encode(id))));
        }
        std::ranges::sort(out, {}, &KeyInfo::id);
        return out;
    });
}

Result<KeyAttributes> KeyStore::attributes(std::string_view id_hex) {
    return token_->run("read attributes of key " + std::string(id_hex),
                       [&](Session& s) -> Result<KeyAttributes> {
                           const CK_OBJECT_HANDLE h = SIGNET_TRY(handles(s, id_hex)).private_key;
                           KeyAttributes a;
                           const std::pair<bool*, CK_ATTRIBUTE_TYPE> fields[] = {
                               {&a.token, CKA_TOKEN},
                               {&a.is_private, CKA_PRIVATE},
                               {&a.sensitive, CKA_SENSITIVE},
                               {&a.always_sensitive, CKA_ALWAYS_SENSITIVE},
                               {&a.extractable, CKA_EXTRACTABLE},
                               {&a.never_extractable, CKA_NEVER_EXTRACTABLE},
                               {&a.wrap_with_trusted, CKA_WRAP_WITH_TRUSTED},
                               {&a.sign, CKA_SIGN},
                               {&a.decrypt, CKA_DECRYPT},
                               {&a.unwrap, CKA_UNWRAP},
                               {&a.derive, CKA_DERIVE},
                               {&a.modifiable, CKA_MODIFIABLE},
                           };
                           for (const auto& [field, type] : fields)
                               *field = SIGNET_TRY(get_bool(s, h, type));
                           return a;
                       });
}

Result<void> KeyStore::destroy(std::string_view id_hex) {
    const Bytes id = SIGNET_TRY(parse_id(id_hex));
    const std::string key = hex_encode(id);
    const std::lock_guard objects(object_mu_);
    auto r = token_->run("destroy key " + key, [&](Session& s) -> Result<void> {
        AttributeList t;
        t.add_bytes(CKA_ID, id);
        const auto found = SIGNET_TRY(find_objects(s, t, 3));
        if (found.empty()) return make_error(Errc::not_found, "no key " + key + " on the token");
        for (const CK_OBJECT_HANDLE h : found) {
            const CK_RV rv = s.fn().C_DestroyObject(s.handle(), h);
            if (rv != CKR_OK) return ck_error(rv, "C_DestroyObject");
        }
        return ok();
    });
    forget(key);
    {
        const std::lock_guard lock(mu_);
        if (internal_) std::erase_if(*internal_, [&](const auto& kv) { return kv.second == key; });
    }
    return r;
}

Result<Signature> KeyStore::sign(std::string_view id_hex, const SignRequest& req) {
    const std::string op = "sign with key " + std::string(id_hex);
    const KeyHandles kh =
        SIGNET_TRY(token_->run(op, [&](Session& s) { return handles(s, id_hex); }));
    const Bytes input = SIGNET_TRY(prepare_sign_input(kh.algorithm, req));

    Bytes tbs = input;
    CK_RSA_PKCS_PSS_PARAMS pss{CKM_SHA256, CKG_MGF1_SHA256, 32};
    CK_MECHANISM mech{CKM_ECDSA, nullptr, 0};
    if (kh.algorithm == Algorithm::ed25519) {
        mech.mechanism = CKM_EDDSA;
    } else if (is_rsa(kh.algorithm)) {
        if (req.rsa_padding == RsaPadding::pss) {
            mech = CK_MECHANISM{CKM_RSA_PKCS_PSS, &pss, sizeof pss};
        } else {
            mech.mechanism = CKM_RSA_PKCS;
            tbs.assign(std::begin(kSha256DigestInfo), std::end(kSha256DigestInfo));
            tbs.insert(tbs.end(), input.begin(), input.end());
        }
    }

    Bytes raw = SIGNET_TRY(token_->run(op, [&](Session& s) -> Result<Bytes> {
        // Handles are re-resolved on each attempt: a recovery may have invalidated them.
        const KeyHandles h = SIGNET_TRY(handles(s, id_hex));
        CK_RV rv = s.fn().C_SignInit(s.handle(), &mech, h.private_key);
        if (rv != CKR_OK) return ck_error(rv, "C_SignInit");
        Bytes sig(512);
        CK_ULONG len = sig.size();
        // An empty message (Ed25519) still needs a non-null pointer: SoftHSM answers
        // CKR_ARGUMENTS_BAD for a null data pointer even with length 0.
        CK_BYTE none = 0;
        rv = s.fn().C_Sign(s.handle(), tbs.empty() ? &none : tbs.data(), tbs.size(), sig.data(),
                           &len);
        if (rv != CKR_OK) return ck_error(rv, "C_Sign");
        sig.resize(len);
        return sig;
    }));

    Signature out;
    if (kh.algorithm != Algorithm::ed25519) out.digest = input;
    if (!is_ecdsa(kh.algorithm)) {
        out.bytes = std::move(raw);
        return out;
    }
    if (raw.size() != 64) {
        return make_error(Errc::internal, op + ": HSM returned a " + std::to_string(raw.size()) +
                                              "-byte ECDSA signature, expected 64");
    }
    if (kh.algorithm == Algorithm::ecdsa_secp256k1) {
        SIGNET_TRY(secp256k1_normalize_low_s(raw));
        out.recovery_id = SIGNET_TRY(secp256k1_recovery_id(raw, input, kh.public_point));
    }
    switch (req.encoding) {
        case SignatureEncoding::raw: out.bytes = std::move(raw); break;
        case SignatureEncoding::der: out.bytes = SIGNET_TRY(ecdsa_raw_to_der(raw)); break;
        case SignatureEncoding::eth:
            out.bytes = std::move(raw);
            out.bytes.push_back(static_cast<std::uint8_t>(27 + *out.recovery_id));
            break;
    }
    return out;
}

Result<void> KeyStore::load_internal(Session& s) {
    // Every internal object carries kInternalLabel: one search finds them all.
    AttributeList t;
    t.add_string(CKA_LABEL, kInternalLabel);
    std::map<Bytes, std::vector<CK_OBJECT_HANDLE>> by_id;
    std::unordered_map<std::string, CK_OBJECT_HANDLE> data;
    const std::uint64_t epoch = token_->handle_epoch();
    for (const CK_OBJECT_HANDLE h : SIGNET_TRY(find_objects(s, t, kMaxObjects))) {
        if (SIGNET_TRY(get_ulong(s, h, CKA_CLASS)) == CKO_DATA) {
            data[as_text(SIGNET_TRY(get_attribute(s, h, CKA_APPLICATION)))] = h;
        } else {
            by_id[SIGNET_TRY(get_attribute(s, h, CKA_ID))].push_back(h);
        }
    }
    std::unordered_map<std::string, std::string> names;
    for (const auto& [id, objects] : by_id) {
        const std::string id_hex = hex_encode(id);
        auto kh = pair_handles(s, objects, id_hex, epoch);
        if (!kh) continue;  // not a key pair (e.g. a KEK or a half-created pair)
        remember(id_hex, *kh);
        names[as_text(id)] = id_hex;
    }
    const std::lock_guard lock(mu_);
    internal_ = std::move(names);
    data_ = std::move(data);
    data_epoch_ = epoch;
    return ok();
}

Result<void> KeyStore::ensure_internal_loaded(std::string_view op) {
    {
        const std::lock_guard lock(mu_);
        if (internal_.has_value() && data_epoch_ == token_->handle_epoch()) return ok();
    }
    return token_->run(op, [&](Session& s) { return load_internal(s); });
}

Result<KeyInfo> KeyStore::find_or_generate_internal(std::string_view name, Algorithm a,
                                                    bool* generated) {
    if (!name.starts_with(kInternalLabelPrefix)) {
        return make_error(Errc::invalid_argument, "internal key names start with 'signet.'");
    }
    const std::string op = "internal key " + std::string(name);
    SIGNET_TRY(ensure_internal_loaded(op));
    std::optional<std::string> id_hex;
    {
        const std::lock_guard lock(mu_);
        if (const auto it = internal_->find(std::string(name)); it != internal_->end()) {
            id_hex = it->second;
        }
    }
    if (generated) *generated = !id_hex;
    if (!id_hex) {
        KeyInfo info = SIGNET_TRY(generate_unchecked(
            KeySpec{a, KeyClass::local, std::string(kInternalLabel), to_bytes(name)}, true));
        const std::lock_guard lock(mu_);
        (*internal_)[std::string(name)] = info.id;
        return info;
    }
    KeyInfo info = SIGNET_TRY(get(*id_hex));
    if (info.algorithm != a) {
        return make_error(Errc::internal, op + " has algorithm " +
                                              std::string(to_string(info.algorithm)) +
                                              ", expected " + std::string(to_string(a)));
    }
    return info;
}

Result<std::optional<Bytes>> KeyStore::read_internal_data(std::string_view name) {
    const std::string op = "read internal data " + std::string(name);
    SIGNET_TRY(ensure_internal_loaded(op));
    std::optional<CK_OBJECT_HANDLE> h;
    {
        const std::lock_guard lock(mu_);
        if (const auto it = data_.find(std::string(name)); it != data_.end()) h = it->second;
    }
    if (!h) return std::optional<Bytes>{};
    return token_->run(op, [&](Session& s) -> Result<std::optional<Bytes>> {
        return std::optional<Bytes>{SIGNET_TRY(get_attribute(s, *h, CKA_VALUE))};
    });
}

Result<void> KeyStore::write_internal_data(std::string_view name, ByteView value) {
    const std::string op = "write internal data " + std::string(name);
    SIGNET_TRY(ensure_internal_loaded(op));
    const std::lock_guard objects(object_mu_);
    return token_->run(op, [&](Session& s) -> Result<void> {
        std::optional<CK_OBJECT_HANDLE> h;
        {
            const std::lock_guard lock(mu_);
            if (const auto it = data_.find(std::string(name)); it != data_.end()) h = it->second;
        }
        // A data object's CKA_VALUE cannot be changed after creation (PKCS#11; SoftHSM answers
        // CKR_ATTRIBUTE_READ_ONLY): a new value is a new object, which replaces the old one.
        AttributeList t;
        t.add_ulong(CKA_CLASS, CKO_DATA)
            .add_bool(CKA_TOKEN, true)
            .add_bool(CKA_PRIVATE, true)
            .add_bool(CKA_MODIFIABLE, true)
            .add_string(CKA_LABEL, kInternalLabel)
            .add_string(CKA_APPLICATION, name)
            .add_bytes(CKA_VALUE, value);
        CK_OBJECT_HANDLE created = CK_INVALID_HANDLE;
        const CK_RV rv = s.fn().C_CreateObject(s.handle(), t.data(), t.size(), &created);
        if (rv != CKR_OK) return ck_error(rv, "C_CreateObject(CKO_DATA)");
        {
            const std::lock_guard lock(mu_);
            data_[std::string(name)] = created;
        }
        if (h) {
            const CK_RV drv = s.fn().C_DestroyObject(s.handle(), *h);
            if (drv != CKR_OK) return ck_error(drv, "C_DestroyObject(old CKO_DATA)");
        }
        return ok();
    });
}

}  // namespace signet::pkcs11
