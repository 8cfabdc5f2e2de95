#include "tls_identity.hpp"

#include <arpa/inet.h>
#include <libp11.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <set>

#include "signet/pkcs11/key_store.hpp"

namespace signet::daemon {
namespace {

constexpr const char* kIdentityLabel = "signet.tls-identity";
constexpr long kValidityDays = 825;

Error tls_error(std::string what) {
    std::string detail;
    while (const unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        detail += (detail.empty() ? " (" : "; ") + std::string(buf);
    }
    if (!detail.empty()) detail += ")";
    return make_error(Errc::internal, std::move(what) + detail);
}

int accept_any_client_cert(int, X509_STORE_CTX*) {
    // Client certificates are self-signed and pinned by fingerprint to registered clients; the
    // chain is not what grants access.
    return 1;
}

Result<X509*> read_cert(const std::filesystem::path& file) {
    FILE* f = std::fopen(file.c_str(), "r");
    if (!f) return make_error(Errc::not_found, "no certificate at " + file.string());
    X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr);
    std::fclose(f);
    if (!x) return tls_error("certificate " + file.string() + " is not PEM");
    return x;
}

bool same_public_key(X509* cert, ByteView spki) {
    EVP_PKEY* pub = X509_get0_pubkey(cert);
    if (!pub) return false;
    unsigned char* der = nullptr;
    const int n = i2d_PUBKEY(pub, &der);
    const bool same = n > 0 && static_cast<std::size_t>(n) == spki.size() &&
                      std::equal(spki.begin(), spki.end(), der);
    OPENSSL_free(der);
    return same;
}

Result<void> add_ext(X509* x, int nid, const std::string& value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    if (!ext) return tls_error("certificate extension " + value);
    const int rc = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (rc != 1) return tls_error("adding certificate extension");
    return ok();
}

std::set<std::string> cert_sans(X509* cert) {
    std::set<std::string> out;
    auto* names =
        static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
    if (!names) return out;
    for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
        const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
        if (n->type == GEN_DNS) {
            const auto* d = n->d.dNSName;
            out.emplace(reinterpret_cast<const char*>(ASN1_STRING_get0_data(d)),
                        static_cast<std::size_t>(ASN1_STRING_length(d)));
        } else if (n->type == GEN_IPADD) {
            const auto* ip = n->d.iPAddress;
            char text[INET6_ADDRSTRLEN] = {};
            const int len = ASN1_STRING_length(ip);
            if (inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(ip), text,
                          sizeof text)) {
                out.emplace(text);
            }
        }
    }
    GENERAL_NAMES_free(names);
    return out;
}

// A stored certificate is reused while it certifies the HSM key, names exactly the configured
// subject alternative names, and is valid for at least 30 more days; otherwise it is renewed.
bool cert_still_good(X509* cert, ByteView spki, const std::vector<std::string>& sans) {
    if (!same_public_key(cert, spki)) return false;
    if (cert_sans(cert) != std::set<std::string>(sans.begin(), sans.end())) return false;
    const std::time_t horizon = std::time(nullptr) + 30L * 24 * 3600;
    return X509_cmp_time(X509_get0_notAfter(cert), const_cast<std::time_t*>(&horizon)) > 0;
}

// Self-signed certificate for the HSM key; the signature is made by the HSM through libp11.
Result<X509*> make_cert(EVP_PKEY* hsm_key, ByteView spki, const std::vector<std::string>& sans) {
    const unsigned char* p = spki.data();
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pub(
        d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size())), EVP_PKEY_free);
    std::unique_ptr<X509, decltype(&X509_free)> x(X509_new(), X509_free);
    if (!pub || !x) return tls_error("allocating certificate");
    unsigned char serial[16];
    if (RAND_bytes(serial, sizeof serial) != 1) return tls_error("random certificate serial");
    serial[0] &= 0x7f;  // positive
    std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(BN_bin2bn(serial, sizeof serial, nullptr),
                                                   BN_free);
    X509_set_version(x.get(), 2);
    BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(x.get()));
    X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x.get()), kValidityDays * 24 * 3600);
    X509_NAME* name = X509_get_subject_name(x.get());
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("Signet"), -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("signet appliance"), -1, -1,
                               0);
    X509_set_issuer_name(x.get(), name);
    X509_set_pubkey(x.get(), pub.get());
    std::string san;
    for (const auto& s : sans) {
        in6_addr tmp{};
        const bool ip =
            inet_pton(AF_INET, s.c_str(), &tmp) == 1 || inet_pton(AF_INET6, s.c_str(), &tmp) == 1;
        if (!san.empty()) san += ",";
        san += (ip ? "IP:" : "DNS:") + s;
    }
    SIGNET_TRY(add_ext(x.get(), NID_basic_constraints, "critical,CA:FALSE"));
    SIGNET_TRY(add_ext(x.get(), NID_key_usage, "critical,digitalSignature"));
    SIGNET_TRY(add_ext(x.get(), NID_ext_key_usage, "serverAuth"));
    if (!san.empty()) SIGNET_TRY(add_ext(x.get(), NID_subject_alt_name, san));
    if (X509_sign(x.get(), hsm_key, EVP_sha256()) <= 0)
        return tls_error("signing the certificate in the HSM");
    return x.release();
}

Result<void> write_cert(X509* cert, const std::filesystem::path& file) {
    const auto tmp = file.string() + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (!f) return make_error(Errc::io_error, "cannot write " + tmp);
    const bool okw = PEM_write_X509(f, cert) == 1;
    const bool closed = std::fclose(f) == 0;
    if (!okw || !closed) return make_error(Errc::io_error, "cannot write " + tmp);
    std::error_code ec;
    std::filesystem::rename(tmp, file, ec);
    if (ec) return make_error(Errc::io_error, "cannot rename " + tmp + ": " + ec.message());
    return ok();
}

}  // namespace

struct TlsIdentity::P11 {
    PKCS11_CTX* ctx = nullptr;
    PKCS11_SLOT* slots = nullptr;
    unsigned int nslots = 0;
    ~P11() {
        if (slots) PKCS11_release_all_slots(ctx, slots, nslots);
        // No PKCS11_CTX_unload: it would C_Finalize the module shared with signet::pkcs11.
        if (ctx) PKCS11_CTX_free(ctx);
    }
};

std::string cert_fingerprint(X509* cert) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    X509_digest(cert, EVP_sha256(), md, &n);
    std::string out;
    for (unsigned int i = 0; i < n; ++i) {
        char b[4];
        std::snprintf(b, sizeof b, i ? ":%02x" : "%02x", md[i]);
        out += b;
    }
    return out;
}

Result<std::unique_ptr<TlsIdentity>> TlsIdentity::load(const TlsIdentityOptions& o, Logger& log) {
    std::unique_ptr<TlsIdentity> id(new TlsIdentity());
    id->request_client_certs_ = o.request_client_certs;
    id->cert_file_ = o.dir / "cert.pem";
    std::error_code ec;
    std::filesystem::create_directories(o.dir, ec);
    ::chmod(o.dir.c_str(), 0700);

    // 1. The key, through signet::pkcs11 (libp11 cannot generate EC keys).
    auto pin = SIGNET_TRY(read_secret_file(o.pin_file));
    SecretBuffer pin_c(pin.size() + 1);  // libp11 takes a NUL-terminated PIN
    std::copy(pin.data(), pin.data() + pin.size(), pin_c.data());
    pin_c.data()[pin.size()] = 0;
    auto token =
        pkcs11::Token::open(o.module, {o.token_label, ""}, std::move(pin), {.max_sessions = 1});
    if (!token) return token.error().within("open TLS identity token '" + o.token_label + "'");
    pkcs11::KeyStore keys(*token);
    const auto info = keys.find_or_generate_internal(kIdentityLabel, pkcs11::Algorithm::ecdsa_p256);
    if (!info) return info.error().within("TLS identity key");
    const Bytes key_id = hex_decode(info->id).value();

    // 2. The key as an EVP_PKEY through libp11.
    id->p11_ = std::make_unique<P11>();
    P11& p = *id->p11_;
    p.ctx = PKCS11_CTX_new();
    if (!p.ctx || PKCS11_CTX_load(p.ctx, o.module_path.c_str()) != 0) {
        return tls_error("libp11 could not load " + o.module_path);
    }
    if (PKCS11_enumerate_slots(p.ctx, &p.slots, &p.nslots) != 0)
        return tls_error("libp11 slot list");
    PKCS11_SLOT* slot = nullptr;
    for (unsigned int i = 0; i < p.nslots; ++i) {
        if (p.slots[i].token && p.slots[i].token->initialized && p.slots[i].token->label &&
            o.token_label == p.slots[i].token->label) {
            slot = &p.slots[i];
        }
    }
    if (!slot)
        return make_error(Errc::not_found,
                          "libp11 finds no token labelled '" + o.token_label + "'");
    if (PKCS11_login(slot, 0, reinterpret_cast<const char*>(pin_c.data())) != 0) {
        return tls_error("libp11 login to '" + o.token_label + "'");
    }
    PKCS11_KEY* found = nullptr;
    PKCS11_KEY* all = nullptr;
    unsigned int nkeys = 0;
    if (PKCS11_enumerate_keys(slot->token, &all, &nkeys) != 0) {
        return tls_error("libp11 key list on '" + o.token_label +
                         "' (the identity token must hold no Ed25519 keys)");
    }
    for (unsigned int i = 0; i < nkeys; ++i) {
        if (all[i].isPrivate && all[i].id_len == key_id.size() &&
            std::equal(key_id.begin(), key_id.end(), all[i].id)) {
            found = &all[i];
        }
    }
    if (!found)
        return make_error(Errc::not_found, "libp11 does not see the identity key " + info->id);
    id->key_ = PKCS11_get_private_key(found);
    if (!id->key_) return tls_error("libp11 EVP_PKEY for the identity key");

    // 3. The certificate: reuse when it certifies this key, else create and store a new one.
    auto existing = read_cert(id->cert_file_);
    if (existing && cert_still_good(*existing, info->spki_der, o.subject_alt_names)) {
        id->cert_ = *existing;
    } else {
        if (existing) X509_free(*existing);
        id->cert_ = SIGNET_TRY(make_cert(id->key_, info->spki_der, o.subject_alt_names));
        SIGNET_TRY(write_cert(id->cert_, id->cert_file_));
        id->created_ = true;
    }
    id->fingerprint_ = cert_fingerprint(id->cert_);
    log.log(LogLevel::info, "tls", id->created_ ? "identity_created" : "identity_loaded",
            {{"cert", id->cert_file_.string()}, {"sha256", id->fingerprint_}});
    return id;
}

TlsIdentity::~TlsIdentity() {
    EVP_PKEY_free(key_);
    X509_free(cert_);
}

Result<SSL_CTX*> TlsIdentity::make_server_context() const {
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) return tls_error("SSL_CTX_new");
    auto fail = [&](const char* what) {
        SSL_CTX_free(ctx);
        return tls_error(what);
    };
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate(ctx, cert_) != 1) return fail("SSL_CTX_use_certificate");
    if (SSL_CTX_use_PrivateKey(ctx, key_) != 1) return fail("SSL_CTX_use_PrivateKey (HSM key)");
    if (SSL_CTX_check_private_key(ctx) != 1)
        return fail("the certificate does not match the HSM key");
    static const unsigned char kSid[] = "signet";
    SSL_CTX_set_session_id_context(ctx, kSid, sizeof kSid - 1);
    if (request_client_certs_) SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any_client_cert);
    return ctx;
}

Result<void> TlsIdentity::use_as_client(SSL_CTX* ctx) const {
    if (SSL_CTX_use_certificate(ctx, cert_) != 1) return tls_error("SSL_CTX_use_certificate");
    if (SSL_CTX_use_PrivateKey(ctx, key_) != 1) {
        return tls_error("SSL_CTX_use_PrivateKey (HSM key)");
    }
    return ok();
}

}  // namespace signet::daemon
