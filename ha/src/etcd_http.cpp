#include "etcd_http.hpp"

#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <vector>

namespace signet::ha::detail {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace ssl = boost::asio::ssl;
using boost::system::error_code;
using tcp = asio::ip::tcp;

// A range over many keys can be large; anything beyond this is a broken or hostile peer.
constexpr std::uint64_t kMaxBodyBytes = 64ull * 1024 * 1024;

bool is_ip_literal(const std::string& host) {
    error_code ec;
    (void)asio::ip::make_address(host, ec);
    return !ec;
}

}  // namespace

Result<std::shared_ptr<ssl::context>> make_tls_context(const EtcdOptions& options) {
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
    error_code ec;
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                         ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                     ec);
    if (options.ca_file.empty()) {
        ctx->set_default_verify_paths(ec);
        if (ec) return make_error(Errc::invalid_argument, "etcd tls: no default trust store");
    } else {
        ctx->load_verify_file(options.ca_file, ec);
        if (ec) {
            return make_error(Errc::invalid_argument,
                              "etcd tls: cannot load ca_file '" + options.ca_file + "'");
        }
    }
    if (!options.client_cert_file.empty()) {
        ctx->use_certificate_chain_file(options.client_cert_file, ec);
        if (ec) {
            return make_error(Errc::invalid_argument, "etcd tls: cannot load client_cert_file '" +
                                                          options.client_cert_file + "'");
        }
        ctx->use_private_key_file(options.client_key_file, ssl::context::pem, ec);
        if (ec) {
            return make_error(Errc::invalid_argument, "etcd tls: cannot load client_key_file '" +
                                                          options.client_key_file + "'");
        }
    }
    ctx->set_verify_mode(ssl::verify_peer, ec);
    return ctx;
}

HttpConnection::HttpConnection(EtcdEndpoint endpoint, std::shared_ptr<ssl::context> tls)
    : endpoint_(std::move(endpoint)), tls_ctx_(std::move(tls)) {}

HttpConnection::~HttpConnection() { close(); }

beast::tcp_stream& HttpConnection::tcp() { return tls_ ? beast::get_lowest_layer(*tls_) : *plain_; }

template <class Start>
error_code HttpConnection::run(Start&& start) {
    // would_block stays only if the operation never completed, which run() rules out: it returns
    // when the io_context has no work left, i.e. after the completion handler ran.
    error_code result = asio::error::would_block;
    start([&result](error_code ec, auto&&...) { result = ec; });
    ioc_.restart();
    ioc_.run();
    return result;
}

template <class Fn>
decltype(auto) HttpConnection::with_stream(Fn&& fn) {
    if (tls_) return fn(*tls_);
    return fn(*plain_);
}

void HttpConnection::close() noexcept {
    open_ = false;
    error_code ignored;
    if (tls_) beast::get_lowest_layer(*tls_).socket().close(ignored);
    if (plain_) plain_->socket().close(ignored);
}

HttpOutcome HttpConnection::fail(const char* stage, error_code ec, bool maybe_sent) {
    close();
    HttpOutcome out;
    out.error = ec;
    out.maybe_sent = maybe_sent;
    out.stage = stage;
    return out;
}

HttpOutcome HttpConnection::connect(SteadyClock::time_point deadline) {
    close();
    // A TLS stream cannot be reused after a failure, so every connect starts from fresh objects.
    tls_.reset();
    plain_.reset();
    buffer_.clear();
    if (tls_ctx_) {
        tls_ = std::make_unique<TlsStream>(ioc_, *tls_ctx_);
    } else {
        plain_ = std::make_unique<beast::tcp_stream>(ioc_);
    }

    std::vector<tcp::endpoint> targets;
    error_code ec;
    const auto address = asio::ip::make_address(endpoint_.host, ec);
    if (!ec) {
        targets.emplace_back(address, endpoint_.port);
    } else {
        // Names go through getaddrinfo, which has its own timeouts; configured endpoints are
        // normally IP literals, so this is off the hot path.
        tcp::resolver resolver(ioc_);
        const auto found = resolver.resolve(endpoint_.host, std::to_string(endpoint_.port), ec);
        if (ec) return fail("resolve", ec, false);
        for (const auto& e : found) targets.push_back(e.endpoint());
    }

    tcp().expires_at(deadline);
    ec = run([&](auto handler) { tcp().async_connect(targets, std::move(handler)); });
    if (ec) return fail("connect", ec, false);

    if (tls_) {
        if (!is_ip_literal(endpoint_.host)) {
            // SNI, for members behind a name-based TLS front; IP literals are not allowed in SNI.
            // SSL_set_tlsext_host_name is a macro with a C cast; this is its expansion.
            SSL_ctrl(tls_->native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                     const_cast<char*>(endpoint_.host.c_str()));
        }
        tls_->set_verify_callback(ssl::host_name_verification(endpoint_.host), ec);
        if (ec) return fail("tls handshake", ec, false);
        tcp().expires_at(deadline);
        ec = run([&](auto handler) {
            tls_->async_handshake(ssl::stream_base::client, std::move(handler));
        });
        if (ec) return fail("tls handshake", ec, false);
    }
    tcp().expires_never();
    open_ = true;
    HttpOutcome out;
    out.ok = true;
    return out;
}

namespace {

http::request<http::string_body> make_request(const EtcdEndpoint& ep, std::string_view target,
                                              const std::string& body) {
    http::request<http::string_body> req{http::verb::post,
                                         beast::string_view(target.data(), target.size()), 11};
    const bool v6 = ep.host.find(':') != std::string::npos;
    req.set(http::field::host,
            (v6 ? "[" + ep.host + "]" : ep.host) + ":" + std::to_string(ep.port));
    req.set(http::field::content_type, "application/json");
    req.keep_alive(true);
    req.body() = body;
    req.prepare_payload();
    return req;
}

}  // namespace

HttpOutcome HttpConnection::post(std::string_view target, const std::string& body,
                                 SteadyClock::time_point deadline) {
    if (!open_) return fail("write", asio::error::not_connected, false);
    auto req = make_request(endpoint_, target, body);
    tcp().expires_at(deadline);
    auto ec = run([&](auto handler) {
        with_stream([&](auto& s) { http::async_write(s, req, std::move(handler)); });
    });
    if (ec) return fail("write", ec, true);

    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxBodyBytes);
    tcp().expires_at(deadline);
    ec = run([&](auto handler) {
        with_stream([&](auto& s) { http::async_read(s, buffer_, parser, std::move(handler)); });
    });
    if (ec) return fail("read", ec, true);
    tcp().expires_never();

    auto& res = parser.get();
    HttpOutcome out;
    out.ok = true;
    out.maybe_sent = true;
    out.reply.status = res.result_int();
    out.reply.body = std::move(res.body());
    if (!res.keep_alive()) close();
    return out;
}

HttpOutcome HttpConnection::post_stream(std::string_view target, const std::string& body,
                                        SteadyClock::time_point first_deadline,
                                        const bool* established, const DataHandler& on_data) {
    if (!open_) return fail("write", asio::error::not_connected, false);
    auto req = make_request(endpoint_, target, body);
    tcp().expires_at(first_deadline);
    auto ec = run([&](auto handler) {
        with_stream([&](auto& s) { http::async_write(s, req, std::move(handler)); });
    });
    if (ec) return fail("write", ec, true);

    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);  // a watch stream has no end
    bool stopped = false;
    // The parser keeps a reference to the callback: it must outlive the reads below.
    auto on_chunk = [&](std::uint64_t, beast::string_view data, error_code& cb_ec) -> std::size_t {
        if (!on_data(std::string_view(data.data(), data.size()))) {
            stopped = true;
            cb_ec = asio::error::operation_aborted;
        }
        return data.size();
    };
    parser.on_chunk_body(on_chunk);
    while (!parser.is_done()) {
        if (*established) {
            tcp().expires_never();
        } else {
            tcp().expires_at(first_deadline);
        }
        ec = run([&](auto handler) {
            with_stream(
                [&](auto& s) { http::async_read_some(s, buffer_, parser, std::move(handler)); });
        });
        if (stopped) break;
        if (ec) return fail("read", ec, true);
    }
    HttpOutcome out;
    out.ok = true;
    out.maybe_sent = true;
    if (parser.is_header_done()) out.reply.status = parser.get().result_int();
    // A non-chunked answer (an error document) arrives whole in the body.
    if (!stopped && !parser.chunked()) on_data(parser.get().body());
    close();
    return out;
}

void HttpConnection::interrupt() {
    asio::post(ioc_, [this] { close(); });
}

}  // namespace signet::ha::detail
