// Loopback fixtures for the web server tests: a server on port 0 with a capturing logger, a
// gate that holds handlers until the test opens it, a raw socket for malformed traffic, and
// self-signed EC certificates. Every wait here is bounded.
#pragma once

#include <openssl/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "signet/core/logger.hpp"
#include "signet/web/client.hpp"
#include "signet/web/metrics.hpp"
#include "signet/web/router.hpp"
#include "signet/web/server.hpp"

namespace signet::test {

using namespace std::chrono_literals;

// Keeps every formatted log line, so tests can assert what was (and was not) logged.
class CapturingLogger final : public Logger {
public:
    [[nodiscard]] bool enabled(LogLevel) const noexcept override { return true; }
    void write(LogLevel level, std::string_view component, std::string_view event,
               std::initializer_list<LogField> fields) override;
    [[nodiscard]] std::vector<std::string> lines() const;
    [[nodiscard]] bool contains(std::string_view needle) const;

private:
    mutable std::mutex mu_;
    std::vector<std::string> lines_;  // guarded by mu_
};

// Handlers call pass(); it blocks until open() (or its own bound elapses, so a failed test
// cannot hang). The test waits for handlers to arrive with wait_entered().
class Gate {
public:
    explicit Gate(std::chrono::milliseconds max_hold = 10s) : max_hold_(max_hold) {}
    void pass();
    void open();
    [[nodiscard]] bool wait_entered(int n, std::chrono::milliseconds timeout);

private:
    const std::chrono::milliseconds max_hold_;
    std::mutex mu_;
    std::condition_variable cv_;
    int entered_ = 0;    // guarded by mu_
    bool open_ = false;  // guarded by mu_
};

// Polls `pred` every few milliseconds until it holds or `timeout` passes.
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 5s);

// A server on 127.0.0.1, port 0, with its own router, registry and capturing logger.
struct ServerFixture {
    std::shared_ptr<web::Router> router = std::make_shared<web::Router>();
    std::shared_ptr<web::Registry> metrics = std::make_shared<web::Registry>();
    std::shared_ptr<CapturingLogger> logger = std::make_shared<CapturingLogger>();
    std::unique_ptr<web::Server> server;

    void add(std::string method, std::string pattern, web::Handler h,
             web::Execution exec = web::Execution::worker);
    // Starts the server (REQUIREs success); options.address/port are forced to loopback/0.
    void start(web::ServerOptions options = {});
    [[nodiscard]] web::ClientOptions client_options() const;
};

// Echo handler: body "<METHOD> <path> <params...> <body>", header X-Remote = peer address.
web::Response echo(web::Request& req);

// A plain TCP connection for traffic HttpClient would never send.
class RawConnection {
public:
    explicit RawConnection(std::uint16_t port);
    ~RawConnection();
    void send(std::string_view bytes);
    struct ReadResult {
        std::string data;
        bool closed = false;  // the server closed the connection
    };
    // Reads until the server closes the connection, `until` (when not empty) has arrived, or
    // `timeout` passes.
    ReadResult read(std::chrono::milliseconds timeout, std::string_view until = {});

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// A self-signed EC P-256 certificate and its key.
struct TestCertificate {
    std::string cert_pem;
    std::string key_pem;
    std::string sha256;  // lower-case hex of the DER digest, computed with X509_digest
    std::shared_ptr<X509> cert;
    std::shared_ptr<EVP_PKEY> key;
};
TestCertificate make_certificate(const std::string& common_name);

// A server SSL_CTX (TLS 1.2+) for `cert`. With `request_client_cert`, peers may present a
// certificate and any one is accepted (Signet pins it by fingerprint, not by CA).
SSL_CTX* server_tls_context(const TestCertificate& cert, bool request_client_cert);

}  // namespace signet::test
