#include "attributes.hpp"

#include <algorithm>
#include <cstdio>
#include <string>

#include "signet/pkcs11/error.hpp"

namespace signet::pkcs11::detail {

AttributeList& AttributeList::add_bool(CK_ATTRIBUTE_TYPE type, bool v) {
    const Bytes b{static_cast<std::uint8_t>(v ? CK_TRUE : CK_FALSE)};
    return add_bytes(type, b);
}

AttributeList& AttributeList::add_ulong(CK_ATTRIBUTE_TYPE type, CK_ULONG v) {
    Bytes b(sizeof v);
    std::copy_n(reinterpret_cast<const std::uint8_t*>(&v), sizeof v, b.begin());
    return add_bytes(type, b);
}

AttributeList& AttributeList::add_bytes(CK_ATTRIBUTE_TYPE type, ByteView v) {
    Bytes& stored = values_.emplace_back(v.begin(), v.end());
    attrs_.push_back(CK_ATTRIBUTE{type, stored.empty() ? nullptr : stored.data(), stored.size()});
    return *this;
}

std::string attribute_name(CK_ATTRIBUTE_TYPE type) {
    switch (type) {
        case CKA_CLASS: return "CKA_CLASS";
        case CKA_TOKEN: return "CKA_TOKEN";
        case CKA_PRIVATE: return "CKA_PRIVATE";
        case CKA_LABEL: return "CKA_LABEL";
        case CKA_VALUE: return "CKA_VALUE";
        case CKA_KEY_TYPE: return "CKA_KEY_TYPE";
        case CKA_ID: return "CKA_ID";
        case CKA_SENSITIVE: return "CKA_SENSITIVE";
        case CKA_DECRYPT: return "CKA_DECRYPT";
        case CKA_WRAP: return "CKA_WRAP";
        case CKA_UNWRAP: return "CKA_UNWRAP";
        case CKA_SIGN: return "CKA_SIGN";
        case CKA_DERIVE: return "CKA_DERIVE";
        case CKA_MODULUS: return "CKA_MODULUS";
        case CKA_PUBLIC_EXPONENT: return "CKA_PUBLIC_EXPONENT";
        case CKA_PRIVATE_EXPONENT: return "CKA_PRIVATE_EXPONENT";
        case CKA_EXTRACTABLE: return "CKA_EXTRACTABLE";
        case CKA_NEVER_EXTRACTABLE: return "CKA_NEVER_EXTRACTABLE";
        case CKA_ALWAYS_SENSITIVE: return "CKA_ALWAYS_SENSITIVE";
        case CKA_MODIFIABLE: return "CKA_MODIFIABLE";
        case CKA_EC_PARAMS: return "CKA_EC_PARAMS";
        case CKA_EC_POINT: return "CKA_EC_POINT";
        case CKA_WRAP_WITH_TRUSTED: return "CKA_WRAP_WITH_TRUSTED";
        case CKA_TRUSTED: return "CKA_TRUSTED";
        default:
            return "attribute 0x" + [&] {
                char buf[20];
                std::snprintf(buf, sizeof buf, "%lx", type);
                return std::string(buf);
            }();
    }
}

Result<Bytes> get_attribute(Session& s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type) {
    CK_ATTRIBUTE a{type, nullptr, 0};
    CK_RV rv = s.fn().C_GetAttributeValue(s.handle(), h, &a, 1);
    if (rv != CKR_OK) return ck_error(rv, "C_GetAttributeValue(" + attribute_name(type) + ")");
    if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
        return ck_error(CKR_ATTRIBUTE_TYPE_INVALID,
                        "C_GetAttributeValue(" + attribute_name(type) + ")");
    }
    Bytes out(a.ulValueLen);
    a.pValue = out.data();
    rv = s.fn().C_GetAttributeValue(s.handle(), h, &a, 1);
    if (rv != CKR_OK) return ck_error(rv, "C_GetAttributeValue(" + attribute_name(type) + ")");
    out.resize(a.ulValueLen);
    return out;
}

Result<bool> get_bool(Session& s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type) {
    const Bytes b = SIGNET_TRY(get_attribute(s, h, type));
    if (b.size() != sizeof(CK_BBOOL)) {
        return ck_error(CKR_GENERAL_ERROR, attribute_name(type) + " is not a CK_BBOOL");
    }
    return b[0] != CK_FALSE;
}

Result<CK_ULONG> get_ulong(Session& s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type) {
    const Bytes b = SIGNET_TRY(get_attribute(s, h, type));
    if (b.size() != sizeof(CK_ULONG)) {
        return ck_error(CKR_GENERAL_ERROR, attribute_name(type) + " is not a CK_ULONG");
    }
    CK_ULONG v = 0;
    std::copy_n(b.begin(), sizeof v, reinterpret_cast<std::uint8_t*>(&v));
    return v;
}

Result<std::vector<CK_OBJECT_HANDLE>> find_objects(Session& s, AttributeList& tmpl,
                                                   std::size_t max) {
    CK_FUNCTION_LIST& f = s.fn();
    // A search in a session without a login silently omits private objects, so "not found" (or a
    // short key list) would be a lie after someone else's C_Logout ended this application's login.
    // Report the lost login instead: Token::run recovers from it by logging in again.
    CK_SESSION_INFO info{};
    CK_RV rv = f.C_GetSessionInfo(s.handle(), &info);
    if (rv != CKR_OK) return ck_error(rv, "C_GetSessionInfo");
    if (info.state == CKS_RO_PUBLIC_SESSION || info.state == CKS_RW_PUBLIC_SESSION) {
        return ck_error(CKR_USER_NOT_LOGGED_IN, "C_FindObjects (session not logged in)");
    }
    rv = f.C_FindObjectsInit(s.handle(), tmpl.data(), tmpl.size());
    if (rv != CKR_OK) return ck_error(rv, "C_FindObjectsInit");
    std::vector<CK_OBJECT_HANDLE> out;
    CK_OBJECT_HANDLE batch[64];
    while (out.size() < max) {
        CK_ULONG n = 0;
        const CK_ULONG want = std::min<CK_ULONG>(64, max - out.size());
        rv = f.C_FindObjects(s.handle(), batch, want, &n);
        if (rv != CKR_OK) {
            (void)f.C_FindObjectsFinal(s.handle());
            return ck_error(rv, "C_FindObjects");
        }
        if (n == 0) break;
        out.insert(out.end(), batch, batch + n);
    }
    rv = f.C_FindObjectsFinal(s.handle());
    if (rv != CKR_OK) return ck_error(rv, "C_FindObjectsFinal");
    return out;
}

namespace {
// DER OIDs: prime256v1 1.2.840.10045.3.1.7, secp256k1 1.3.132.0.10, Ed25519 1.3.101.112.
const Bytes kOidP256{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
const Bytes kOidSecp256k1{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a};
const Bytes kOidEd25519{0x06, 0x03, 0x2b, 0x65, 0x70};
// PrintableString "edwards25519" (the other form PKCS#11 3.0 allows for CKA_EC_PARAMS).
const Bytes kNameEd25519{0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd', 's', '2', '5', '5', '1', '9'};
}  // namespace

const AlgorithmTraits& traits(Algorithm a) {
    static const AlgorithmTraits kP256{CKK_EC, CKM_EC_KEY_PAIR_GEN, kOidP256, 0};
    static const AlgorithmTraits kK1{CKK_EC, CKM_EC_KEY_PAIR_GEN, kOidSecp256k1, 0};
    static const AlgorithmTraits kEd{CKK_EC_EDWARDS, CKM_EC_EDWARDS_KEY_PAIR_GEN, kOidEd25519, 0};
    static const AlgorithmTraits kRsa2048{CKK_RSA, CKM_RSA_PKCS_KEY_PAIR_GEN, {}, 2048};
    static const AlgorithmTraits kRsa3072{CKK_RSA, CKM_RSA_PKCS_KEY_PAIR_GEN, {}, 3072};
    switch (a) {
        case Algorithm::ecdsa_p256: return kP256;
        case Algorithm::ecdsa_secp256k1: return kK1;
        case Algorithm::ed25519: return kEd;
        case Algorithm::rsa_2048: return kRsa2048;
        case Algorithm::rsa_3072: return kRsa3072;
    }
    return kP256;
}

void signing_key_templates(Algorithm a, bool extractable, std::string_view label, ByteView id,
                           TemplateUse use, AttributeList& pub, AttributeList& priv) {
    const AlgorithmTraits& t = traits(a);
    pub.add_ulong(CKA_CLASS, CKO_PUBLIC_KEY)
        .add_ulong(CKA_KEY_TYPE, t.key_type)
        .add_bool(CKA_TOKEN, true)
        .add_bool(CKA_PRIVATE, false)
        .add_bool(CKA_MODIFIABLE, false)
        .add_string(CKA_LABEL, label)
        .add_bytes(CKA_ID, id)
        .add_bool(CKA_VERIFY, true)
        .add_bool(CKA_ENCRYPT, false)
        .add_bool(CKA_WRAP, false)
        .add_bool(CKA_DERIVE, false);
    priv.add_ulong(CKA_CLASS, CKO_PRIVATE_KEY)
        .add_ulong(CKA_KEY_TYPE, t.key_type)
        .add_bool(CKA_TOKEN, true)
        .add_bool(CKA_PRIVATE, true)
        .add_string(CKA_LABEL, label)
        .add_bytes(CKA_ID, id)
        .add_bool(CKA_SENSITIVE, true)
        .add_bool(CKA_EXTRACTABLE, extractable)
        .add_bool(CKA_WRAP_WITH_TRUSTED, true)
        .add_bool(CKA_SIGN, true)
        .add_bool(CKA_SIGN_RECOVER, false)
        .add_bool(CKA_DECRYPT, false)
        .add_bool(CKA_UNWRAP, false)
        .add_bool(CKA_DERIVE, false);
    if (use == TemplateUse::unwrap) return;
    priv.add_bool(CKA_MODIFIABLE, false);
    static const Bytes kRsaExponent{0x01, 0x00, 0x01};
    if (t.key_type == CKK_RSA) {
        pub.add_ulong(CKA_MODULUS_BITS, t.modulus_bits)
            .add_bytes(CKA_PUBLIC_EXPONENT, kRsaExponent);
    } else {
        pub.add_bytes(CKA_EC_PARAMS, t.ec_params);
    }
}

Result<Algorithm> algorithm_of(CK_KEY_TYPE type, ByteView ec_params, std::size_t modulus_bytes) {
    const auto same = [&](const Bytes& b) { return std::ranges::equal(ec_params, b); };
    if (type == CKK_EC && same(kOidP256)) return Algorithm::ecdsa_p256;
    if (type == CKK_EC && same(kOidSecp256k1)) return Algorithm::ecdsa_secp256k1;
    if (type == CKK_EC_EDWARDS && (same(kOidEd25519) || same(kNameEd25519)))
        return Algorithm::ed25519;
    if (type == CKK_RSA && modulus_bytes == 256) return Algorithm::rsa_2048;
    if (type == CKK_RSA && modulus_bytes == 384) return Algorithm::rsa_3072;
    return make_error(Errc::unsupported, "key type " + std::to_string(type) +
                                             " with these parameters is not a Signet algorithm");
}

}  // namespace signet::pkcs11::detail
