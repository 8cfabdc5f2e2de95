// Server internals shared by server.cpp and the connection template (connection.hpp). Private to
// signet_web; only server.cpp includes it, which keeps the server's Asio code in one translation
// unit.
#pragma once

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "signet/web/server.hpp"
#include "signet/web/wire.hpp"
#include "worker_pool.hpp"

namespace signet::web {

// What stop() needs from a connection of either stream type.
class ConnectionBase {
public:
    virtual ~ConnectionBase() = default;
    // Begins the connection's work on its strand (TLS handshake or first read).
    virtual void start() = 0;
    // Posted to the connection's strand: closes it now when `force`, or when it is not answering
    // a request (the busy ones close after their response, which says "Connection: close").
    virtual void shut(bool force) = 0;
};

// One request/response exchange on a connection, for metrics and the access log.
struct Exchange {
    std::string request_id;
    std::string route = "unmatched";  // route name: bounded label, never the raw path
    std::string_view method = "other";
    std::string path;
    unsigned version = 11;
    bool keep_alive = false;
    int status = 0;
    std::chrono::steady_clock::time_point start;
};

// The server's state and what its connections call back into. Server::Impl is this type; it is
// named at namespace scope so that the connection template can use it. Outlives every connection.
struct ServerCore {
    ServerCore(ServerOptions o, std::shared_ptr<const Router> r, std::shared_ptr<Registry> m,
               std::shared_ptr<Logger> l);
    ~ServerCore();
    ServerCore(const ServerCore&) = delete;
    ServerCore& operator=(const ServerCore&) = delete;

    Result<void> start();
    void stop();

    // --- called by connections (any io thread) ---
    // Runs a handler; an exception becomes a logged 500 "internal" and never escapes.
    Response run_handler(const Route& route, Request& req);
    // Metrics and the access-log line for a finished exchange.
    void record(const Exchange& ex, std::string_view remote);
    void count_rejected(const char* reason);
    void flight_begin();
    void flight_end();
    void connection_gone(std::uint64_t id, bool rejecting);

    // First member, so the SSL_CTX is owned (and freed) even if the rest of construction throws,
    // and destroyed last, after every connection that uses it.
    std::optional<boost::asio::ssl::context> ssl;

    // Immutable after construction (read by every thread).
    const ServerOptions options;  // tls_context is null here: ownership moved to ssl
    const wire::Limits limits;
    const std::shared_ptr<const Router> router;
    const std::shared_ptr<Registry> registry;
    const std::shared_ptr<Logger> logger;
    Family<Counter>& requests_total;
    Family<Histogram>& request_duration;
    Gauge& queue_depth_gauge;
    Gauge& connections_gauge;
    Family<Counter>& rejected_total;

    std::atomic<bool> stopping{false};
    std::atomic<std::uint16_t> bound_port{0};

    std::mutex mu;
    std::condition_variable cv;  // signalled when in_flight reaches 0 or a connection goes
    std::unordered_map<std::uint64_t, std::weak_ptr<ConnectionBase>> connections;  // guarded by mu
    std::size_t active = 0;     // admitted connections, guarded by mu
    std::size_t rejecting = 0;  // connections being refused with 503, guarded by mu
    std::size_t in_flight = 0;  // requests being answered, guarded by mu
    std::uint64_t next_id = 0;  // guarded by mu

    std::mutex lifecycle_mu;  // serialises start() and stop()
    bool started = false;     // guarded by lifecycle_mu
    bool stopped = false;     // guarded by lifecycle_mu

    // Members are destroyed in reverse order: the io_context dies before everything above (its
    // pending handlers own connections whose destructors call connection_gone()), and the
    // acceptor, pool and threads die before it.
    boost::asio::io_context ioc;
    // Keeps ioc.run() returning only at stop(): a connection waiting for a worker has no pending
    // operation, and the worker's post back must still find running io threads.
    std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work;
    boost::asio::ip::tcp::acceptor acceptor;   // used on its own strand only
    boost::asio::steady_timer accept_backoff;  // same strand as the acceptor
    std::optional<WorkerPool> pool;            // created by start()
    std::atomic<std::size_t> inline_fast{0};   // fast-path handlers running on I/O threads now
    std::vector<std::thread> io_threads;

private:
    struct Admission {
        std::uint64_t id;
        bool reject;
    };
    std::optional<Admission> admit();
    void do_accept();
    void on_accept(const boost::system::error_code& ec, boost::asio::ip::tcp::socket socket);
    void launch(boost::asio::ip::tcp::socket socket);
    void broadcast_shut(bool force);
    void run_io();
};

}  // namespace signet::web
