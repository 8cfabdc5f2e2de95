// The HTTP(S) server: Boost.Beast over one io_context run by `io_threads` threads, a strand per
// connection, keep-alive, and limits on header size, body size, request time and connections.
// Handlers marked Execution::worker run on a bounded worker pool behind an admission queue; when
// the queue is full the request is answered 503 + Retry-After at once (never unbounded memory).
#pragma once

#include <openssl/ssl.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "signet/core/logger.hpp"
#include "signet/core/result.hpp"
#include "signet/web/metrics.hpp"
#include "signet/web/router.hpp"

namespace signet::web {

struct ServerOptions {
    std::string address = "127.0.0.1";
    std::uint16_t port = 8443;  // 0: pick a free port (see Server::port())
    std::size_t io_threads = 2;
    // Fast-path handlers (Route::fast_path) allowed on I/O threads at once; 0 or anything larger
    // means io_threads - 1 (with one I/O thread: none). One I/O thread always stays free, so
    // health checks answer even if the HSM stalls.
    std::size_t max_inline_fast = 0;
    std::size_t worker_threads = 8;  // concurrent blocking handlers (~ HSM sessions), at least 1
    // Admitted-but-not-started worker requests (a request an idle worker takes at once does not
    // count). Beyond it: 503 {"error":{"code":"overloaded"}} + Retry-After, at once.
    std::size_t queue_limit = 1024;
    // Open connections served; one beyond is answered 503 "overloaded" + Retry-After and closed
    // (its request is read first, so the client sees the answer). At most 64 such refusals run at
    // once; beyond that a new connection is closed without an answer.
    std::size_t max_connections = 1024;
    std::size_t max_header_bytes = 8 * 1024;
    std::size_t max_body_bytes = 1024 * 1024;
    // Reading one request (from its first byte; for the first request on a connection, also the
    // wait for that byte, and the TLS handshake) / writing its response. A stalled connection is
    // closed without an answer. Handler run time is not bounded here.
    std::chrono::milliseconds request_timeout{10'000};
    std::chrono::milliseconds idle_timeout{60'000};    // keep-alive wait for the next request
    std::chrono::milliseconds shutdown_grace{10'000};  // in-flight requests may finish within this
    int retry_after_seconds = 1;                       // Retry-After on 503 overload
    // TLS: when set the server speaks HTTPS only and takes ownership of the SSL_CTX (freed with the
    // server, even if construction throws). The caller has loaded certificate, key, and the
    // client-certificate policy: to accept client certificates use SSL_VERIFY_PEER with a verify
    // callback that accepts self-signed ones (identity is then Request::client_cert_sha256, pinned
    // by the application), adding SSL_VERIFY_FAIL_IF_NO_PEER_CERT only if every client must have
    // one. Do not use the SSL_CTX's app data (ex_data index 0) or its default password-callback
    // userdata: Asio's context wrapper owns both slots (the server clears the latter). Null: HTTP.
    SSL_CTX* tls_context = nullptr;
    // Extra response headers on every response (HSTS, security headers).
    Headers default_headers;
};

// Per-request metrics the server records itself (registered in the given registry):
//   signet_http_requests_total{route,method,status}, signet_http_request_duration_seconds{route},
//   signet_http_queue_depth, signet_http_connections, signet_http_rejected_total{reason}.
// `route` is the route's name ("unmatched" for 404/405 and unreadable requests), never the raw
// path; `reason` is one of overloaded, max_connections, header_too_large, body_too_large,
// bad_request. Every response carries X-Request-Id (the client's if it matches
// [A-Za-z0-9._-]{1,64}, else 32 random hex digits) and ServerOptions::default_headers. Errors use
// the JSON shape of errors.hpp: 404 not_found, 405 method_not_allowed (+ Allow), 413, 431, 400,
// and a handler that throws gives 500 "internal" (logged; the server keeps serving). One access
// log line per request at debug (warn for 5xx): never bodies, query strings or headers.
class Server {
public:
    Server(ServerOptions options, std::shared_ptr<const Router> router,
           std::shared_ptr<Registry> metrics, std::shared_ptr<Logger> logger);
    ~Server();  // stop()s if still running
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds and starts serving on background threads. Errors: address in use, bad address,
    // started twice (Errc::conflict).
    [[nodiscard]] Result<void> start();
    // The bound port (after start()).
    [[nodiscard]] std::uint16_t port() const noexcept;
    // Stops accepting, closes idle connections, lets in-flight requests finish for up to
    // shutdown_grace (their responses say "Connection: close"), then closes every connection,
    // drops queued worker requests and joins all threads. A worker handler still running is
    // waited for: handlers cannot be interrupted. Idempotent; call from any thread but a handler.
    void stop();
    // Current admission-queue depth (requests admitted, not yet started) and in-flight count.
    [[nodiscard]] std::size_t queue_depth() const noexcept;
    [[nodiscard]] std::size_t in_flight() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace signet::web
