// The appliance's TLS identity: an EC P-256 key generated inside the HSM on a separate identity
// token (libp11 cannot enumerate a token holding Ed25519 keys), used by OpenSSL through libp11's
// EVP_PKEY, with a self-signed certificate created at first start and kept in <data_dir>/tls.
#pragma once

#include <openssl/ssl.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "signet/core/logger.hpp"
#include "signet/core/result.hpp"
#include "signet/core/secret_buffer.hpp"
#include "signet/pkcs11/module.hpp"

namespace signet::daemon {

struct TlsIdentityOptions {
    std::shared_ptr<pkcs11::Module> module;
    std::string module_path;
    std::string token_label;
    std::filesystem::path pin_file;
    std::filesystem::path dir;  // cert.pem lives here
    std::vector<std::string> subject_alt_names;
    bool request_client_certs = true;
};

// Owns the libp11 context and the HSM-backed EVP_PKEY for the life of the process.
class TlsIdentity {
public:
    // Finds or generates the identity key, creates or reuses the certificate, and loads the key
    // through libp11. Errors say which step failed and what to check.
    [[nodiscard]] static Result<std::unique_ptr<TlsIdentity>> load(const TlsIdentityOptions& o,
                                                                   Logger& log);
    ~TlsIdentity();
    TlsIdentity(const TlsIdentity&) = delete;
    TlsIdentity& operator=(const TlsIdentity&) = delete;

    // A new server SSL_CTX (TLS 1.2+) with the certificate and HSM key; ownership to the caller.
    // With request_client_certs, clients may present any certificate (it is pinned by fingerprint
    // against registered clients, never trusted by issuer).
    [[nodiscard]] Result<SSL_CTX*> make_server_context() const;
    // Presents this identity (certificate and HSM key) as the client certificate of `ctx`: how the
    // appliance proves itself to its peer when it forwards a request.
    [[nodiscard]] Result<void> use_as_client(SSL_CTX* ctx) const;

    // SHA-256 of the certificate (DER), lower-case hex with ':' separators.
    [[nodiscard]] const std::string& fingerprint() const noexcept { return fingerprint_; }
    [[nodiscard]] const std::filesystem::path& cert_file() const noexcept { return cert_file_; }
    [[nodiscard]] bool created() const noexcept { return created_; }

private:
    TlsIdentity() = default;
    struct P11;
    std::unique_ptr<P11> p11_;
    EVP_PKEY* key_ = nullptr;  // owned; private operations run in the HSM
    X509* cert_ = nullptr;     // owned
    std::string fingerprint_;
    std::filesystem::path cert_file_;
    bool created_ = false;
    bool request_client_certs_ = true;
};

// SHA-256 fingerprint of a DER certificate as "ab:cd:..".
[[nodiscard]] std::string cert_fingerprint(X509* cert);

}  // namespace signet::daemon
