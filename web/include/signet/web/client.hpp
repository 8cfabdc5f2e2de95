// A small synchronous HTTP/1.1 client (Boost.Beast) for signetctl and tests: one keep-alive
// connection, TLS with certificate pinning by SHA-256 fingerprint (the appliance's certificate is
// self-signed), optional client certificate, deadlines on every call.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "signet/core/result.hpp"
#include "signet/web/http.hpp"

struct ssl_ctx_st;  // OpenSSL's SSL_CTX

namespace signet::web {

struct ClientOptions {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8443;
    bool tls = true;
    // Accept the server certificate only if its DER SHA-256 matches (lower-case hex, ':' allowed).
    // Empty with tls: verification against the system trust store and host name.
    std::string pinned_sha256;
    // Client certificate and key (PEM files) for mutual TLS; empty: none.
    std::string client_cert_file;
    std::string client_key_file;
    // Installs a client identity whose key is not a file (the appliance's HSM-backed key) into
    // the client's TLS context; runs once, at construction. Its error is every request's error.
    std::function<Result<void>(ssl_ctx_st*)> tls_identity;
    std::chrono::milliseconds timeout{30'000};
};

// Not thread-safe: one request at a time per client (each thread its own client).
class HttpClient {
public:
    explicit HttpClient(ClientOptions options);
    ~HttpClient();
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;

    // Sends one request (connecting or reconnecting as needed) and reads the response. Transport
    // errors (refused, timeout, TLS pin mismatch) are errors; any HTTP status is a Response.
    // `timeout` bounds the whole call (resolve, connect, handshake, write, read). A kept-alive
    // connection the server closed is replaced before sending; if it dies during an idempotent
    // request, that request is sent once more on a new connection (never a POST). A pin mismatch
    // is Errc::verification_failed naming the expected and the presented fingerprint.
    [[nodiscard]] Result<Response> request(const std::string& method, const std::string& target,
                                           const std::string& body = {},
                                           const Headers& headers = {});

    // After a failed request(): whether any byte of it was written, so that the server may have
    // acted on it. False means it certainly never arrived (resolve, connect or handshake failed).
    [[nodiscard]] bool request_sent() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace signet::web
