// Internal: single owners for OpenSSL objects, and the OpenSSL error queue as text.
#pragma once

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

#include "signet/core/bytes.hpp"
#include "signet/core/result.hpp"

namespace signet::pkcs11::detail {

template <auto Fn>
struct OsslDeleter {
    template <class T>
    void operator()(T* p) const noexcept {
        Fn(p);
    }
};

using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, OsslDeleter<EVP_PKEY_free>>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, OsslDeleter<EVP_PKEY_CTX_free>>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, OsslDeleter<EVP_MD_CTX_free>>;
using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, OsslDeleter<OSSL_PARAM_BLD_free>>;
using ParamPtr = std::unique_ptr<OSSL_PARAM, OsslDeleter<OSSL_PARAM_free>>;
using BignumPtr = std::unique_ptr<BIGNUM, OsslDeleter<BN_free>>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, OsslDeleter<ECDSA_SIG_free>>;

// Drains the thread's OpenSSL error queue into one line ("" when empty).
inline std::string openssl_errors() {
    std::string out;
    while (const unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!out.empty()) out += "; ";
        out += buf;
    }
    return out;
}

inline Error ossl_error(Errc code, std::string what) {
    const std::string detail = openssl_errors();
    if (!detail.empty()) what += " (" + detail + ")";
    return make_error(code, std::move(what));
}

inline Result<EvpPkeyPtr> parse_spki(ByteView spki) {
    const unsigned char* p = spki.data();
    EvpPkeyPtr key(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size())));
    if (!key || p != spki.data() + spki.size()) {
        return ossl_error(Errc::invalid_argument, "public key is not a valid SubjectPublicKeyInfo");
    }
    return key;
}

inline Bytes bn_to_bytes(const BIGNUM* bn, int pad_to = 0) {
    const int n = pad_to > 0 ? pad_to : BN_num_bytes(bn);
    Bytes out(static_cast<std::size_t>(n));
    if (pad_to > 0) {
        BN_bn2binpad(bn, out.data(), n);
    } else {
        BN_bn2bin(bn, out.data());
    }
    return out;
}

}  // namespace signet::pkcs11::detail
