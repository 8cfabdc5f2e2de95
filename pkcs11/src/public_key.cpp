#include "signet/pkcs11/public_key.hpp"

#include <openssl/core_names.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cctype>

#include "ossl.hpp"
#include "signet/pkcs11/digest.hpp"

namespace signet::pkcs11 {
using namespace detail;

namespace {

const char* group_name(Algorithm a) {
    return a == Algorithm::ecdsa_secp256k1 ? "secp256k1" : "prime256v1";
}

// CKA_EC_POINT is a DER OCTET STRING around the point; some modules return the bare point.
ByteView unwrap_octet_string(ByteView v, std::size_t point_size) {
    if (v.size() == point_size + 2 && v[0] == 0x04 && v[1] == point_size) return v.subspan(2);
    return v;
}

Result<Bytes> encode_spki(const EVP_PKEY* key) {
    const int len = i2d_PUBKEY(key, nullptr);
    if (len <= 0) return ossl_error(Errc::internal, "i2d_PUBKEY");
    Bytes out(static_cast<std::size_t>(len));
    unsigned char* p = out.data();
    i2d_PUBKEY(key, &p);
    return out;
}

Result<EvpPkeyPtr> key_from_params(const char* type, OSSL_PARAM_BLD* bld) {
    ParamPtr params(OSSL_PARAM_BLD_to_param(bld));
    EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
    EVP_PKEY* raw = nullptr;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) <= 0 ||
        EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) <= 0) {
        return ossl_error(Errc::invalid_argument, std::string("building ") + type + " public key");
    }
    return EvpPkeyPtr(raw);
}

Result<BignumPtr> get_bn(const EVP_PKEY* key, const char* name) {
    BIGNUM* bn = nullptr;
    if (EVP_PKEY_get_bn_param(key, name, &bn) <= 0) {
        return ossl_error(Errc::invalid_argument, std::string("public key has no ") + name);
    }
    return BignumPtr(bn);
}

}  // namespace

Result<Bytes> spki_from_ec_point(Algorithm a, ByteView ec_point) {
    if (a == Algorithm::ed25519) {
        const ByteView raw = unwrap_octet_string(ec_point, 32);
        if (raw.size() != 32) {
            return make_error(Errc::invalid_argument, "Ed25519 public key must be 32 bytes");
        }
        EvpPkeyPtr key(
            EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw.data(), raw.size()));
        if (!key) return ossl_error(Errc::invalid_argument, "Ed25519 public key");
        return encode_spki(key.get());
    }
    if (!is_ecdsa(a)) return make_error(Errc::invalid_argument, "not an EC algorithm");
    const ByteView point = unwrap_octet_string(ec_point, 65);
    if (point.size() != 65 || point[0] != 0x04) {
        return make_error(Errc::invalid_argument, "EC point must be 65 bytes, uncompressed");
    }
    ParamBldPtr bld(OSSL_PARAM_BLD_new());
    if (!bld ||
        !OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group_name(a), 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                          point.size())) {
        return ossl_error(Errc::internal, "OSSL_PARAM_BLD");
    }
    auto key = SIGNET_TRY(key_from_params("EC", bld.get()));
    return encode_spki(key.get());
}

Result<Bytes> spki_from_rsa(ByteView modulus, ByteView public_exponent) {
    BignumPtr n(BN_bin2bn(modulus.data(), static_cast<int>(modulus.size()), nullptr));
    BignumPtr e(
        BN_bin2bn(public_exponent.data(), static_cast<int>(public_exponent.size()), nullptr));
    ParamBldPtr bld(OSSL_PARAM_BLD_new());
    if (!n || !e || !bld || !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) ||
        !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get())) {
        return ossl_error(Errc::internal, "OSSL_PARAM_BLD");
    }
    auto key = SIGNET_TRY(key_from_params("RSA", bld.get()));
    return encode_spki(key.get());
}

namespace {

// `key` is a public key of algorithm `a`.
Result<void> check_key(Algorithm a, EVP_PKEY* key) {
    const std::string mismatch = "public key is not " + std::string(to_string(a));
    switch (a) {
        case Algorithm::ed25519:
            if (EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
                return make_error(Errc::invalid_argument, mismatch);
            }
            return ok();
        case Algorithm::ecdsa_p256:
        case Algorithm::ecdsa_secp256k1: {
            char group[64] = {};
            std::size_t len = 0;
            if (EVP_PKEY_get_id(key) != EVP_PKEY_EC ||
                EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                               &len) <= 0 ||
                std::string_view(group, len) != group_name(a)) {
                return make_error(Errc::invalid_argument, mismatch);
            }
            return ok();
        }
        case Algorithm::rsa_2048:
        case Algorithm::rsa_3072:
            if (EVP_PKEY_get_id(key) != EVP_PKEY_RSA ||
                EVP_PKEY_get_bits(key) != (a == Algorithm::rsa_2048 ? 2048 : 3072)) {
                return make_error(Errc::invalid_argument, mismatch);
            }
            return ok();
    }
    return make_error(Errc::invalid_argument, mismatch);
}

}  // namespace

Result<void> check_spki(Algorithm a, ByteView spki) {
    auto key = SIGNET_TRY(parse_spki(spki));
    return check_key(a, key.get());
}

std::string spki_to_pem(ByteView spki) {
    const std::string b64 = base64_encode(spki);
    std::string pem = "-----BEGIN PUBLIC KEY-----\n";
    for (std::size_t i = 0; i < b64.size(); i += 64) {
        pem.append(b64, i, 64);
        pem += '\n';
    }
    pem += "-----END PUBLIC KEY-----\n";
    return pem;
}

Result<Bytes> spki_from_pem(std::string_view pem) {
    constexpr std::string_view kBegin = "-----BEGIN PUBLIC KEY-----";
    constexpr std::string_view kEnd = "-----END PUBLIC KEY-----";
    const auto b = pem.find(kBegin);
    const auto e = pem.find(kEnd);
    if (b == std::string_view::npos || e == std::string_view::npos || e < b) {
        return make_error(Errc::invalid_argument, "not a PEM public key");
    }
    std::string body;
    for (const char c : pem.substr(b + kBegin.size(), e - b - kBegin.size())) {
        if (!std::isspace(static_cast<unsigned char>(c))) body += c;
    }
    auto der = SIGNET_TRY(base64_decode(body));
    SIGNET_TRY(parse_spki(der));
    return der;
}

std::string Jwk::to_json() const {
    // Values are base64url or fixed names: nothing needs JSON escaping.
    auto member = [](std::string_view k, std::string_view v) {
        return "\"" + std::string(k) + "\":\"" + std::string(v) + "\"";
    };
    if (kty == "RSA")
        return "{" + member("e", e) + "," + member("kty", kty) + "," + member("n", n) + "}";
    if (kty == "OKP")
        return "{" + member("crv", crv) + "," + member("kty", kty) + "," + member("x", x) + "}";
    return "{" + member("crv", crv) + "," + member("kty", kty) + "," + member("x", x) + "," +
           member("y", y) + "}";
}

Result<Bytes> spki_public_point(Algorithm a, ByteView spki) {
    // One decode (OpenSSL 3's decoders cost ~0.3 ms per SPKI, measured).
    auto key = SIGNET_TRY(parse_spki(spki));
    SIGNET_TRY(check_key(a, key.get()));
    if (a == Algorithm::ed25519) {
        Bytes raw(32);
        std::size_t len = raw.size();
        if (EVP_PKEY_get_raw_public_key(key.get(), raw.data(), &len) <= 0 || len != 32) {
            return ossl_error(Errc::invalid_argument, "Ed25519 raw public key");
        }
        return raw;
    }
    if (!is_ecdsa(a)) return make_error(Errc::invalid_argument, "RSA keys have no EC point");
    auto x = SIGNET_TRY(get_bn(key.get(), OSSL_PKEY_PARAM_EC_PUB_X));
    auto y = SIGNET_TRY(get_bn(key.get(), OSSL_PKEY_PARAM_EC_PUB_Y));
    Bytes point{0x04};
    const Bytes xb = bn_to_bytes(x.get(), 32);
    const Bytes yb = bn_to_bytes(y.get(), 32);
    point.insert(point.end(), xb.begin(), xb.end());
    point.insert(point.end(), yb.begin(), yb.end());
    return point;
}

Result<Jwk> spki_to_jwk(Algorithm a, ByteView spki) {
    SIGNET_TRY(check_spki(a, spki));
    Jwk jwk;
    if (is_rsa(a)) {
        const RsaComponents rsa = SIGNET_TRY(spki_rsa_components(spki));
        jwk.kty = "RSA";
        jwk.n = base64url_encode(rsa.modulus);
        jwk.e = base64url_encode(rsa.public_exponent);
        return jwk;
    }
    const Bytes point = SIGNET_TRY(spki_public_point(a, spki));
    if (a == Algorithm::ed25519) {
        jwk.kty = "OKP";
        jwk.crv = "Ed25519";
        jwk.x = base64url_encode(point);
        return jwk;
    }
    jwk.kty = "EC";
    jwk.crv = a == Algorithm::ecdsa_secp256k1 ? "secp256k1" : "P-256";
    jwk.x = base64url_encode(ByteView(point).subspan(1, 32));
    jwk.y = base64url_encode(ByteView(point).subspan(33, 32));
    return jwk;
}

Result<RsaComponents> spki_rsa_components(ByteView spki) {
    auto key = SIGNET_TRY(parse_spki(spki));
    if (EVP_PKEY_get_id(key.get()) != EVP_PKEY_RSA) {
        return make_error(Errc::invalid_argument, "public key is not RSA");
    }
    auto n = SIGNET_TRY(get_bn(key.get(), OSSL_PKEY_PARAM_RSA_N));
    auto e = SIGNET_TRY(get_bn(key.get(), OSSL_PKEY_PARAM_RSA_E));
    return RsaComponents{bn_to_bytes(n.get()), bn_to_bytes(e.get())};
}

std::string eip55(ByteView address20) {
    const std::string lower = hex_encode(address20);
    const Bytes h = keccak256(as_bytes(lower));
    std::string out = "0x";
    for (std::size_t i = 0; i < lower.size(); ++i) {
        const int nibble = (i % 2 == 0) ? (h[i / 2] >> 4) : (h[i / 2] & 0x0f);
        const char c = lower[i];
        out += (c >= 'a' && c <= 'f' && nibble >= 8) ? static_cast<char>(c - 'a' + 'A') : c;
    }
    return out;
}

Result<std::string> ethereum_address(ByteView spki) {
    const Bytes point = SIGNET_TRY(spki_public_point(Algorithm::ecdsa_secp256k1, spki));
    const Bytes h = keccak256(ByteView(point).subspan(1));  // keccak256(X || Y)
    return eip55(ByteView(h).subspan(12));
}

}  // namespace signet::pkcs11
