#include "signet_test/independent_verify.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <fstream>
#include <memory>
#include <stdexcept>

#include "signet_test/crypto_oracle.hpp"
#include "signet_test/test_hsm.hpp"

namespace signet::test {

bool evp_verify(pkcs11::Algorithm a, const Bytes& spki_der, const Bytes& data, const Bytes& sig,
                bool pss) {
    const unsigned char* p = spki_der.data();
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
        d2i_PUBKEY(nullptr, &p, static_cast<long>(spki_der.size())), &EVP_PKEY_free);
    if (!key) return false;
    if (a == pkcs11::Algorithm::ed25519) {
        std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(),
                                                                   &EVP_MD_CTX_free);
        return EVP_DigestVerifyInit(md.get(), nullptr, nullptr, nullptr, key.get()) == 1 &&
               EVP_DigestVerify(md.get(), sig.data(), sig.size(), data.data(), data.size()) == 1;
    }
    std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
        EVP_PKEY_CTX_new(key.get(), nullptr), &EVP_PKEY_CTX_free);
    if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1) return false;
    if (pkcs11::is_rsa(a)) {
        if (EVP_PKEY_CTX_set_rsa_padding(ctx.get(),
                                         pss ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING) != 1 ||
            EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) != 1) {
            return false;
        }
        if (pss && EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), 32) != 1) return false;
    }
    return EVP_PKEY_verify(ctx.get(), sig.data(), sig.size(), data.data(), data.size()) == 1;
}

bool openssl_cli_verify(pkcs11::Algorithm a, const std::string& public_pem, const Bytes& message,
                        const Bytes& sig, bool pss) {
    const auto dir = make_temp_dir("cli");
    auto write = [&](const char* name, const void* d, std::size_t n) {
        std::ofstream f(dir / name, std::ios::binary);
        f.write(static_cast<const char*>(d), static_cast<std::streamsize>(n));
    };
    write("pub.pem", public_pem.data(), public_pem.size());
    write("msg.bin", message.data(), message.size());
    write("sig.bin", sig.data(), sig.size());
    const std::string d = dir.string();
    std::string cmd;
    if (a == pkcs11::Algorithm::ed25519) {
        cmd = "openssl pkeyutl -verify -pubin -inkey " + d + "/pub.pem -rawin -in " + d +
              "/msg.bin -sigfile " + d + "/sig.bin";
    } else {
        cmd = "openssl dgst -sha256 -verify " + d + "/pub.pem -signature " + d + "/sig.bin";
        if (pss) {
            cmd +=
                " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 -sigopt "
                "rsa_mgf1_md:sha256";
        }
        cmd += " " + d + "/msg.bin";
    }
    const CommandResult r = run_command(cmd);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    return r.status == 0 && (r.output.find("Verified OK") != std::string::npos ||
                             r.output.find("Signature Verified Successfully") != std::string::npos);
}

std::string oracle_pem(const Bytes& spki_der) {
    const unsigned char* p = spki_der.data();
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
        d2i_PUBKEY(nullptr, &p, static_cast<long>(spki_der.size())), &EVP_PKEY_free);
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
    if (!key || !bio || PEM_write_bio_PUBKEY(bio.get(), key.get()) != 1) {
        throw std::runtime_error("oracle_pem: not a public key");
    }
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(len));
}

IndependentVerdict verify_independently(const pkcs11::KeyInfo& key, const Bytes& message,
                                        const pkcs11::SignRequest& req,
                                        const pkcs11::Signature& sig) {
    using pkcs11::Algorithm;
    const Algorithm a = key.algorithm;
    const bool pss = pkcs11::is_rsa(a) && req.rsa_padding == pkcs11::RsaPadding::pss;
    Bytes der = sig.bytes;
    if (pkcs11::is_ecdsa(a) && req.encoding != pkcs11::SignatureEncoding::der) {
        der = oracle_ecdsa_der(sig.bytes);
    }
    IndependentVerdict v;
    if (a == Algorithm::ed25519) {
        v.evp = evp_verify(a, key.spki_der, message, der);
        v.cli = openssl_cli_verify(a, oracle_pem(key.spki_der), message, der);
        return v;
    }
    v.evp = evp_verify(a, key.spki_der, oracle_digest(req.hash, message), der, pss);
    if (req.hash == pkcs11::Hash::sha256) {
        v.cli = openssl_cli_verify(a, oracle_pem(key.spki_der), message, der, pss);
    }
    return v;
}

}  // namespace signet::test
