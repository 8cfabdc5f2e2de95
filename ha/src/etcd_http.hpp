// One HTTP/1.1 connection to one etcd member's JSON gateway (plain TCP or TLS), driven
// synchronously by the calling thread through a private io_context so that every step has an
// absolute deadline (beast::tcp_stream timers only act on asynchronous operations).
// Thread affinity: one thread at a time uses a connection; only interrupt() may be called from
// another thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "signet/ha/etcd_coordinator.hpp"

namespace signet::ha::detail {

using SteadyClock = std::chrono::steady_clock;

// Client TLS context: verifies members against ca_file and presents the client certificate.
// invalid_argument names the file that could not be loaded.
[[nodiscard]] Result<std::shared_ptr<boost::asio::ssl::context>> make_tls_context(
    const EtcdOptions& options);

struct HttpReply {
    unsigned status = 0;
    std::string body;
};

// The outcome of one exchange. `maybe_sent` is false only when no byte of the request can have
// reached the member (the failure happened while connecting or in the TLS handshake).
struct HttpOutcome {
    bool ok = false;
    HttpReply reply;
    boost::system::error_code error;
    bool maybe_sent = false;
    std::string stage;  // "connect", "tls handshake", "write", "read": for error contexts
};

class HttpConnection {
public:
    // `tls` null: plain HTTP.
    HttpConnection(EtcdEndpoint endpoint, std::shared_ptr<boost::asio::ssl::context> tls);
    ~HttpConnection();
    HttpConnection(const HttpConnection&) = delete;
    HttpConnection& operator=(const HttpConnection&) = delete;

    // TCP connect and TLS handshake, both finished before `deadline`. On failure nothing of a
    // request was sent (maybe_sent is false).
    HttpOutcome connect(SteadyClock::time_point deadline);

    // POST `body` (JSON) to `target` and read the whole response before `deadline`. The connection
    // stays open for reuse when the member allows keep-alive; any failure closes it.
    HttpOutcome post(std::string_view target, const std::string& body,
                     SteadyClock::time_point deadline);

    // Streaming POST (watch): sends the request, then hands every piece of the response body to
    // `on_data` as it arrives, until the stream ends, fails, `on_data` returns false, or
    // interrupt() is called. `first_deadline` bounds the time until `on_data` first returns with
    // `*established` set by the handler; afterwards reads wait indefinitely.
    using DataHandler = std::function<bool(std::string_view)>;
    HttpOutcome post_stream(std::string_view target, const std::string& body,
                            SteadyClock::time_point first_deadline, const bool* established,
                            const DataHandler& on_data);

    // Thread-safe: closes the socket on the connection's own thread, which unblocks a pending
    // read of post_stream().
    void interrupt();

    [[nodiscard]] bool is_open() const noexcept { return open_; }
    [[nodiscard]] const EtcdEndpoint& endpoint() const noexcept { return endpoint_; }

private:
    using TlsStream = boost::beast::ssl_stream<boost::beast::tcp_stream>;

    boost::beast::tcp_stream& tcp();
    // Runs the io_context until the operation started by `start` has completed.
    template <class Start>
    boost::system::error_code run(Start&& start);
    template <class Fn>
    decltype(auto) with_stream(Fn&& fn);
    HttpOutcome fail(const char* stage, boost::system::error_code ec, bool maybe_sent);
    void close() noexcept;

    EtcdEndpoint endpoint_;
    std::shared_ptr<boost::asio::ssl::context> tls_ctx_;
    boost::asio::io_context ioc_;
    std::unique_ptr<boost::beast::tcp_stream> plain_;  // set when tls_ctx_ is null
    std::unique_ptr<TlsStream> tls_;                   // set when tls_ctx_ is not null
    boost::beast::flat_buffer buffer_;
    bool open_ = false;
};

}  // namespace signet::ha::detail
