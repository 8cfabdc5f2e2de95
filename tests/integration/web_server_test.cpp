#include "signet/web/server.hpp"

#include <atomic>
#include <catch2/catch.hpp>
#include <future>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

#include "signet/web/client.hpp"
#include "signet/web/errors.hpp"
#include "signet_test/result_matchers.hpp"
#include "web_fixture.hpp"

using namespace signet;
using namespace signet::web;
using namespace signet::test;

namespace {

// The "code" of a JSON error body, found textually so the test does not parse with the code
// under test.
bool has_code(const Response& r, const std::string& code) {
    return r.body.find("\"code\":\"" + code + "\"") != std::string::npos;
}

// Request metrics are recorded once the response is written, which may be just after the client
// has read it: wait (boundedly) for the line to appear.
bool metrics_show(const ServerFixture& fx, const std::string& line) {
    return eventually([&] { return fx.metrics->render().find(line) != std::string::npos; });
}

std::string header(const Response& r, const std::string& name) {
    const auto it = r.headers.find(name);
    return it == r.headers.end() ? std::string() : it->second;
}

// Tells I/O threads from the others: an inline route (which always runs on an I/O thread) records
// the thread that ran it; handlers ask whether they run on one of those.
class IoThreadProbe {
public:
    // Adds GET /mark to `fx` (before start()).
    void install(ServerFixture& fx) {
        fx.router->add({"GET", "/mark", "GET /mark", Execution::inline_, [this](Request& req) {
                            const std::lock_guard lock(mu_);
                            seen_.insert(std::this_thread::get_id());
                            return echo(req);
                        }});
    }
    // Sends `n` requests to /mark, so that every I/O thread is likely to have answered one.
    void mark(const ServerFixture& fx, int n) {
        for (int i = 0; i < n; ++i)
            REQUIRE_OK(HttpClient(fx.client_options()).request("GET", "/mark"));
    }
    [[nodiscard]] bool on_io_thread() {
        const std::lock_guard lock(mu_);
        return seen_.contains(std::this_thread::get_id());
    }
    [[nodiscard]] std::size_t io_threads_seen() {
        const std::lock_guard lock(mu_);
        return seen_.size();
    }

private:
    std::mutex mu_;
    std::set<std::thread::id> seen_;  // guarded by mu_
};

}  // namespace

TEST_CASE("a keep-alive connection carries several GET and POST requests", "[web][integration]") {
    ServerFixture fx;
    fx.add("GET", "/echo/{id}", echo);
    fx.add("POST", "/echo/{id}", echo, Execution::inline_);
    fx.start();
    HttpClient client(fx.client_options());

    std::string remote;
    for (int i = 0; i < 6; ++i) {
        const bool post = i % 2 == 1;
        const auto id = std::to_string(i);
        const auto r = client.request(post ? "POST" : "GET", "/echo/" + id + "?q=1",
                                      post ? "payload-" + id : "");
        REQUIRE_OK(r);
        CHECK(r->status == 200);
        CHECK(r->body == (post ? "POST /echo/" + id + " id=" + id + " payload-" + id
                               : "GET /echo/" + id + " id=" + id + " "));
        CHECK(header(*r, "x-request-id").size() == 32);
        // Same peer address and port every time: one TCP connection was reused.
        if (i == 0) remote = header(*r, "X-Remote");
        CHECK(header(*r, "X-Remote") == remote);
    }
    CHECK_FALSE(remote.empty());

    // A body far larger than the read buffer streams into the request and back out.
    const std::string big(700 * 1024, 'z');
    const auto r = client.request("POST", "/echo/big", big);
    REQUIRE_OK(r);
    CHECK(r->status == 200);
    CHECK(r->body == "POST /echo/big id=big " + big);
    CHECK(header(*r, "X-Remote") == remote);
}

TEST_CASE("the client reconnects after the server closed an idle keep-alive connection",
          "[web][integration]") {
    ServerFixture fx;
    fx.add("POST", "/echo/{id}", echo);
    ServerOptions o;
    o.idle_timeout = 100ms;
    fx.start(o);
    HttpClient client(fx.client_options());

    const auto first = client.request("POST", "/echo/1", "a");
    REQUIRE_OK(first);
    REQUIRE(metrics_show(fx, "signet_http_connections 0"));  // the server timed it out
    // A POST is never retried after a failure, so this succeeds only if the closed connection
    // was noticed before sending.
    const auto second = client.request("POST", "/echo/2", "b");
    REQUIRE_OK(second);
    CHECK(second->status == 200);
    CHECK(header(*second, "X-Remote") != header(*first, "X-Remote"));
}

TEST_CASE("a body beyond max_body_bytes is answered 413 and the connection closed",
          "[web][integration]") {
    ServerFixture fx;
    fx.add("POST", "/echo/{id}", echo);
    ServerOptions o;
    o.max_body_bytes = 1024;
    fx.start(o);
    HttpClient client(fx.client_options());

    const auto big = client.request("POST", "/echo/1", std::string(64 * 1024, 'x'));
    REQUIRE_OK(big);
    CHECK(big->status == 413);
    CHECK(has_code(*big, "payload_too_large"));
    CHECK(header(*big, "Connection") == "close");

    const auto fits = client.request("POST", "/echo/1", std::string(1024, 'y'));
    REQUIRE_OK(fits);
    CHECK(fits->status == 200);
    CHECK(metrics_show(fx, "signet_http_rejected_total{reason=\"body_too_large\"} 1"));
}

TEST_CASE("header fields beyond max_header_bytes are answered 431", "[web][integration]") {
    ServerFixture fx;
    fx.add("GET", "/echo/{id}", echo);
    ServerOptions o;
    o.max_header_bytes = 4096;
    fx.start(o);
    HttpClient client(fx.client_options());

    const auto r = client.request("GET", "/echo/1", "", {{"X-Padding", std::string(8192, 'p')}});
    REQUIRE_OK(r);
    CHECK(r->status == 431);
    CHECK(has_code(*r, "header_too_large"));
    CHECK(header(*r, "x-request-id").size() == 32);

    const auto ok = client.request("GET", "/echo/1", "", {{"X-Padding", std::string(1024, 'p')}});
    REQUIRE_OK(ok);
    CHECK(ok->status == 200);
}

TEST_CASE("an unknown path is 404 and a wrong method 405 with Allow", "[web][integration]") {
    ServerFixture fx;
    fx.add("GET", "/v1/keys/{id}", echo);
    fx.add("DELETE", "/v1/keys/{id}", echo);
    fx.start();
    HttpClient client(fx.client_options());

    const auto missing = client.request("GET", "/v1/nothing");
    REQUIRE_OK(missing);
    CHECK(missing->status == 404);
    CHECK(has_code(*missing, "not_found"));

    const auto wrong = client.request("POST", "/v1/keys/k1", "{}");
    REQUIRE_OK(wrong);
    CHECK(wrong->status == 405);
    CHECK(has_code(*wrong, "method_not_allowed"));
    CHECK(header(*wrong, "Allow") == "GET, DELETE");

    // Unmatched requests are counted under a fixed label, never their raw path.
    CHECK(metrics_show(fx, "route=\"unmatched\",method=\"GET\",status=\"404\"} 1"));
    CHECK(fx.metrics->render().find("/v1/nothing") == std::string::npos);
}

TEST_CASE("a stalled request is closed after request_timeout", "[web][integration]") {
    ServerFixture fx;
    fx.add("GET", "/echo/{id}", echo);
    ServerOptions o;
    o.request_timeout = 300ms;
    o.idle_timeout = 300ms;
    fx.start(o);

    SECTION("headers that never finish") {
        RawConnection raw(fx.server->port());
        raw.send("GET /echo/1 HTTP/1.1\r\nHost: x\r\n");
        const auto r = raw.read(10s);
        CHECK(r.closed);
        CHECK(r.data.empty());
    }
    SECTION("a body that never arrives") {
        RawConnection raw(fx.server->port());
        raw.send("GET /echo/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234");
        const auto r = raw.read(10s);
        CHECK(r.closed);
        CHECK(r.data.empty());
    }
    SECTION("an idle kept-alive connection") {
        RawConnection raw(fx.server->port());
        raw.send("GET /echo/1 HTTP/1.1\r\nHost: x\r\n\r\n");
        const auto r = raw.read(10s);
        CHECK(r.closed);
        CHECK(r.data.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    }
}

TEST_CASE("malformed HTTP is answered 400 and closed", "[web][integration]") {
    ServerFixture fx;
    fx.add("GET", "/echo/{id}", echo);
    fx.start();
    RawConnection raw(fx.server->port());
    raw.send("GET /echo/1 HTTP/1.1\r\nNo colon here\r\n\r\n");
    const auto r = raw.read(10s);
    CHECK(r.closed);
    CHECK(r.data.rfind("HTTP/1.1 400 Bad Request\r\n", 0) == 0);
    CHECK(r.data.find("\"code\":\"bad_request\"") != std::string::npos);
}

TEST_CASE("Expect: 100-continue gets an interim response before the body is sent",
          "[web][integration]") {
    ServerFixture fx;
    fx.add("POST", "/echo/{id}", echo);
    fx.start();
    RawConnection raw(fx.server->port());
    raw.send(
        "POST /echo/1 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n"
        "Connection: close\r\n\r\n");
    const auto interim = raw.read(10s, "\r\n\r\n");
    CHECK(interim.data == "HTTP/1.1 100 Continue\r\n\r\n");
    REQUIRE_FALSE(interim.closed);
    raw.send("hello");
    const auto final_response = raw.read(10s);
    CHECK(final_response.closed);
    CHECK(final_response.data.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    CHECK(final_response.data.find("POST /echo/1 id=1 hello") != std::string::npos);
}

TEST_CASE("a full admission queue answers 503 overloaded with Retry-After at once",
          "[web][integration]") {
    ServerFixture fx;
    Gate gate;
    fx.add("POST", "/slow", [&](Request& req) {
        gate.pass();
        return echo(req);
    });
    fx.add("GET", "/health", echo, Execution::inline_);
    ServerOptions o;
    o.worker_threads = 1;
    o.queue_limit = 1;
    o.retry_after_seconds = 3;
    fx.start(o);
    auto send_slow = [&] { return HttpClient(fx.client_options()).request("POST", "/slow", "a"); };

    auto running = std::async(std::launch::async, send_slow);
    REQUIRE(gate.wait_entered(1, 10s));  // the only worker is now busy
    auto queued = std::async(std::launch::async, send_slow);
    REQUIRE(eventually([&] { return fx.server->queue_depth() == 1; }));

    HttpClient third(fx.client_options());
    const auto refused = third.request("POST", "/slow", "c");
    REQUIRE_OK(refused);
    CHECK(refused->status == 503);
    CHECK(has_code(*refused, "overloaded"));
    CHECK(header(*refused, "Retry-After") == "3");
    // Inline routes are never queued, so health stays answerable under overload.
    const auto health = third.request("GET", "/health");
    REQUIRE_OK(health);
    CHECK(health->status == 200);
    // The two slow requests; the refusal and the health answer leave in-flight once written.
    CHECK(eventually([&] { return fx.server->in_flight() == 2; }));

    gate.open();
    for (auto* f : {&running, &queued}) {
        REQUIRE(f->wait_for(10s) == std::future_status::ready);
        const auto r = f->get();
        REQUIRE_OK(r);
        CHECK(r->status == 200);
    }
    CHECK(metrics_show(fx, "signet_http_rejected_total{reason=\"overloaded\"} 1"));
    CHECK(metrics_show(fx, "route=\"POST /slow\",method=\"POST\",status=\"200\"} 2"));
    CHECK(metrics_show(fx, "route=\"POST /slow\",method=\"POST\",status=\"503\"} 1"));
    CHECK(fx.server->queue_depth() == 0);
}

TEST_CASE("connections beyond max_connections are refused with 503", "[web][integration]") {
    ServerFixture fx;
    fx.add("GET", "/echo/{id}", echo);
    ServerOptions o;
    o.max_connections = 1;
    fx.start(o);

    auto first = std::make_unique<HttpClient>(fx.client_options());
    REQUIRE_OK(first->request("GET", "/echo/1"));  // holds the only connection (keep-alive)

    HttpClient second(fx.client_options());
    const auto refused = second.request("GET", "/echo/2");
    REQUIRE_OK(refused);
    CHECK(refused->status == 503);
    CHECK(has_code(*refused, "overloaded"));
    CHECK(header(*refused, "Retry-After") == "1");
    CHECK(header(*refused, "Connection") == "close");

    const auto still = first->request("GET", "/echo/1");
    REQUIRE_OK(still);
    CHECK(still->status == 200);
    CHECK(metrics_show(fx, "signet_http_rejected_total{reason=\"max_connections\"} 1"));

    first.reset();  // frees the slot once the server notices the close
    CHECK(eventually([&] {
        const auto r = second.request("GET", "/echo/2");
        return r && r->status == 200;
    }));
}

TEST_CASE("graceful stop finishes an in-flight request and refuses new connections",
          "[web][integration]") {
    ServerFixture fx;
    Gate gate;
    fx.add("POST", "/slow", [&](Request& req) {
        gate.pass();
        return echo(req);
    });
    fx.add("GET", "/echo/{id}", echo);
    ServerOptions o;
    o.shutdown_grace = 10s;
    fx.start(o);
    const auto copts = fx.client_options();

    auto in_flight = std::async(std::launch::async,
                                [&] { return HttpClient(copts).request("POST", "/slow", "x"); });
    REQUIRE(gate.wait_entered(1, 10s));
    auto stopper = std::async(std::launch::async, [&] { fx.server->stop(); });

    auto probe_opts = copts;
    probe_opts.timeout = 1s;
    CHECK(eventually([&] { return !HttpClient(probe_opts).request("GET", "/echo/1"); }));
    // stop() is still waiting for the in-flight request.
    CHECK(stopper.wait_for(50ms) == std::future_status::timeout);

    gate.open();
    REQUIRE(in_flight.wait_for(10s) == std::future_status::ready);
    const auto r = in_flight.get();
    REQUIRE_OK(r);
    CHECK(r->status == 200);
    CHECK(r->body == "POST /slow x");
    CHECK(header(*r, "Connection") == "close");
    REQUIRE(stopper.wait_for(10s) == std::future_status::ready);
    CHECK(fx.server->in_flight() == 0);
    fx.server->stop();  // idempotent
}

TEST_CASE("a throwing handler gives 500 internal and the server keeps serving",
          "[web][integration]") {
    ServerFixture fx;
    fx.add("GET", "/boom", [](Request&) -> Response { throw std::runtime_error("db path /x/y"); });
    fx.add(
        "GET", "/boom-inline", [](Request&) -> Response { throw 42; }, Execution::inline_);
    fx.add("GET", "/echo/{id}", echo);
    fx.start();
    HttpClient client(fx.client_options());

    for (const char* target : {"/boom", "/boom-inline"}) {
        INFO(target);
        const auto r = client.request("GET", target);
        REQUIRE_OK(r);
        CHECK(r->status == 500);
        CHECK(has_code(*r, "internal"));
        CHECK(r->body.find("/x/y") == std::string::npos);  // details go to the log only
    }
    CHECK(fx.logger->contains("event=handler_exception"));
    CHECK(fx.logger->contains("db path /x/y"));
    const auto ok = client.request("GET", "/echo/1");
    REQUIRE_OK(ok);
    CHECK(ok->status == 200);
}

TEST_CASE("every response echoes the request id and carries the default headers",
          "[web][integration]") {
    ServerFixture fx;
    fx.add("POST", "/echo/{id}", echo);
    ServerOptions o;
    o.default_headers = {{"Strict-Transport-Security", "max-age=63072000"},
                         {"X-Content-Type-Options", "nosniff"}};
    fx.start(o);
    HttpClient client(fx.client_options());

    const Headers secret_headers{{"Authorization", "Bearer tok-SECRET-1"},
                                 {"X-Vault-Token", "tok-SECRET-2"}};
    SECTION("a sane client id is echoed") {
        auto h = secret_headers;
        h["X-Request-Id"] = "client.id-42";
        const auto r = client.request("POST", "/echo/1", "body-SECRET-3", h);
        REQUIRE_OK(r);
        CHECK(header(*r, "X-Request-Id") == "client.id-42");
        CHECK(header(*r, "Strict-Transport-Security") == "max-age=63072000");
        CHECK(header(*r, "X-Content-Type-Options") == "nosniff");
    }
    SECTION("an insane one is replaced, also on error responses") {
        const auto r = client.request("GET", "/nowhere", "", {{"X-Request-Id", "a b\"c"}});
        REQUIRE_OK(r);
        CHECK(r->status == 404);
        const auto id = header(*r, "X-Request-Id");
        CHECK(id.size() == 32);
        CHECK(r->body.find(id) != std::string::npos);
        CHECK(header(*r, "X-Content-Type-Options") == "nosniff");
    }
    SECTION("access log lines carry the id but no secrets") {
        const auto r = client.request("POST", "/echo/1", "body-SECRET-3", secret_headers);
        REQUIRE_OK(r);
        REQUIRE(eventually([&] { return fx.logger->contains("event=http_request"); }));
        CHECK(fx.logger->contains("request_id=" + header(*r, "X-Request-Id")));
        CHECK_FALSE(fx.logger->contains("SECRET"));
    }
}

TEST_CASE(
    "fast-path requests run on an I/O thread within budget and health answers while one is stuck",
    "[web][integration]") {
    ServerFixture fx;
    Gate gate;
    IoThreadProbe probe;
    std::atomic<int> on_io{0};
    fx.router->add({"POST", "/fast", "POST /fast", Execution::worker,
                    [&](Request& req) {
        gate.pass();
        return echo(req);
                    },
                    [](const Request& req) { return req.body != "slow"; }});
    fx.router->add({"GET", "/where", "GET /where", Execution::worker, [&](Request& req) {
                        if (probe.on_io_thread()) ++on_io;
                        return echo(req);
                    }});
    fx.add("GET", "/health", echo, Execution::inline_);
    probe.install(fx);
    ServerOptions o;
    o.io_threads = 2;  // budget: one fast-path handler at a time, one I/O thread kept free
    o.worker_threads = 2;
    fx.start(o);
    probe.mark(fx, 8);

    // A stuck fast-path handler (an HSM that stalls) holds one I/O thread...
    auto stuck = std::async(std::launch::async, [&] {
        return HttpClient(fx.client_options()).request("POST", "/fast", "x");
    });
    REQUIRE(gate.wait_entered(1, 10s));
    // ...the other still answers health checks, and a second fast request goes to the workers.
    // (Short timeout: were both I/O threads stuck, health would not answer until the gate opens.)
    auto quick = fx.client_options();
    quick.timeout = 2s;
    HttpClient client(quick);
    const auto health = client.request("GET", "/health");
    REQUIRE_OK(health);
    CHECK(health->status == 200);
    auto second = std::async(std::launch::async, [&] {
        return HttpClient(fx.client_options()).request("POST", "/fast", "y");
    });
    REQUIRE(gate.wait_entered(2, 10s));
    CHECK(client.request("GET", "/health")->status == 200);
    gate.open();
    for (auto* f : {&stuck, &second}) {
        REQUIRE(f->wait_for(10s) == std::future_status::ready);
        const auto r = f->get();
        REQUIRE_OK(r);
        CHECK(r->status == 200);
    }
    // A worker route without a fast path never runs on an I/O thread.
    for (int i = 0; i < 4; ++i) REQUIRE_OK(client.request("GET", "/where"));
    CHECK(on_io == 0);
}

TEST_CASE("with one I/O thread there is no inline budget: fast-path requests run on the workers",
          "[web][integration]") {
    ServerFixture fx;
    IoThreadProbe probe;
    std::atomic<int> fast{0}, fast_on_io{0};
    fx.router->add({"POST", "/fast", "POST /fast", Execution::worker,
                    [&](Request& req) {
        ++fast;
        if (probe.on_io_thread()) ++fast_on_io;
        return echo(req);
                    },
                    [](const Request&) { return true; }});
    probe.install(fx);
    ServerOptions o;
    o.io_threads = 1;  // the only I/O thread must stay free for health checks
    o.worker_threads = 2;
    SECTION("default budget") { o.max_inline_fast = 0; }
    SECTION("a budget larger than the I/O threads is capped") { o.max_inline_fast = 4; }
    fx.start(o);
    probe.mark(fx, 1);
    REQUIRE(probe.io_threads_seen() == 1);

    HttpClient client(fx.client_options());
    for (int i = 0; i < 4; ++i) {
        const auto r = client.request("POST", "/fast", "x");
        REQUIRE_OK(r);
        CHECK(r->status == 200);
    }
    CHECK(fast == 4);
    CHECK(fast_on_io == 0);
}
