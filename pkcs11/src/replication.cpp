#include "signet/pkcs11/replication.hpp"

#include "attributes.hpp"
#include "signet/pkcs11/digest.hpp"
#include "signet/pkcs11/public_key.hpp"

namespace signet::pkcs11 {
using namespace detail;

namespace {

constexpr std::size_t kIdBytes = 16;
const Bytes kRsaExponent{0x01, 0x00, 0x01};

Result<Bytes> parse_hex_id(std::string_view id_hex, std::string_view what) {
    auto id = hex_decode(id_hex);
    if (!id || id->empty() || id->size() > 64) {
        return make_error(Errc::invalid_argument, std::string(what) + " id must be hex");
    }
    return std::move(id).value();
}

Result<CK_OBJECT_HANDLE> find_by_id(Session& s, CK_OBJECT_CLASS cls, ByteView id,
                                    std::string_view what) {
    AttributeList t;
    t.add_ulong(CKA_CLASS, cls).add_bytes(CKA_ID, id);
    const auto found = SIGNET_TRY(find_objects(s, t, 1));
    if (found.empty()) {
        return make_error(Errc::not_found,
                          std::string(what) + " " + hex_encode(id) + " is not on the token");
    }
    return found.front();
}

Result<std::size_t> count_by_id(Session& s, ByteView id) {
    AttributeList t;
    t.add_bytes(CKA_ID, id);
    return SIGNET_TRY(find_objects(s, t, 4)).size();
}

template <class Call>
Result<Bytes> two_call(Call&& call, std::string_view op) {
    CK_ULONG len = 0;
    CK_RV rv = call(nullptr, &len);
    if (rv != CKR_OK) return ck_error(rv, std::string(op));
    Bytes out(len);
    rv = call(out.data(), &len);
    if (rv != CKR_OK) return ck_error(rv, std::string(op));
    out.resize(len);
    return out;
}

void destroy_quietly(Session& s, CK_OBJECT_HANDLE h) {
    if (h != CK_INVALID_HANDLE) (void)s.fn().C_DestroyObject(s.handle(), h);
}

// Public-key object attributes rebuilt from an SPKI.
Result<void> add_public_material(AttributeList& t, Algorithm a, ByteView spki) {
    if (is_rsa(a)) {
        const RsaComponents rsa = SIGNET_TRY(spki_rsa_components(spki));
        t.add_bytes(CKA_MODULUS, rsa.modulus).add_bytes(CKA_PUBLIC_EXPONENT, rsa.public_exponent);
        return ok();
    }
    const Bytes point = SIGNET_TRY(spki_public_point(a, spki));
    Bytes octet_string{0x04, static_cast<std::uint8_t>(point.size())};  // DER OCTET STRING
    octet_string.insert(octet_string.end(), point.begin(), point.end());
    t.add_bytes(CKA_EC_PARAMS, traits(a).ec_params).add_bytes(CKA_EC_POINT, octet_string);
    return ok();
}

}  // namespace

Result<WrappedKey> wrap_key(KeyStore& keys, std::string_view id_hex, std::string_view kek_id_hex) {
    const Bytes kek_id = SIGNET_TRY(parse_hex_id(kek_id_hex, "KEK"));
    const KeyInfo info = SIGNET_TRY(keys.get(id_hex));
    const std::string op = "wrap key " + info.id;
    Bytes blob = SIGNET_TRY(keys.token().run(op, [&](Session& s) -> Result<Bytes> {
        const KeyHandles kh = SIGNET_TRY(keys.handles(s, info.id));
        const CK_OBJECT_HANDLE kek = SIGNET_TRY(find_by_id(s, CKO_SECRET_KEY, kek_id, "KEK"));
        CK_MECHANISM mech{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
        auto wrapped = two_call(
            [&](CK_BYTE* out, CK_ULONG* len) {
            return s.fn().C_WrapKey(s.handle(), &mech, kek, kh.private_key, out, len);
            },
            "C_WrapKey(CKM_AES_KEY_WRAP_PAD)");
        if (wrapped) return wrapped;
        const CK_RV rv = ckr_of(wrapped.error());
        const std::string ckr = ckr_name(rv);
        if (rv == CKR_KEY_UNEXTRACTABLE) {
            return make_error(Errc::not_replicable,
                              "key is appliance-local (CKA_EXTRACTABLE=false; " + ckr + ")");
        }
        if (info.algorithm == Algorithm::ed25519 &&
            (rv == CKR_KEY_NOT_WRAPPABLE || rv == CKR_MECHANISM_INVALID ||
             rv == CKR_FUNCTION_NOT_SUPPORTED || rv == CKR_KEY_TYPE_INCONSISTENT ||
             rv == CKR_GENERAL_ERROR)) {
            return make_error(Errc::not_replicable,
                              "ed25519 keys are not replicable on this HSM: the module cannot wrap "
                              "them (" +
                                  ckr + "); the key stays appliance-local");
        }
        if (rv == CKR_KEY_NOT_WRAPPABLE) {
            return make_error(Errc::not_replicable, "the HSM refused to wrap the key under KEK " +
                                                        hex_encode(kek_id) + " (" + ckr +
                                                        "; is the KEK trusted?)");
        }
        return wrapped;
    }));
    return WrappedKey{info.id, info.label, info.algorithm, info.spki_der, std::move(blob)};
}

Result<KeyInfo> unwrap_key(KeyStore& keys, const WrappedKey& wrapped, std::string_view kek_id_hex) {
    SIGNET_TRY(check_spki(wrapped.algorithm, wrapped.spki_der));
    const Bytes id = SIGNET_TRY(parse_hex_id(wrapped.id, "key"));
    const Bytes kek_id = SIGNET_TRY(parse_hex_id(kek_id_hex, "KEK"));
    if (wrapped.label.starts_with(kInternalLabelPrefix) || wrapped.label.empty()) {
        return make_error(Errc::invalid_argument, "wrapped key has a reserved or empty label");
    }
    const std::string op = "unwrap key " + hex_encode(id);

    auto objects = keys.lock_object_changes();
    SIGNET_TRY(keys.token().run(op, [&](Session& s) -> Result<void> {
        if (SIGNET_TRY(count_by_id(s, id)) > 0) {
            return make_error(Errc::already_exists,
                              "key id " + hex_encode(id) + " is already on the token");
        }
        const CK_OBJECT_HANDLE kek = SIGNET_TRY(find_by_id(s, CKO_SECRET_KEY, kek_id, "KEK"));
        AttributeList pub, priv;
        signing_key_templates(wrapped.algorithm, true, wrapped.label, id, TemplateUse::unwrap, pub,
                              priv);
        SIGNET_TRY(add_public_material(pub, wrapped.algorithm, wrapped.spki_der));

        CK_MECHANISM mech{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
        CK_OBJECT_HANDLE hpriv = CK_INVALID_HANDLE;
        CK_RV rv =
            s.fn().C_UnwrapKey(s.handle(), &mech, kek, const_cast<CK_BYTE*>(wrapped.blob.data()),
                               wrapped.blob.size(), priv.data(), priv.size(), &hpriv);
        if (rv != CKR_OK) {
            // SoftHSM answers CKR_GENERAL_ERROR (not CKR_WRAPPED_KEY_INVALID) for a wrong KEK or a
            // tampered blob: say both possibilities.
            return ck_error(rv, "C_UnwrapKey (wrong KEK or damaged blob?)");
        }
        CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE;
        rv = s.fn().C_CreateObject(s.handle(), pub.data(), pub.size(), &hpub);
        if (rv != CKR_OK) {
            destroy_quietly(s, hpriv);
            return ck_error(rv, "C_CreateObject(public key)");
        }
        return ok();
    }));
    keys.forget(hex_encode(id));
    objects.unlock();  // destroy() below takes it again

    // Proof of possession: the unwrapped private key must match the public key that travelled
    // with it, or neither object stays.
    const Bytes challenge = SIGNET_TRY(keys.token().random(32));
    SignRequest req{challenge, Input::message, Hash::sha256, SignatureEncoding::raw,
                    RsaPadding::pss};
    auto sig = keys.sign(hex_encode(id), req);
    auto valid = sig ? verify_signature(wrapped.algorithm, wrapped.spki_der, req, sig->bytes)
                     : Result<bool>(sig.error());
    if (!valid || !*valid) {
        (void)keys.destroy(hex_encode(id));
        if (!valid) return valid.error().within(op + ": possession proof");
        return make_error(Errc::verification_failed,
                          op + ": the unwrapped key does not match its public key; removed");
    }
    return keys.get(hex_encode(id));
}

Result<KeyInfo> generate_transport_key(KeyStore& keys, std::string label) {
    if (!label.starts_with(kInternalLabelPrefix)) {
        return make_error(Errc::invalid_argument, "transport key labels start with 'signet.'");
    }
    const Bytes id = SIGNET_TRY(keys.token().random(kIdBytes));
    auto objects = keys.lock_object_changes();
    SIGNET_TRY(keys.token().run("generate transport key", [&](Session& s) -> Result<void> {
        AttributeList pub;
        pub.add_ulong(CKA_CLASS, CKO_PUBLIC_KEY)
            .add_ulong(CKA_KEY_TYPE, CKK_RSA)
            .add_bool(CKA_TOKEN, true)
            .add_bool(CKA_PRIVATE, false)
            .add_bool(CKA_MODIFIABLE, false)
            .add_string(CKA_LABEL, label)
            .add_bytes(CKA_ID, id)
            .add_bool(CKA_WRAP, true)
            .add_bool(CKA_ENCRYPT, false)
            .add_bool(CKA_VERIFY, false)
            .add_bool(CKA_DERIVE, false)
            .add_ulong(CKA_MODULUS_BITS, 3072)
            .add_bytes(CKA_PUBLIC_EXPONENT, kRsaExponent);
        AttributeList priv;
        priv.add_ulong(CKA_CLASS, CKO_PRIVATE_KEY)
            .add_ulong(CKA_KEY_TYPE, CKK_RSA)
            .add_bool(CKA_TOKEN, true)
            .add_bool(CKA_PRIVATE, true)
            .add_bool(CKA_MODIFIABLE, false)
            .add_string(CKA_LABEL, label)
            .add_bytes(CKA_ID, id)
            .add_bool(CKA_SENSITIVE, true)
            .add_bool(CKA_EXTRACTABLE, false)
            .add_bool(CKA_UNWRAP, true)
            .add_bool(CKA_SIGN, false)
            .add_bool(CKA_DECRYPT, false)
            .add_bool(CKA_DERIVE, false);
        CK_MECHANISM mech{CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr, 0};
        CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
        const CK_RV rv = s.fn().C_GenerateKeyPair(s.handle(), &mech, pub.data(), pub.size(),
                                                  priv.data(), priv.size(), &hpub, &hpriv);
        if (rv != CKR_OK) return ck_error(rv, "C_GenerateKeyPair(RSA-3072 transport)");
        return ok();
    }));
    objects.unlock();
    return keys.get(hex_encode(id));
}

Result<KekExport> export_kek(KeyStore& keys, const SecretBuffer& so_pin,
                             ByteView peer_transport_spki, std::string kek_label) {
    SIGNET_TRY(check_spki(Algorithm::rsa_3072, peer_transport_spki));
    if (!kek_label.starts_with(kInternalLabelPrefix)) {
        return make_error(Errc::invalid_argument, "KEK labels start with 'signet.'");
    }
    const RsaComponents peer = SIGNET_TRY(spki_rsa_components(peer_transport_spki));
    const Bytes kek_id = SIGNET_TRY(keys.token().random(kIdBytes));
    const Bytes peer_digest = sha256(peer_transport_spki);
    const Bytes peer_id(peer_digest.begin(), peer_digest.begin() + kIdBytes);

    auto objects = keys.lock_object_changes();
    Bytes blob =
        SIGNET_TRY(keys.token().run_as_so(so_pin, "export KEK", [&](Session& s) -> Result<Bytes> {
            // Only the security officer can mark a key trusted; the KEK may be wrapped only under
            // trusted keys, i.e. only to a peer the SO vouched for here.
            CK_OBJECT_HANDLE hpeer = CK_INVALID_HANDLE;
            if (auto existing = find_by_id(s, CKO_PUBLIC_KEY, peer_id, "peer transport key")) {
                hpeer = *existing;
            } else {
                AttributeList t;
                t.add_ulong(CKA_CLASS, CKO_PUBLIC_KEY)
                    .add_ulong(CKA_KEY_TYPE, CKK_RSA)
                    .add_bool(CKA_TOKEN, true)
                    .add_bool(CKA_PRIVATE, false)
                    .add_bool(CKA_MODIFIABLE, false)
                    .add_bool(CKA_TRUSTED, true)
                    .add_bool(CKA_WRAP, true)
                    .add_bool(CKA_ENCRYPT, false)
                    .add_bool(CKA_VERIFY, false)
                    .add_string(CKA_LABEL, "signet.peer-transport")
                    .add_bytes(CKA_ID, peer_id)
                    .add_bytes(CKA_MODULUS, peer.modulus)
                    .add_bytes(CKA_PUBLIC_EXPONENT, peer.public_exponent);
                const CK_RV rv = s.fn().C_CreateObject(s.handle(), t.data(), t.size(), &hpeer);
                if (rv != CKR_OK) return ck_error(rv, "C_CreateObject(trusted peer transport key)");
            }
            AttributeList k;
            k.add_ulong(CKA_CLASS, CKO_SECRET_KEY)
                .add_ulong(CKA_KEY_TYPE, CKK_AES)
                .add_ulong(CKA_VALUE_LEN, 32)
                .add_bool(CKA_TOKEN, true)
                .add_bool(CKA_PRIVATE, false)  // the SO cannot create private objects
                .add_bool(CKA_MODIFIABLE, false)
                .add_bool(CKA_SENSITIVE, true)
                .add_bool(CKA_EXTRACTABLE, true)
                .add_bool(CKA_WRAP_WITH_TRUSTED, true)
                .add_bool(CKA_TRUSTED, true)
                .add_bool(CKA_WRAP, true)
                .add_bool(CKA_UNWRAP, true)
                .add_bool(CKA_ENCRYPT, false)
                .add_bool(CKA_DECRYPT, false)
                .add_bool(CKA_SIGN, false)
                .add_bool(CKA_VERIFY, false)
                .add_bool(CKA_DERIVE, false)
                .add_string(CKA_LABEL, kek_label)
                .add_bytes(CKA_ID, kek_id);
            CK_MECHANISM gen{CKM_AES_KEY_GEN, nullptr, 0};
            CK_OBJECT_HANDLE hkek = CK_INVALID_HANDLE;
            CK_RV rv = s.fn().C_GenerateKey(s.handle(), &gen, k.data(), k.size(), &hkek);
            if (rv != CKR_OK) return ck_error(rv, "C_GenerateKey(KEK)");
            // SoftHSM 2.6.1 implements OAEP with SHA-1 only.
            CK_RSA_PKCS_OAEP_PARAMS oaep{CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, nullptr, 0};
            CK_MECHANISM wrap{CKM_RSA_PKCS_OAEP, &oaep, sizeof oaep};
            auto out = two_call(
                [&](CK_BYTE* o, CK_ULONG* len) {
            return s.fn().C_WrapKey(s.handle(), &wrap, hpeer, hkek, o, len);
                },
                "C_WrapKey(KEK, RSA-OAEP)");
            if (!out) destroy_quietly(s, hkek);
            return out;
        }));
    return KekExport{hex_encode(kek_id), std::move(blob)};
}

Result<void> import_kek(KeyStore& keys, std::string_view transport_id_hex, const KekExport& kek,
                        std::string kek_label) {
    const Bytes transport_id = SIGNET_TRY(parse_hex_id(transport_id_hex, "transport key"));
    const Bytes kek_id = SIGNET_TRY(parse_hex_id(kek.kek_id, "KEK"));
    if (!kek_label.starts_with(kInternalLabelPrefix)) {
        return make_error(Errc::invalid_argument, "KEK labels start with 'signet.'");
    }
    auto objects = keys.lock_object_changes();
    return keys.token().run("import KEK " + kek.kek_id, [&](Session& s) -> Result<void> {
        if (SIGNET_TRY(count_by_id(s, kek_id)) > 0) {
            return make_error(Errc::already_exists,
                              "KEK " + kek.kek_id + " is already on the token");
        }
        const CK_OBJECT_HANDLE transport =
            SIGNET_TRY(find_by_id(s, CKO_PRIVATE_KEY, transport_id, "transport key"));
        AttributeList k;
        k.add_ulong(CKA_CLASS, CKO_SECRET_KEY)
            .add_ulong(CKA_KEY_TYPE, CKK_AES)
            .add_bool(CKA_TOKEN, true)
            .add_bool(CKA_PRIVATE, true)  // no CKA_MODIFIABLE: see unwrap_key
            .add_bool(CKA_SENSITIVE, true)
            .add_bool(CKA_EXTRACTABLE, false)
            .add_bool(CKA_UNWRAP, true)
            .add_bool(CKA_WRAP, false)
            .add_bool(CKA_ENCRYPT, false)
            .add_bool(CKA_DECRYPT, false)
            .add_bool(CKA_SIGN, false)
            .add_bool(CKA_VERIFY, false)
            .add_bool(CKA_DERIVE, false)
            .add_string(CKA_LABEL, kek_label)
            .add_bytes(CKA_ID, kek_id);
        CK_RSA_PKCS_OAEP_PARAMS oaep{CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, nullptr, 0};
        CK_MECHANISM mech{CKM_RSA_PKCS_OAEP, &oaep, sizeof oaep};
        CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
        const CK_RV rv =
            s.fn().C_UnwrapKey(s.handle(), &mech, transport, const_cast<CK_BYTE*>(kek.blob.data()),
                               kek.blob.size(), k.data(), k.size(), &h);
        if (rv != CKR_OK) return ck_error(rv, "C_UnwrapKey(KEK, RSA-OAEP)");
        return ok();
    });
}

}  // namespace signet::pkcs11
