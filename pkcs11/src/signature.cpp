#include "signet/pkcs11/signature.hpp"

#include <openssl/core_names.h>
#include <openssl/rsa.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include <algorithm>
#include <memory>

#include "ossl.hpp"
#include "signet/pkcs11/digest.hpp"
#include "signet/pkcs11/public_key.hpp"

namespace signet::pkcs11 {
using namespace detail;

namespace {

constexpr std::size_t kDigestSize = 32;

struct SecpContextFree {
    void operator()(secp256k1_context* c) const noexcept { secp256k1_context_destroy(c); }
};

const secp256k1_context* secp_context() {
    // Immutable after creation; libsecp256k1 contexts are safe for concurrent const use.
    static const std::unique_ptr<secp256k1_context, SecpContextFree> ctx(
        secp256k1_context_create(SECP256K1_CONTEXT_VERIFY));
    return ctx.get();
}

Error bad(std::string what) { return make_error(Errc::invalid_argument, std::move(what)); }

}  // namespace

Result<Bytes> prepare_sign_input(Algorithm a, const SignRequest& req) {
    const std::string alg(to_string(a));
    if (req.encoding == SignatureEncoding::eth && a != Algorithm::ecdsa_secp256k1) {
        return make_error(Errc::unsupported,
                          "encoding 'eth' needs an ecdsa-secp256k1 key, not " + alg);
    }
    if (a == Algorithm::ed25519) {
        if (req.input != Input::message) {
            return make_error(Errc::unsupported,
                              "ed25519 signs the message itself (PureEdDSA): send 'message', not "
                              "'digest'");
        }
        return Bytes(req.data.begin(), req.data.end());
    }
    if (is_rsa(a) && req.hash != Hash::sha256) {
        return make_error(Errc::unsupported, alg + " signs SHA-256 digests only");
    }
    if (req.input == Input::digest) {
        if (req.data.size() != kDigestSize) {
            return bad("digest must be 32 bytes (" + std::string(to_string(req.hash)) + "), got " +
                       std::to_string(req.data.size()));
        }
        return Bytes(req.data.begin(), req.data.end());
    }
    return digest(req.hash, req.data);
}

Result<Bytes> ecdsa_raw_to_der(ByteView raw) {
    if (raw.size() != 2 * kDigestSize) return bad("raw ECDSA signature must be 64 bytes");
    EcdsaSigPtr sig(ECDSA_SIG_new());
    BIGNUM* r = BN_bin2bn(raw.data(), 32, nullptr);
    BIGNUM* s = BN_bin2bn(raw.data() + 32, 32, nullptr);
    if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
        BN_free(r);
        BN_free(s);
        return ossl_error(Errc::internal, "ECDSA_SIG_set0");
    }
    const int len = i2d_ECDSA_SIG(sig.get(), nullptr);
    if (len <= 0) return ossl_error(Errc::internal, "i2d_ECDSA_SIG");
    Bytes out(static_cast<std::size_t>(len));
    unsigned char* p = out.data();
    i2d_ECDSA_SIG(sig.get(), &p);
    return out;
}

Result<Bytes> ecdsa_der_to_raw(ByteView der, std::size_t half_size) {
    const unsigned char* p = der.data();
    EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
    if (!sig || p != der.data() + der.size()) return bad("not a DER ECDSA signature");
    const BIGNUM* r = ECDSA_SIG_get0_r(sig.get());
    const BIGNUM* s = ECDSA_SIG_get0_s(sig.get());
    const auto half = static_cast<int>(half_size);
    if (BN_num_bytes(r) > half || BN_num_bytes(s) > half) return bad("ECDSA signature too large");
    Bytes out = bn_to_bytes(r, half);
    const Bytes sb = bn_to_bytes(s, half);
    out.insert(out.end(), sb.begin(), sb.end());
    return out;
}

Result<bool> secp256k1_normalize_low_s(Bytes& raw) {
    if (raw.size() != 64) return bad("raw secp256k1 signature must be 64 bytes");
    secp256k1_ecdsa_signature sig;
    if (!secp256k1_ecdsa_signature_parse_compact(secp_context(), &sig, raw.data())) {
        return bad("secp256k1 signature out of range");
    }
    const bool changed = secp256k1_ecdsa_signature_normalize(secp_context(), &sig, &sig) == 1;
    secp256k1_ecdsa_signature_serialize_compact(secp_context(), raw.data(), &sig);
    return changed;
}

Result<std::uint8_t> secp256k1_recovery_id(ByteView raw, ByteView digest32, ByteView point65) {
    if (raw.size() != 64 || digest32.size() != 32 || point65.size() != 65) {
        return bad("recovery id needs a 64-byte signature, 32-byte digest and 65-byte point");
    }
    for (int recid = 0; recid < 4; ++recid) {
        secp256k1_ecdsa_recoverable_signature rsig;
        if (!secp256k1_ecdsa_recoverable_signature_parse_compact(secp_context(), &rsig, raw.data(),
                                                                 recid)) {
            continue;
        }
        secp256k1_pubkey pub;
        if (!secp256k1_ecdsa_recover(secp_context(), &pub, &rsig, digest32.data())) continue;
        unsigned char out[65];
        std::size_t len = sizeof out;
        secp256k1_ec_pubkey_serialize(secp_context(), out, &len, &pub, SECP256K1_EC_UNCOMPRESSED);
        if (len == 65 && std::equal(point65.begin(), point65.end(), out)) {
            return static_cast<std::uint8_t>(recid);
        }
    }
    return make_error(Errc::verification_failed,
                      "no recovery id recovers the key's public point from this signature");
}

Result<bool> verify_signature(Algorithm a, ByteView spki, const SignRequest& req,
                              ByteView signature) {
    SIGNET_TRY(check_spki(a, spki));
    const Bytes tbs = SIGNET_TRY(prepare_sign_input(a, req));
    auto key = SIGNET_TRY(parse_spki(spki));

    if (a == Algorithm::ed25519) {
        EvpMdCtxPtr md(EVP_MD_CTX_new());
        if (!md || EVP_DigestVerifyInit(md.get(), nullptr, nullptr, nullptr, key.get()) != 1) {
            return ossl_error(Errc::internal, "EVP_DigestVerifyInit(Ed25519)");
        }
        const int rc =
            EVP_DigestVerify(md.get(), signature.data(), signature.size(), tbs.data(), tbs.size());
        ERR_clear_error();
        return rc == 1;
    }

    Bytes sig(signature.begin(), signature.end());
    if (is_ecdsa(a) && req.encoding != SignatureEncoding::der) {
        const std::size_t want = req.encoding == SignatureEncoding::eth ? 65 : 64;
        if (sig.size() != want) return false;
        if (req.encoding == SignatureEncoding::eth) {
            const int v = sig[64];
            if (v != 27 && v != 28) return false;
            sig.resize(64);
            const Bytes point = SIGNET_TRY(spki_public_point(a, spki));
            auto recid = secp256k1_recovery_id(sig, tbs, point);
            if (!recid || *recid != v - 27) return false;
        }
        sig = SIGNET_TRY(ecdsa_raw_to_der(sig));
    }

    EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(key.get(), nullptr));
    if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1) {
        return ossl_error(Errc::internal, "EVP_PKEY_verify_init");
    }
    if (is_rsa(a)) {
        const bool pss = req.rsa_padding == RsaPadding::pss;
        if (EVP_PKEY_CTX_set_rsa_padding(ctx.get(),
                                         pss ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING) != 1 ||
            EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) != 1 ||
            (pss && (EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), RSA_PSS_SALTLEN_DIGEST) != 1 ||
                     EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), EVP_sha256()) != 1))) {
            return ossl_error(Errc::internal, "configuring RSA verification");
        }
    }
    const int rc = EVP_PKEY_verify(ctx.get(), sig.data(), sig.size(), tbs.data(), tbs.size());
    ERR_clear_error();
    return rc == 1;
}

}  // namespace signet::pkcs11
