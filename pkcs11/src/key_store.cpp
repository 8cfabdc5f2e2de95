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
// DER DigestInfo prefix for SHA-256 (RFC 8017 §9.2 note 1), for CKM_RSA_PKCS over a digest.
constexpr std::uint8_t kSha256DigestInfo[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                              0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                              0x01, 0x05, 0x00, 0x04, 0x20};
const Bytes kRsaExponent{0x01, 0x00, 0x01};

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

AttributeList by_class_and_id(CK_OBJECT_CLASS cls, ByteView id) {
    AttributeList t;
    t.add_ulong(CKA_CLASS, cls).add_bytes(CKA_ID, id);
    return t;
}

Result<std::optional<CK_OBJECT_HANDLE>> find_one(Session& s, CK_OBJECT_CLASS cls, ByteView id) {
    AttributeList t = by_class_and_id(cls, id);
    const auto found = SIGNET_TRY(find_objects(s, t, 2));
    if (found.empty()) return std::optional<CK_OBJECT_HANDLE>{};
    if (found.size() > 1) {
        return make_error(Errc::internal, "two objects of one class share key id " + hex_encode(id));
    }
    return std::optional<CK_OBJECT_HANDLE>{found.front()};
}

Result<Bytes> spki_of_public(Session& s, CK_OBJECT_HANDLE pub, Algorithm a) {
    if (is_rsa(a)) {
        const Bytes n = SIGNET_TRY(get_attribute(s, pub, CKA_MODULUS));
        const Bytes e = SIGNET_TRY(get_attribute(s, pub, CKA_PUBLIC_EXPONENT));
        return spki_from_rsa(n, e);
    }
    const Bytes point = SIGNET_TRY(get_attribute(s, pub, CKA_EC_POINT));
    return spki_from_ec_point(a, point);
}

// Reads what identifies the algorithm of a key pair from its public half.
Result<Algorithm> algorithm_of_public(Session& s, CK_OBJECT_HANDLE pub) {
    const CK_ULONG type = SIGNET_TRY(get_ulong(s, pub, CKA_KEY_TYPE));
    if (type == CKK_RSA) {
        const Bytes n = SIGNET_TRY(get_attribute(s, pub, CKA_MODULUS));
        return algorithm_of(type, {}, n.size() - (n.size() > 0 && n[0] == 0 ? 1 : 0));
    }
    const Bytes params = SIGNET_TRY(get_attribute(s, pub, CKA_EC_PARAMS));
    return algorithm_of(type, params, 0);
}

Result<Bytes> ec_public_point(Session& s, CK_OBJECT_HANDLE pub, Algorithm a) {
    const Bytes spki = SIGNET_TRY(spki_of_public(s, pub, a));
    return spki_public_point(a, spki);
}

}  // namespace

KeyStore::KeyStore(std::shared_ptr<Token> token) : token_(std::move(token)) {}

Result<KeyInfo> KeyStore::generate(const KeySpec& spec) {
    if (spec.label.starts_with(kInternalLabelPrefix)) {
        return make_error(Errc::invalid_argument,
                          "labels starting with 'signet.' are reserved for the appliance");
    }
    return generate_unchecked(spec);
}

Result<KeyInfo> KeyStore::generate_unchecked(const KeySpec& spec) {
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
    const AlgorithmTraits& t = traits(spec.algorithm);
    const bool replicable = spec.key_class == KeyClass::replicable;
    const std::string id_hex = hex_encode(id);

    return token_->run("generate " + std::string(to_string(spec.algorithm)) + " key " + id_hex,
                       [&](Session& s) -> Result<KeyInfo> {
        if (SIGNET_TRY(find_one(s, CKO_PRIVATE_KEY, id)) || SIGNET_TRY(find_one(s, CKO_PUBLIC_KEY, id))) {
            return make_error(Errc::already_exists, "key id " + id_hex + " is already on the token");
        }
        // Every security attribute is explicit: SoftHSM defaults SENSITIVE to false.
        AttributeList pub;
        pub.add_ulong(CKA_CLASS, CKO_PUBLIC_KEY)
            .add_ulong(CKA_KEY_TYPE, t.key_type)
            .add_bool(CKA_TOKEN, true)
            .add_bool(CKA_PRIVATE, false)
            .add_bool(CKA_MODIFIABLE, false)
            .add_string(CKA_LABEL, spec.label)
            .add_bytes(CKA_ID, id)
            .add_bool(CKA_VERIFY, true)
            .add_bool(CKA_ENCRYPT, false)
            .add_bool(CKA_WRAP, false)
            .add_bool(CKA_DERIVE, false);
        AttributeList priv;
        priv.add_ulong(CKA_CLASS, CKO_PRIVATE_KEY)
            .add_ulong(CKA_KEY_TYPE, t.key_type)
            .add_bool(CKA_TOKEN, true)
            .add_bool(CKA_PRIVATE, true)
            .add_bool(CKA_MODIFIABLE, false)
            .add_string(CKA_LABEL, spec.label)
            .add_bytes(CKA_ID, id)
            .add_bool(CKA_SENSITIVE, true)
            .add_bool(CKA_EXTRACTABLE, replicable)
            .add_bool(CKA_WRAP_WITH_TRUSTED, true)
            .add_bool(CKA_SIGN, true)
            .add_bool(CKA_SIGN_RECOVER, false)
            .add_bool(CKA_DECRYPT, false)
            .add_bool(CKA_UNWRAP, false)
            .add_bool(CKA_DERIVE, false);
        if (t.key_type == CKK_RSA) {
            pub.add_ulong(CKA_MODULUS_BITS, t.modulus_bits).add_bytes(CKA_PUBLIC_EXPONENT, kRsaExponent);
        } else {
            pub.add_bytes(CKA_EC_PARAMS, t.ec_params);
        }
        CK_MECHANISM mech{t.keygen, nullptr, 0};
        CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
        const CK_RV rv = s.fn().C_GenerateKeyPair(s.handle(), &mech, pub.data(), pub.size(),
                                                  priv.data(), priv.size(), &hpub, &hpriv);
        if (rv != CKR_OK) return ck_error(rv, "C_GenerateKeyPair");
        return describe(s, hpriv, id_hex);
    });
}

Result<KeyInfo> KeyStore::describe(Session& s, CK_OBJECT_HANDLE private_key, std::string id_hex) {
    const Bytes id = SIGNET_TRY(parse_id(id_hex));
    const auto pub = SIGNET_TRY(find_one(s, CKO_PUBLIC_KEY, id));
    if (!pub) {
        return make_error(Errc::not_found, "public half of key " + id_hex + " is missing");
    }
    KeyInfo info;
    info.id = hex_encode(id);
    const Bytes label = SIGNET_TRY(get_attribute(s, private_key, CKA_LABEL));
    info.label.assign(label.begin(), label.end());
    info.algorithm = SIGNET_TRY(algorithm_of_public(s, *pub));
    info.key_class = SIGNET_TRY(get_bool(s, private_key, CKA_EXTRACTABLE)) ? KeyClass::replicable
                                                                           : KeyClass::local;
    info.spki_der = SIGNET_TRY(spki_of_public(s, *pub, info.algorithm));
    return info;
}

Result<KeyHandles> KeyStore::handles(Session& s, std::string_view id_hex) {
    const std::uint64_t epoch = token_->handle_epoch();
    const Bytes id = SIGNET_TRY(parse_id(id_hex));
    const std::string key = hex_encode(id);
    {
        const std::lock_guard lock(mu_);
        if (auto it = cache_.find(key); it != cache_.end() && it->second.epoch == epoch) {
            return it->second;
        }
    }
    const auto priv = SIGNET_TRY(find_one(s, CKO_PRIVATE_KEY, id));
    if (!priv) return make_error(Errc::not_found, "no key " + key + " on the token");
    const auto pub = SIGNET_TRY(find_one(s, CKO_PUBLIC_KEY, id));
    if (!pub) return make_error(Errc::not_found, "public half of key " + key + " is missing");

    KeyHandles kh;
    kh.private_key = *priv;
    kh.public_key = *pub;
    kh.algorithm = SIGNET_TRY(algorithm_of_public(s, *pub));
    kh.key_class = SIGNET_TRY(get_bool(s, *priv, CKA_EXTRACTABLE)) ? KeyClass::replicable
                                                                   : KeyClass::local;
    if (is_ecdsa(kh.algorithm)) kh.public_point = SIGNET_TRY(ec_public_point(s, *pub, kh.algorithm));
    kh.epoch = epoch;
    const std::lock_guard lock(mu_);
    cache_[key] = kh;
    return kh;
}

void KeyStore::forget(std::string_view id_hex) {
    const std::lock_guard lock(mu_);
    cache_.erase(std::string(id_hex));
}

Result<KeyInfo> KeyStore::get(std::string_view id_hex) {
    return token_->run("get key " + std::string(id_hex), [&](Session& s) -> Result<KeyInfo> {
        const auto kh = SIGNET_TRY(handles(s, id_hex));
        return describe(s, kh.private_key, std::string(id_hex));
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
            const Bytes label = SIGNET_TRY(get_attribute(s, h, CKA_LABEL));
            const std::string label_s(label.begin(), label.end());
            if (label_s.starts_with(kInternalLabelPrefix)) continue;
            const Bytes id = SIGNET_TRY(get_attribute(s, h, CKA_ID));
            const auto pub = pub_by_id.find(id);
            if (pub == pub_by_id.end()) continue;  // not a Signet key pair
            auto alg = algorithm_of_public(s, pub->second);
            if (!alg) continue;  // a key type Signet does not use
            KeyInfo info;
            info.id = hex_encode(id);
            info.label = label_s;
            info.algorithm = *alg;
            info.key_class = SIGNET_TRY(get_bool(s, h, CKA_EXTRACTABLE)) ? KeyClass::replicable
                                                                         : KeyClass::local;
            info.spki_der = SIGNET_TRY(spki_of_public(s, pub->second, info.algorithm));
            out.push_back(std::move(info));
        }
        std::ranges::sort(out, {}, &KeyInfo::id);
        return out;
    });
}

Result<KeyAttributes> KeyStore::attributes(std::string_view id_hex) {
    return token_->run("read attributes of key " + std::string(id_hex),
                       [&](Session& s) -> Result<KeyAttributes> {
        const auto kh = SIGNET_TRY(handles(s, id_hex));
        const CK_OBJECT_HANDLE h = kh.private_key;
        KeyAttributes a;
        a.token = SIGNET_TRY(get_bool(s, h, CKA_TOKEN));
        a.is_private = SIGNET_TRY(get_bool(s, h, CKA_PRIVATE));
        a.sensitive = SIGNET_TRY(get_bool(s, h, CKA_SENSITIVE));
        a.always_sensitive = SIGNET_TRY(get_bool(s, h, CKA_ALWAYS_SENSITIVE));
        a.extractable = SIGNET_TRY(get_bool(s, h, CKA_EXTRACTABLE));
        a.never_extractable = SIGNET_TRY(get_bool(s, h, CKA_NEVER_EXTRACTABLE));
        a.wrap_with_trusted = SIGNET_TRY(get_bool(s, h, CKA_WRAP_WITH_TRUSTED));
        a.sign = SIGNET_TRY(get_bool(s, h, CKA_SIGN));
        a.decrypt = SIGNET_TRY(get_bool(s, h, CKA_DECRYPT));
        a.unwrap = SIGNET_TRY(get_bool(s, h, CKA_UNWRAP));
        a.derive = SIGNET_TRY(get_bool(s, h, CKA_DERIVE));
        a.modifiable = SIGNET_TRY(get_bool(s, h, CKA_MODIFIABLE));
        return a;
    });
}

Result<void> KeyStore::destroy(std::string_view id_hex) {
    const Bytes id = SIGNET_TRY(parse_id(id_hex));
    const std::string key = hex_encode(id);
    auto r = token_->run("destroy key " + key, [&](Session& s) -> Result<void> {
        std::size_t destroyed = 0;
        for (const CK_OBJECT_CLASS cls : {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY}) {
            if (const auto h = SIGNET_TRY(find_one(s, cls, id))) {
                const CK_RV rv = s.fn().C_DestroyObject(s.handle(), *h);
                if (rv != CKR_OK) return ck_error(rv, "C_DestroyObject");
                ++destroyed;
            }
        }
        if (destroyed == 0) return make_error(Errc::not_found, "no key " + key + " on the token");
        return ok();
    });
    forget(key);
    return r;
}

Result<Signature> KeyStore::sign(std::string_view id_hex, const SignRequest& req) {
    const std::string op = "sign with key " + std::string(id_hex);
    const KeyHandles kh = SIGNET_TRY(token_->run(op, [&](Session& s) { return handles(s, id_hex); }));
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
        rv = s.fn().C_Sign(s.handle(), tbs.data(), tbs.size(), sig.data(), &len);
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

Result<KeyInfo> KeyStore::find_or_generate_internal(std::string_view label, Algorithm a) {
    if (!label.starts_with(kInternalLabelPrefix)) {
        return make_error(Errc::invalid_argument, "internal key labels start with 'signet.'");
    }
    auto found = token_->run("find internal key", [&](Session& s) -> Result<std::optional<KeyInfo>> {
        AttributeList t;
        t.add_ulong(CKA_CLASS, CKO_PRIVATE_KEY).add_string(CKA_LABEL, label);
        const auto hs = SIGNET_TRY(find_objects(s, t, 1));
        if (hs.empty()) return std::optional<KeyInfo>{};
        const Bytes id = SIGNET_TRY(get_attribute(s, hs.front(), CKA_ID));
        return std::optional<KeyInfo>{SIGNET_TRY(describe(s, hs.front(), hex_encode(id)))};
    });
    if (!found) return found.error();
    if (*found) {
        if ((*found)->algorithm != a) {
            return make_error(Errc::internal, "internal key '" + std::string(label) +
                                                  "' has algorithm " +
                                                  std::string(to_string((*found)->algorithm)));
        }
        return **found;
    }
    return generate_unchecked(KeySpec{a, KeyClass::local, std::string(label), std::nullopt});
}

}  // namespace signet::pkcs11
