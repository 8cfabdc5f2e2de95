// signetd's configuration: strict TOML (a typo is an error, never a silent default), command-line
// flags on top, cross-option validation. Errors must name the file, the option and the problem.
#include "config.hpp"

#include <catch2/catch.hpp>
#include <string>

#include "signet_test/result_matchers.hpp"

namespace sd = signet::daemon;
using signet::Errc;

namespace {

const std::string kValid = R"(
[server]
listen = "127.0.0.1:0"
worker_threads = 4
shutdown_grace_ms = 2500

[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "signet"
pin_file = "/var/lib/signet/pin"

[tls]
identity_token_label = "signet-identity"
subject_alt_names = ["localhost", "127.0.0.1"]

[store]
data_dir = "/var/lib/signet/data"

[limits]
batch_max = 64

[log]
level = "debug"
)";

// CHECKs that `text` is refused with a message containing every needle.
void check_refused(const std::string& text, std::initializer_list<std::string> needles) {
    INFO("config:\n" << text);
    const auto c = sd::parse_config(text, "test.toml");
    REQUIRE_FALSE(c.has_value());
    INFO(c.error().message());
    CHECK(c.error().is(Errc::invalid_argument));
    CHECK(c.error().message().find("test.toml") != std::string::npos);
    for (const auto& n : needles) CHECK(c.error().message().find(n) != std::string::npos);
}

sd::Config valid_config() {
    auto c = sd::parse_config(kValid, "test.toml");
    REQUIRE_OK(c);
    return *c;
}

// CHECKs that validate() refuses `c` with invalid_argument and a message naming `option`.
void check_invalid(const sd::Config& c, const std::string& option) {
    const auto r = sd::validate(c);
    REQUIRE_FALSE(r.has_value());
    INFO(r.error().message());
    CHECK(r.error().is(Errc::invalid_argument));
    CHECK(r.error().message().find(option) != std::string::npos);
}

}  // namespace

TEST_CASE("a complete configuration parses into every field", "[daemon][unit][config]") {
    const sd::Config c = valid_config();
    CHECK(c.listen_address == "127.0.0.1");
    CHECK(c.port == 0);
    CHECK(c.worker_threads == 4);
    CHECK(c.shutdown_grace == std::chrono::milliseconds(2500));
    CHECK(c.token_label == "signet");
    CHECK(c.pin_file == "/var/lib/signet/pin");
    CHECK(c.subject_alt_names == std::vector<std::string>{"localhost", "127.0.0.1"});
    CHECK(c.database_path() == "/var/lib/signet/data/signet.db");
    CHECK(c.batch_max == 64);
    CHECK(c.log_level == signet::LogLevel::debug);
    CHECK(c.identity_pin() == c.pin_file);  // defaults to the signing token's PIN
    CHECK_OK(sd::validate(c));
}

TEST_CASE("configuration mistakes are refused with the option named", "[daemon][unit][config]") {
    check_refused(kValid + "\n[extras]\nx = 1\n", {"unknown section [extras]"});
    check_refused("[server]\nlisten_adress = \"127.0.0.1:1\"\n",
                  {"unknown option [server] listen_adress"});
    check_refused("[hsm]\npin = \"1234\"\n", {"unknown option [hsm] pin"});
    check_refused("[server]\nworker_threads = \"eight\"\n",
                  {"[server] worker_threads", "wrong type"});
    check_refused("[server]\nworker_threads = -1\n", {"[server] worker_threads", "out of range"});
    check_refused("[server]\ntls = \"yes\"\n", {"[server] tls", "wrong type"});
    check_refused("[server]\nlisten = \"localhost\"\n", {"ADDRESS:PORT"});
    check_refused("[server]\nlisten = \"127.0.0.1:70000\"\n", {"70000"});
    check_refused("[log]\nlevel = \"verbose\"\n", {"verbose"});
    check_refused("[server\n", {"not valid TOML"});
    check_refused("server = 1\n", {"[server] must be a table"});
    check_refused("[server]\nmax_inline_fast = -1\n", {"[server] max_inline_fast", "out of range"});
    check_refused("[server]\nrequest_timeout_ms = -5\n",
                  {"[server] request_timeout_ms", "out of range"});
}

TEST_CASE("validation refuses unsafe or impossible combinations", "[daemon][unit][config]") {
    sd::Config c = valid_config();
    SECTION("no PIN file") {
        c.pin_file.clear();
        const auto r = sd::validate(c);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().message().find("pin_file") != std::string::npos);
    }
    SECTION("plain HTTP needs loopback and allow_plain_http") {
        c.tls = false;
        CHECK_FALSE(sd::validate(c).has_value());  // not allowed
        c.allow_plain_http = true;
        CHECK_OK(sd::validate(c));  // 127.0.0.1
        c.listen_address = "::1";
        CHECK_OK(sd::validate(c));
        c.listen_address = "0.0.0.0";
        const auto r = sd::validate(c);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().message().find("loopback") != std::string::npos);
    }
    SECTION("forwarding in a pair needs TLS with client certificates") {
        c.ha_mode = signet::ha::PairMode::hot_standby;
        c.ha_name = "a";
        c.etcd_endpoints = "a=http://127.0.0.1:2379";
        CHECK_OK(sd::validate(c));
        c.request_client_certs = false;
        const auto r = sd::validate(c);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().message().find("[ha] forward needs TLS with client certificates") !=
              std::string::npos);
        c.forward = false;
        CHECK_OK(sd::validate(c));
        c.forward_timeout = std::chrono::milliseconds(0);
        const auto t = sd::validate(c);
        REQUIRE_FALSE(t.has_value());
        CHECK(t.error().message().find("forward_timeout_ms") != std::string::npos);
    }
    SECTION("zero workers") {
        c.worker_threads = 0;
        CHECK_FALSE(sd::validate(c).has_value());
    }
    SECTION("tiny body limit") {
        c.max_body_bytes = 100;
        CHECK_FALSE(sd::validate(c).has_value());
    }
    SECTION("the TLS identity on the signing token") {
        c.identity_token_label = c.token_label;
        check_invalid(c, "[tls] identity_token_label");
    }
    SECTION("a zero request timeout") {
        c.request_timeout = std::chrono::milliseconds(0);
        check_invalid(c, "request_timeout_ms");
        CHECK(sd::validate(c).error().message().find("shutdown_grace") == std::string::npos);
    }
    SECTION("a negative shutdown grace") {
        c.shutdown_grace = std::chrono::milliseconds(-1);
        check_invalid(c, "shutdown_grace_ms");
        CHECK(sd::validate(c).error().message().find("request_timeout") == std::string::npos);
    }
    SECTION("no listen host") {
        // ":8443" parses (host "", port 8443); validation must not let it mean "every address".
        auto no_host = sd::parse_config(
            "[server]\nlisten = \":8443\"\n[hsm]\nmodule = \"m\"\ntoken_label = \"t\"\n"
            "pin_file = \"p\"\n",
            "test.toml");
        REQUIRE_OK(no_host);
        CHECK(no_host->listen_address.empty());
        check_invalid(*no_host, "[server] listen");
    }
}

TEST_CASE("command-line flags override the file and unknown flags are errors",
          "[daemon][unit][config]") {
    sd::Config c = valid_config();
    REQUIRE_OK(sd::apply_flags(c, {"--listen", "[::1]:9443", "--plain-http", "--worker-threads",
                                   "2", "--data-dir", "/tmp/x", "--log-level", "warn"}));
    CHECK(c.listen_address == "::1");
    CHECK(c.port == 9443);
    CHECK_FALSE(c.tls);
    CHECK(c.allow_plain_http);
    CHECK(c.worker_threads == 2);
    CHECK(c.database_path() == "/tmp/x/signet.db");
    CHECK(c.log_level == signet::LogLevel::warn);
    CHECK_OK(sd::validate(c));

    for (const auto& bad : std::vector<std::vector<std::string>>{{"--bogus", "1"},
                                                                 {"--worker-threads", "two"},
                                                                 {"--listen"},
                                                                 {"--log-level", "loud"}}) {
        INFO(bad.front());
        sd::Config d = valid_config();
        const auto r = sd::apply_flags(d, bad);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().message().find("command line") != std::string::npos);
    }
}
