#include "signet/web/server.hpp"

#include <openssl/ssl.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <future>

#include "connection.hpp"
#include "server_core.hpp"
#include "signet/web/errors.hpp"

namespace signet::web {
namespace {

// Connections beyond max_connections are answered 503 (which needs their request read); at most
// this many such refusals run at once, beyond that a new connection is closed without a word.
constexpr std::size_t kMaxRejecting = 64;
// After an accept error (EMFILE, ENOBUFS) wait this long instead of spinning.
constexpr std::chrono::milliseconds kAcceptBackoff{50};
// After the grace period every connection is closed; their handlers unwind within this bound.
constexpr std::chrono::milliseconds kUnwindWait{2000};

using tcp = net::ip::tcp;

ServerOptions without_tls_handle(ServerOptions o) {
    o.tls_context = nullptr;
    o.io_threads = std::max<std::size_t>(o.io_threads, 1);
    // At most io_threads - 1 (so with one I/O thread, never): one I/O thread always stays free.
    const std::size_t cap = o.io_threads - 1;
    o.max_inline_fast = o.max_inline_fast == 0 ? cap : std::min(o.max_inline_fast, cap);
    o.worker_threads = std::max<std::size_t>(o.worker_threads, 1);
    return o;
}

std::optional<net::ssl::context> adopt_tls(SSL_CTX* ctx) {
    if (ctx == nullptr) return std::nullopt;
    // asio's context destructor deletes the default password-callback userdata as its own type;
    // the key is already loaded, so the caller's userdata is no longer needed by OpenSSL.
    SSL_CTX_set_default_passwd_cb_userdata(ctx, nullptr);
    return std::optional<net::ssl::context>(std::in_place, ctx);
}

std::string endpoint_text(const tcp::socket& s) {
    beast::error_code ec;
    const auto ep = s.remote_endpoint(ec);
    if (ec) return "unknown";
    const auto addr = ep.address();
    return (addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string()) + ":" +
           std::to_string(ep.port());
}

}  // namespace

ServerCore::ServerCore(ServerOptions o, std::shared_ptr<const Router> r,
                       std::shared_ptr<Registry> m, std::shared_ptr<Logger> l)
    : ssl(adopt_tls(o.tls_context)),
      options(without_tls_handle(o)),
      limits{o.max_header_bytes, o.max_body_bytes},
      router(std::move(r)),
      registry(m ? std::move(m) : std::make_shared<Registry>()),
      logger(l ? std::move(l) : null_logger()),
      requests_total(registry->counter("signet_http_requests_total", "HTTP requests answered.",
                                       {"route", "method", "status"})),
      request_duration(registry->histogram("signet_http_request_duration_seconds",
                                           "Time from a complete request to its written response.",
                                           {"route"}, latency_buckets())),
      queue_depth_gauge(
          registry->gauge("signet_http_queue_depth", "Worker requests admitted but not started.")
              .with({})),
      connections_gauge(
          registry->gauge("signet_http_connections", "Open HTTP connections.").with({})),
      rejected_total(registry->counter("signet_http_rejected_total",
                                       "Requests or connections refused, by reason.", {"reason"})),
      ioc(static_cast<int>(options.io_threads)),
      acceptor(net::make_strand(ioc)),
      accept_backoff(acceptor.get_executor()) {
    if (!router) throw std::invalid_argument("Server needs a router");
}

ServerCore::~ServerCore() { stop(); }

Result<void> ServerCore::start() {
    std::lock_guard life(lifecycle_mu);
    if (started || stopped) return make_error(Errc::conflict, "server already started or stopped");
    beast::error_code ec;
    const auto address = net::ip::make_address(options.address, ec);
    if (ec) return make_error(Errc::invalid_argument, "listen address '" + options.address + "'");
    const tcp::endpoint ep(address, options.port);
    const auto where = "listen on " + options.address + ":" + std::to_string(options.port);
    auto fail = [&](const char* step) {
        beast::error_code ignored;
        acceptor.close(ignored);
        return Error{ec, where + " (" + step + ")"};
    };
    if (acceptor.open(ep.protocol(), ec); ec) return fail("open");
    if (acceptor.set_option(net::socket_base::reuse_address(true), ec); ec) return fail("reuse");
    if (acceptor.bind(ep, ec); ec) return fail("bind");
    if (acceptor.listen(net::socket_base::max_listen_connections, ec); ec) return fail("listen");
    bound_port = acceptor.local_endpoint(ec).port();
    pool.emplace(options.worker_threads, options.queue_limit, queue_depth_gauge);
    started = true;
    work.emplace(ioc.get_executor());
    net::post(acceptor.get_executor(), [this] { do_accept(); });
    io_threads.reserve(options.io_threads);
    for (std::size_t i = 0; i < options.io_threads; ++i)
        io_threads.emplace_back([this] { run_io(); });
    logger->log(
        LogLevel::info, "web", "listening",
        {{"address", options.address}, {"port", bound_port.load()}, {"tls", ssl ? "yes" : "no"}});
    return ok();
}

void ServerCore::run_io() {
    for (;;) {
        try {
            ioc.run();
            return;
        } catch (const std::exception& e) {
            // Handlers catch their own exceptions; this is a bug, but the loop must keep serving.
            logger->log(LogLevel::error, "web", "io_handler_exception", {{"what", e.what()}});
        }
    }
}

void ServerCore::do_accept() {
    acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket s) {
        on_accept(ec, std::move(s));
    });
}

void ServerCore::on_accept(const beast::error_code& ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || stopping.load()) return;
    if (ec) {
        logger->log(LogLevel::warn, "web", "accept_failed", {{"error", ec.message()}});
        accept_backoff.expires_after(kAcceptBackoff);
        accept_backoff.async_wait([this](beast::error_code wait_ec) {
            if (!wait_ec && !stopping.load()) do_accept();
        });
        return;
    }
    launch(std::move(socket));
    do_accept();
}

std::optional<ServerCore::Admission> ServerCore::admit() {
    std::lock_guard lock(mu);
    Admission a{++next_id, false};
    if (active >= options.max_connections) {
        if (rejecting >= kMaxRejecting) return std::nullopt;
        a.reject = true;
        ++rejecting;
    } else {
        ++active;
        connections_gauge.set(static_cast<double>(active));
    }
    return a;
}

void ServerCore::launch(tcp::socket socket) {
    const auto admission = admit();
    if (!admission) {
        count_rejected("max_connections");
        return;  // the socket closes here
    }
    if (admission->reject) count_rejected("max_connections");
    auto remote = endpoint_text(socket);
    std::shared_ptr<ConnectionBase> conn;
    try {
        if (ssl) {
            conn = std::make_shared<Connection<SslStream>>(*this, std::move(socket), admission->id,
                                                           admission->reject, std::move(remote));
        } else {
            conn = std::make_shared<Connection<beast::tcp_stream>>(
                *this, std::move(socket), admission->id, admission->reject, std::move(remote));
        }
    } catch (const std::exception& e) {
        // Only construction can throw here (SSL_new failing); nothing was started.
        logger->log(LogLevel::error, "web", "connection_setup_failed", {{"what", e.what()}});
        connection_gone(admission->id, admission->reject);
        return;
    }
    {
        std::lock_guard lock(mu);
        connections.emplace(admission->id, conn);
    }
    conn->start();
}

void ServerCore::connection_gone(std::uint64_t id, bool was_rejecting) {
    {
        std::lock_guard lock(mu);
        connections.erase(id);
        if (was_rejecting) {
            --rejecting;
        } else {
            --active;
            connections_gauge.set(static_cast<double>(active));
        }
    }
    cv.notify_all();
}

void ServerCore::flight_begin() {
    std::lock_guard lock(mu);
    ++in_flight;
}

void ServerCore::flight_end() {
    bool idle = false;
    {
        std::lock_guard lock(mu);
        idle = --in_flight == 0;
    }
    if (idle) cv.notify_all();
}

void ServerCore::count_rejected(const char* reason) { rejected_total.with({reason}).inc(); }

Response ServerCore::run_handler(const Route& route, Request& req) {
    std::string what = "unknown exception";
    try {
        return route.handler(req);
    } catch (const std::exception& e) {
        what = e.what();
    } catch (...) {
    }
    logger->log(LogLevel::error, "web", "handler_exception",
                {{"request_id", req.request_id}, {"route", route.name}, {"what", what}});
    return error_response(ApiError{500, "internal", "internal error", {}}, req.request_id);
}

void ServerCore::record(const Exchange& ex, std::string_view remote) {
    const auto seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - ex.start).count();
    requests_total.with({ex.route, std::string(ex.method), std::to_string(ex.status)}).inc();
    request_duration.with({ex.route}).observe(seconds);
    // Never the body, the query string or any header: they may carry tokens.
    logger->log(ex.status >= 500 ? LogLevel::warn : LogLevel::debug, "web", "http_request",
                {{"request_id", ex.request_id},
                 {"method", ex.method},
                 {"path", ex.path},
                 {"route", ex.route},
                 {"status", ex.status},
                 {"ms", seconds * 1000.0},
                 {"remote", remote}});
}

void ServerCore::broadcast_shut(bool force) {
    std::vector<std::shared_ptr<ConnectionBase>> live;
    {
        std::lock_guard lock(mu);
        for (const auto& [id, weak] : connections) {
            if (auto c = weak.lock()) live.push_back(std::move(c));
        }
    }
    for (const auto& c : live) c->shut(force);
}

void ServerCore::stop() {
    std::lock_guard life(lifecycle_mu);
    if (stopped) return;
    stopped = true;
    if (!started) return;
    stopping.store(true);
    const auto grace_end = std::chrono::steady_clock::now() + options.shutdown_grace;

    // 1. Stop accepting. Waiting for the strand means no launch() runs after this point.
    std::promise<void> closed;
    net::post(acceptor.get_executor(), [this, &closed] {
        beast::error_code ignored;
        acceptor.close(ignored);
        accept_backoff.cancel();
        closed.set_value();
    });
    closed.get_future().wait_until(grace_end);

    // 2. Idle connections close now; busy ones after their response ("Connection: close").
    broadcast_shut(false);
    {
        std::unique_lock lock(mu);
        cv.wait_until(lock, grace_end, [this] { return in_flight == 0; });
    }

    // 3. Grace is over: close everything, drop queued work, wait for running handlers (they
    //    cannot be interrupted), then let the connections unwind and stop the loop.
    broadcast_shut(true);
    pool->stop();
    {
        std::unique_lock lock(mu);
        cv.wait_for(lock, kUnwindWait, [this] { return connections.empty(); });
    }
    work.reset();
    ioc.stop();
    for (auto& t : io_threads) t.join();
    io_threads.clear();
    logger->log(LogLevel::info, "web", "stopped", {{"port", bound_port.load()}});
}

struct Server::Impl : ServerCore {
    using ServerCore::ServerCore;
};

Server::Server(ServerOptions options, std::shared_ptr<const Router> router,
               std::shared_ptr<Registry> metrics, std::shared_ptr<Logger> logger)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(router), std::move(metrics),
                                   std::move(logger))) {}

Server::~Server() { stop(); }

Result<void> Server::start() { return impl_->start(); }

std::uint16_t Server::port() const noexcept { return impl_->bound_port.load(); }

void Server::stop() { impl_->stop(); }

std::size_t Server::queue_depth() const noexcept { return impl_->pool ? impl_->pool->depth() : 0; }

std::size_t Server::in_flight() const noexcept {
    std::lock_guard lock(impl_->mu);
    return impl_->in_flight;
}

}  // namespace signet::web
