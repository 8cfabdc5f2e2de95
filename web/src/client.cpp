#include "signet/web/client.hpp"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <cerrno>

#include "signet/web/wire.hpp"

namespace signet::web {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// Responses are read whole into memory: bound them (metrics and key lists stay far below this).
constexpr std::uint64_t kMaxResponseBody = 64ull * 1024 * 1024;

// "AB:cd:..." -> "abcd...": pins are compared as lower-case hex without separators.
std::string normalize_fingerprint(std::string_view s) {
    std::string out;
    for (const char c : s) {
        if (c != ':') out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return out;
}

// "aa:bb:..": how signetd prints a fingerprint at start-up, so an operator can compare by eye.
std::string colon_fingerprint(std::string_view hex) {
    std::string out;
    for (std::size_t i = 0; i < hex.size(); i += 2) {
        if (i) out += ':';
        out += hex.substr(i, 2);
    }
    return out;
}

bool is_ip_literal(const std::string& host) {
    beast::error_code ec;
    (void)net::ip::make_address(host, ec);
    return !ec;
}

// Errors that mean "the server had closed this kept-alive connection": worth one reconnect.
bool is_stale_connection(const beast::error_code& ec) {
    return ec == http::error::end_of_stream || ec == net::error::connection_reset ||
           ec == net::error::broken_pipe || ec == net::error::eof ||
           ec == net::ssl::error::stream_truncated;
}

// Methods that may be sent twice without a second effect (RFC 9110 §9.2.2).
bool is_idempotent(std::string_view m) {
    return m == "GET" || m == "HEAD" || m == "PUT" || m == "DELETE" || m == "OPTIONS";
}

}  // namespace

struct HttpClient::Impl {
    explicit Impl(ClientOptions o)
        : opts(std::move(o)), pin(normalize_fingerprint(opts.pinned_sha256)) {
        const bool bracket = opts.host.find(':') != std::string::npos;
        host_header =
            (bracket ? "[" + opts.host + "]" : opts.host) + ":" + std::to_string(opts.port);
        if (opts.tls) setup_tls();
    }

    void setup_tls() {
        tls_ctx.emplace(net::ssl::context::tls_client);
        beast::error_code ec;
        tls_ctx->set_options(net::ssl::context::no_sslv2 | net::ssl::context::no_sslv3 |
                             net::ssl::context::no_tlsv1 | net::ssl::context::no_tlsv1_1);
        tls_ctx->set_verify_mode(net::ssl::verify_peer);
        if (pin.empty() && (tls_ctx->set_default_verify_paths(ec), ec)) {
            setup_error = Error{ec, "load the system trust store"};
        }
        if (!opts.client_cert_file.empty() &&
            (tls_ctx->use_certificate_chain_file(opts.client_cert_file, ec), ec)) {
            setup_error = Error{ec, "load client certificate " + opts.client_cert_file};
        }
        if (!opts.client_key_file.empty() &&
            (tls_ctx->use_private_key_file(opts.client_key_file, net::ssl::context::pem, ec), ec)) {
            setup_error = Error{ec, "load client key " + opts.client_key_file};
        }
        if (opts.tls_identity && !setup_error) {
            if (auto r = opts.tls_identity(tls_ctx->native_handle()); !r) {
                setup_error = r.error().within("install the TLS client identity");
            }
        }
    }

    beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }

    // Runs one asynchronous operation to completion on the private io_context; the tcp_stream's
    // deadline turns a stall into beast::error::timeout.
    template <class Start>
    beast::error_code run(Start&& start, std::chrono::steady_clock::time_point deadline) {
        beast::error_code result = net::error::would_block;
        lowest().expires_at(deadline);
        start([&result](beast::error_code ec, auto&&...) { result = ec; });
        ioc.restart();
        ioc.run();
        return result;
    }

    Error transport_error(const beast::error_code& ec, const std::string& what) const {
        const auto where = what + " " + host_header;
        if (ec == beast::error::timeout) {
            return Error{
                ec, where + ": no answer within " + std::to_string(opts.timeout.count()) + " ms"};
        }
        return Error{ec, where};
    }

    Result<void> connect(std::chrono::steady_clock::time_point deadline) {
        close();
        tcp::resolver resolver(ioc);
        beast::error_code ec = net::error::would_block;
        tcp::resolver::results_type endpoints;
        resolver.async_resolve(opts.host, std::to_string(opts.port),
                               [&](beast::error_code e, tcp::resolver::results_type r) {
            ec = e;
            endpoints = std::move(r);
        });
        ioc.restart();
        if (ioc.run_until(deadline), ec == net::error::would_block) {
            resolver.cancel();
            ioc.run();
            return transport_error(beast::error::timeout, "resolve");
        }
        if (ec) return transport_error(ec, "resolve");
        if (opts.tls) {
            tls.emplace(ioc, *tls_ctx);
        } else {
            plain.emplace(ioc);
        }
        ec = run([&](auto h) { lowest().async_connect(endpoints, std::move(h)); }, deadline);
        if (ec) {
            close();
            return transport_error(ec, "connect to");
        }
        if (opts.tls) {
            if (auto r = handshake(deadline); !r) {
                close();
                return r;
            }
        }
        connected = true;
        return ok();
    }

    Result<void> handshake(std::chrono::steady_clock::time_point deadline) {
        SSL* ssl = tls->native_handle();
        if (!is_ip_literal(opts.host)) {
            // SSL_set_tlsext_host_name() without its macro's C-style cast.
            SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                     const_cast<char*>(opts.host.c_str()));
        }
        seen_fingerprint.clear();
        if (pin.empty()) {
            tls->set_verify_callback(net::ssl::host_name_verification(opts.host));
        } else {
            // Pinning replaces chain validation: the appliance's certificate is self-signed, so
            // only the leaf's DER digest decides; intermediate positions are irrelevant.
            tls->set_verify_callback([this](bool, net::ssl::verify_context& vc) {
                X509_STORE_CTX* store = vc.native_handle();
                if (X509_STORE_CTX_get_error_depth(store) != 0) return true;
                seen_fingerprint = wire::certificate_sha256(X509_STORE_CTX_get_current_cert(store));
                return seen_fingerprint == pin;
            });
        }
        const auto ec =
            run([&](auto h) { tls->async_handshake(net::ssl::stream_base::client, std::move(h)); },
                deadline);
        // Checked again after the handshake: a resumed session skips the verify callback.
        if (X509* cert = SSL_get0_peer_certificate(ssl); cert != nullptr && !ec) {
            seen_fingerprint = wire::certificate_sha256(cert);
        }
        const bool mismatch = !pin.empty() && seen_fingerprint != pin;
        if (mismatch && (!ec || !seen_fingerprint.empty())) {
            return make_error(Errc::verification_failed,
                              "TLS certificate pin mismatch for " + host_header + ": expected " +
                                  colon_fingerprint(pin) + ", got " +
                                  (seen_fingerprint.empty() ? "no certificate"
                                                            : colon_fingerprint(seen_fingerprint)));
        }
        if (ec) return transport_error(ec, "TLS handshake with");
        return ok();
    }

    // True unless the idle kept-alive connection is quiet. The server sends nothing unasked on an
    // idle HTTP/1.1 connection, so anything readable is its FIN, a reset, or a TLS close_notify
    // (TLS 1.3 session tickets were consumed with the previous response).
    bool peer_closed() {
        char c = 0;
        const auto n = ::recv(lowest().socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    }

    void close() {
        if (plain || tls) {
            beast::error_code ignored;
            lowest().socket().close(ignored);
        }
        tls.reset();
        plain.reset();
        buffer.consume(buffer.size());
        connected = false;
    }

    template <class F>
    beast::error_code with_stream(F&& f, std::chrono::steady_clock::time_point deadline) {
        return run(
            [&](auto h) {
            if (tls) {
                f(*tls, std::move(h));
            } else {
                f(*plain, std::move(h));
            }
            },
            deadline);
    }

    Result<Response> exchange(wire::BeastRequest& req,
                              std::chrono::steady_clock::time_point deadline) {
        sent = true;
        const auto write_ec = with_stream(
            [&](auto& s, auto h) { http::async_write(s, req, std::move(h)); }, deadline);
        // A server may answer early (413 for an oversize body) and close before the body is sent:
        // the write then fails with a broken pipe, but the answer is waiting to be read.
        if (write_ec && write_ec != net::error::broken_pipe &&
            write_ec != net::error::connection_reset) {
            return transport_error(write_ec, "send to");
        }
        http::response_parser<http::string_body> parser;
        parser.body_limit(kMaxResponseBody);
        if (req.method() == http::verb::head) parser.skip(true);
        const auto ec = with_stream(
            [&](auto& s, auto h) { http::async_read(s, buffer, parser, std::move(h)); }, deadline);
        if (ec)
            return transport_error(write_ec ? write_ec : ec, write_ec ? "send to" : "read from");
        auto res = parser.release();
        if (!res.keep_alive()) close();
        return wire::from_beast(std::move(res));
    }

    Result<Response> request(const std::string& method, const std::string& target,
                             const std::string& body, const Headers& headers) {
        sent = false;
        if (setup_error) return *setup_error;
        const auto deadline = std::chrono::steady_clock::now() + opts.timeout;
        auto req = wire::make_request(method, target, body, headers, host_header);
        if (connected && peer_closed()) close();
        const bool reused = connected;
        if (!connected) {
            if (auto r = connect(deadline); !r) return r.error();
        }
        auto res = exchange(req, deadline);
        // A kept-alive connection can die between our check and our write; an idempotent request
        // is then sent once more on a fresh connection. Others are not: the server may have acted.
        if (!res && reused && is_idempotent(method) && is_stale_connection(res.error().code)) {
            if (auto r = connect(deadline); !r) return r.error();
            res = exchange(req, deadline);
        }
        if (!res) close();
        return res;
    }

    const ClientOptions opts;
    const std::string pin;  // normalised; empty: no pinning
    std::string host_header;
    std::optional<Error> setup_error;  // reported by every request()
    net::io_context ioc;               // run only inside request(), on the caller's thread
    std::optional<net::ssl::context> tls_ctx;
    std::optional<beast::tcp_stream> plain;
    std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
    beast::flat_buffer buffer;
    std::string seen_fingerprint;  // the server leaf's digest seen in the last handshake
    bool connected = false;
    bool sent = false;  // the current request reached exchange(): some of it may be on the wire
};

HttpClient::HttpClient(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

HttpClient::~HttpClient() = default;

Result<Response> HttpClient::request(const std::string& method, const std::string& target,
                                     const std::string& body, const Headers& headers) {
    return impl_->request(method, target, body, headers);
}

bool HttpClient::request_sent() const noexcept { return impl_->sent; }

}  // namespace signet::web
