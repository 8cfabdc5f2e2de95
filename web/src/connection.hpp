// One HTTP(S) connection: read a request within the limits, route it, answer it, repeat while
// keep-alive. Every member is touched only on the connection's strand, except the immutable
// executor_ that worker threads post the response back through.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <memory>
#include <type_traits>

#include "server_core.hpp"

namespace signet::web {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using SslStream = beast::ssl_stream<beast::tcp_stream>;

template <class Stream>
class Connection final : public ConnectionBase,
                         public std::enable_shared_from_this<Connection<Stream>> {
    static constexpr bool kTls = std::is_same_v<Stream, SslStream>;
    // A refused or failed request may leave body bytes unread; closing a socket with unread
    // input sends RST, which can destroy our error response in flight. So the connection reads
    // and discards up to this much for up to this long after answering (a "lingering close").
    static constexpr std::size_t kMaxDrainBytes = 1024 * 1024;
    static constexpr std::chrono::milliseconds kMaxCloseWait{2000};
    // Room for the header block plus one read beyond it; bodies go to the parser's string.
    static constexpr std::size_t kReadSlack = 64 * 1024;

public:
    Connection(ServerCore& server, net::ip::tcp::socket socket, std::uint64_t id, bool reject,
               std::string remote)
        : server_(server),
          stream_(make_stream(server, std::move(socket))),
          executor_(stream_.get_executor()),
          buffer_(server.limits.max_header_bytes + kReadSlack),
          id_(id),
          reject_(reject),
          remote_(std::move(remote)) {}

    ~Connection() override {
        flight_end();
        server_.connection_gone(id_, reject_);
    }

    void start() override {
        net::dispatch(executor_, [self = this->shared_from_this()] { self->on_start(); });
    }

    void shut(bool force) override {
        net::post(executor_, [self = this->shared_from_this(), force] {
            if (force || !self->in_flight_) self->close_now();
        });
    }

private:
    static Stream make_stream(ServerCore& server, net::ip::tcp::socket&& socket) {
        if constexpr (kTls) {
            return Stream(std::move(socket), *server.ssl);
        } else {
            return Stream(std::move(socket));
        }
    }

    beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }
    const ServerOptions& opts() const { return server_.options; }

    template <class F>
    auto bind(F f) {
        return beast::bind_front_handler(f, this->shared_from_this());
    }

    void on_start() {
        if (closing_) return;
        if constexpr (kTls) {
            lowest().expires_after(opts().request_timeout);
            stream_.async_handshake(net::ssl::stream_base::server, bind(&Connection::on_handshake));
        } else {
            do_read();
        }
    }

    void on_handshake(beast::error_code ec) {
        if (ec) {
            server_.logger->log(LogLevel::debug, "web", "tls_handshake_failed",
                                {{"remote", remote_}, {"error", ec.message()}});
            return;
        }
        if constexpr (kTls) {
            // The SSL_CTX's verify policy decided whether a certificate is required; here we only
            // record which one was presented, for pinning by fingerprint above us.
            if (X509* cert = SSL_get0_peer_certificate(stream_.native_handle())) {
                client_cert_ = wire::certificate_sha256(cert);
            }
        }
        do_read();
    }

    void do_read() {
        if (closing_) return;
        parser_.emplace();
        wire::apply_limits(*parser_, server_.limits);
        // Waiting for the first byte of a request: the first request on a connection gets the
        // request timeout, the next ones on a kept-alive connection the idle timeout.
        lowest().expires_after(first_request_ ? opts().request_timeout : opts().idle_timeout);
        http::async_read_some(stream_, buffer_, *parser_, bind(&Connection::on_first_bytes));
    }

    void on_first_bytes(beast::error_code ec, std::size_t) {
        if (ec) return on_read_failed(ec);
        first_request_ = false;
        // From the first byte on, the whole request must arrive within request_timeout.
        lowest().expires_after(opts().request_timeout);
        if (parser_->is_header_done()) return on_header({}, 0);
        http::async_read_header(stream_, buffer_, *parser_, bind(&Connection::on_header));
    }

    void on_header(beast::error_code ec, std::size_t) {
        if (ec) return on_read_failed(ec);
        if (parser_->is_done()) return on_read({}, 0);
        if (beast::iequals(parser_->get()[http::field::expect], "100-continue")) {
            static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
            net::async_write(stream_, net::buffer(kContinue.data(), kContinue.size()),
                             bind(&Connection::on_continue_sent));
            return;
        }
        http::async_read(stream_, buffer_, *parser_, bind(&Connection::on_read));
    }

    void on_continue_sent(beast::error_code ec, std::size_t) {
        if (ec) return on_read_failed(ec);
        http::async_read(stream_, buffer_, *parser_, bind(&Connection::on_read));
    }

    void on_read_failed(beast::error_code ec) {
        if (closing_) return;
        const auto failure = wire::read_failure(ec);
        if (!failure) return;  // EOF, reset or timeout: drop the connection, nobody to answer
        server_.count_rejected(failure->status == 431   ? "header_too_large"
                               : failure->status == 413 ? "body_too_large"
                                                        : "bad_request");
        begin_exchange();
        drain_ = true;
        respond(error_response(*failure, ex_.request_id), true);
    }

    // Starts the exchange bookkeeping from whatever part of the request was parsed.
    void begin_exchange() {
        ex_ = Exchange{};
        ex_.start = std::chrono::steady_clock::now();
        if (parser_ && parser_->is_header_done()) {
            const auto& msg = parser_->get();
            ex_.request_id = wire::request_id_for(msg);
            ex_.version = msg.version();
            ex_.keep_alive = msg.keep_alive();
            ex_.method = wire::method_label(msg.method_string());
        } else {
            ex_.request_id = wire::new_request_id();
        }
        flight_begin();
    }

    void on_read(beast::error_code ec, std::size_t) {
        if (ec) return on_read_failed(ec);
        begin_exchange();
        if (reject_) {
            return respond(
                error_response(ApiError{503, "overloaded", "too many connections; retry later",
                                        opts().retry_after_seconds},
                               ex_.request_id),
                true);
        }
        if (server_.stopping.load()) {
            return respond(
                error_response(ApiError{503, "unavailable", "the server is shutting down",
                                        opts().retry_after_seconds},
                               ex_.request_id),
                true);
        }
        auto req = wire::to_request(parser_->release());
        if (!req) return respond(error_response(req.error(), ex_.request_id), true);
        ex_.path = req->path;
        req->remote = remote_;
        req->tls = kTls;
        req->client_cert_sha256 = client_cert_;
        req->request_id = ex_.request_id;
        const auto match = server_.router->match(*req);
        if (match.route == nullptr) return respond(no_route(match));
        ex_.route = match.route->name;
        if (match.route->execution == Execution::inline_) {
            return respond(server_.run_handler(*match.route, *req));
        }
        if (match.route->fast_path && match.route->fast_path(*req) &&
            try_inline(*match.route, *req)) {
            return;
        }
        submit(*match.route, std::move(*req));
    }

    Response no_route(const RouteMatch& match) const {
        if (!match.path_matched) {
            return error_response(ApiError{404, "not_found", "no such path", {}}, ex_.request_id);
        }
        auto r = error_response(
            ApiError{405, "method_not_allowed", "method not allowed on this path", {}},
            ex_.request_id);
        std::string allow;
        for (const auto& m : match.allowed) allow += (allow.empty() ? "" : ", ") + m;
        r.headers["Allow"] = allow;
        return r;
    }

    // Runs a fast-path handler here, on the I/O thread, if the inline budget allows: two thread
    // hand-offs cost more than a plain HSM signature on a virtual machine (measured).
    bool try_inline(const Route& route, Request& req) {
        auto& busy = server_.inline_fast;
        std::size_t n = busy.load(std::memory_order_relaxed);
        do {
            if (n >= opts().max_inline_fast) return false;
        } while (!busy.compare_exchange_weak(n, n + 1, std::memory_order_acq_rel));
        auto res = server_.run_handler(route, req);
        busy.fetch_sub(1, std::memory_order_acq_rel);
        respond(std::move(res));
        return true;
    }

    // Hands a blocking handler to the worker pool; the response comes back through the strand.
    void submit(const Route& route, Request req) {
        auto task =
            [self = this->shared_from_this(), route = &route, req = std::move(req)]() mutable {
            auto res = self->server_.run_handler(*route, req);
            net::post(self->executor_,
                      [self, res = std::move(res)]() mutable { self->respond(std::move(res)); });
        };
        if (server_.pool->try_submit(std::move(task))) return;
        server_.count_rejected("overloaded");
        respond(
            error_response(ApiError{503, "overloaded", "too many requests in progress; retry later",
                                    opts().retry_after_seconds},
                           ex_.request_id));
    }

    void respond(Response&& r, bool close = false) {
        if (closing_) return flight_end();  // stop() closed us while a worker ran
        ex_.status = r.status;
        // Recorded before the write: a client that saw this response and then scrapes /metrics
        // must find it counted.
        server_.record(ex_, remote_);
        const bool keep = ex_.keep_alive && !close && !reject_ && !server_.stopping.load();
        res_ = wire::to_beast(std::move(r), wire::ResponseContext{ex_.version, keep, ex_.request_id,
                                                                  &opts().default_headers});
        lowest().expires_after(opts().request_timeout);
        http::async_write(stream_, res_, bind(&Connection::on_write));
    }

    void on_write(beast::error_code ec, std::size_t) {
        flight_end();
        if (ec) return;
        if (!res_.keep_alive()) return do_close();
        res_ = {};
        do_read();
    }

    void do_close() {
        closing_ = true;
        lowest().expires_after(
            std::min<std::chrono::milliseconds>(opts().request_timeout, kMaxCloseWait));
        if constexpr (kTls) {
            // Reads until the peer's close_notify (or the timer), which also drains its input.
            stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) {});
        } else {
            beast::error_code ignored;
            lowest().socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
            if (drain_) do_drain();
        }
    }

    void do_drain() {
        if (!drain_buf_) drain_buf_ = std::make_unique<std::array<char, 4096>>();
        lowest().async_read_some(net::buffer(*drain_buf_), bind(&Connection::on_drain));
    }

    void on_drain(beast::error_code ec, std::size_t n) {
        drained_ += n;
        if (!ec && drained_ < kMaxDrainBytes) do_drain();
    }

    void close_now() {
        closing_ = true;
        lowest().close();
    }

    void flight_begin() {
        if (in_flight_) return;
        in_flight_ = true;
        server_.flight_begin();
    }

    void flight_end() {
        if (!in_flight_) return;
        in_flight_ = false;
        server_.flight_end();
    }

    ServerCore& server_;
    Stream stream_;
    const net::any_io_executor executor_;  // the strand; immutable, so worker threads may read it
    beast::flat_buffer buffer_;
    std::optional<wire::RequestParser> parser_;
    wire::BeastResponse res_;  // kept alive for async_write
    Exchange ex_;
    const std::uint64_t id_;
    const bool reject_;  // over max_connections: answer 503 once, then close
    const std::string remote_;
    std::optional<std::string> client_cert_;
    bool first_request_ = true;
    bool in_flight_ = false;  // a request is being answered
    bool closing_ = false;
    bool drain_ = false;
    std::size_t drained_ = 0;
    std::unique_ptr<std::array<char, 4096>> drain_buf_;
};

}  // namespace signet::web
