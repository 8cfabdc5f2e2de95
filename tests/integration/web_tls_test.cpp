#include "signet/web/client.hpp"

#include <catch2/catch.hpp>
#include <cctype>
#include <filesystem>
#include <string>

#include "signet/web/server.hpp"
#include "signet_test/result_matchers.hpp"
#include "signet_test/temp_dir.hpp"
#include "web_fixture.hpp"

using namespace signet;
using namespace signet::web;
using namespace signet::test;

namespace {

std::string with_colons(const std::string& hex) {
    std::string out;
    for (std::size_t i = 0; i < hex.size(); i += 2) out += (i ? ":" : "") + hex.substr(i, 2);
    return out;
}

// Answers with what the server knows about the peer's TLS identity.
Response whoami(Request& req) {
    Response r;
    r.content_type = "text/plain";
    r.body = std::string(req.tls ? "tls " : "plain ") + req.client_cert_sha256.value_or("none");
    return r;
}

// "AB:CD:..." form, as operators copy fingerprints from openssl x509 -fingerprint.
std::string colon_upper(const std::string& hex) {
    std::string out;
    for (std::size_t i = 0; i < hex.size(); i += 2) {
        if (!out.empty()) out += ':';
        out += static_cast<char>(std::toupper(static_cast<unsigned char>(hex[i])));
        out += static_cast<char>(std::toupper(static_cast<unsigned char>(hex[i + 1])));
    }
    return out;
}

struct TlsFixture {
    TestCertificate server_cert = make_certificate("signet-test-server");
    ServerFixture fx;

    explicit TlsFixture(bool request_client_cert) {
        fx.add("GET", "/whoami", whoami);
        ServerOptions o;
        o.tls_context = server_tls_context(server_cert, request_client_cert);
        fx.start(o);
    }

    ClientOptions client(std::string pin) const {
        auto o = fx.client_options();
        o.tls = true;
        o.pinned_sha256 = std::move(pin);
        return o;
    }
};

}  // namespace

TEST_CASE("TLS round trip with the server certificate pinned by fingerprint",
          "[web][integration][tls]") {
    TlsFixture t(false);
    SECTION("lower-case hex pin") {
        HttpClient client(t.client(t.server_cert.sha256));
        for (int i = 0; i < 3; ++i) {  // keep-alive over TLS
            const auto r = client.request("GET", "/whoami");
            REQUIRE_OK(r);
            CHECK(r->status == 200);
            CHECK(r->body == "tls none");
        }
    }
    SECTION("colon-separated upper-case pin") {
        HttpClient client(t.client(colon_upper(t.server_cert.sha256)));
        const auto r = client.request("GET", "/whoami");
        REQUIRE_OK(r);
        CHECK(r->status == 200);
    }
}

TEST_CASE("a wrong pin is refused with both fingerprints in the error", "[web][integration][tls]") {
    TlsFixture t(false);
    const auto other = make_certificate("someone-else");
    HttpClient client(t.client(other.sha256));
    const auto r = client.request("GET", "/whoami");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().is(Errc::verification_failed));
    const auto msg = r.error().message();
    // In signetd's start-up format ("aa:bb:.."), for an operator to compare by eye.
    CHECK(msg.find("expected " + with_colons(other.sha256)) != std::string::npos);
    CHECK(msg.find("got " + with_colons(t.server_cert.sha256)) != std::string::npos);
}

TEST_CASE("without a pin a self-signed server certificate is not trusted",
          "[web][integration][tls]") {
    TlsFixture t(false);
    HttpClient client(t.client(""));
    const auto r = client.request("GET", "/whoami");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message().find("TLS handshake") != std::string::npos);
}

TEST_CASE("mutual TLS exposes the client certificate fingerprint to handlers",
          "[web][integration][tls]") {
    TlsFixture t(true);
    const auto client_cert = make_certificate("signet-test-client");
    TempDir dir("signet-web-tls");
    const auto cert_file =
        dir.write_file("client.pem", client_cert.cert_pem, std::filesystem::perms::owner_read);
    const auto key_file =
        dir.write_file("client.key", client_cert.key_pem, std::filesystem::perms::owner_read);
    SECTION("with a client certificate") {
        auto o = t.client(t.server_cert.sha256);
        o.client_cert_file = cert_file.string();
        o.client_key_file = key_file.string();
        HttpClient client(o);
        const auto r = client.request("GET", "/whoami");
        REQUIRE_OK(r);
        CHECK(r->body == "tls " + client_cert.sha256);
        CHECK(client_cert.sha256 != t.server_cert.sha256);
    }
    SECTION("without one") {
        HttpClient client(t.client(t.server_cert.sha256));
        const auto r = client.request("GET", "/whoami");
        REQUIRE_OK(r);
        CHECK(r->body == "tls none");
    }
    SECTION("an unreadable key file is reported, not thrown") {
        auto o = t.client(t.server_cert.sha256);
        o.client_cert_file = cert_file.string();
        o.client_key_file = (dir.path() / "missing.key").string();
        HttpClient client(o);
        const auto r = client.request("GET", "/whoami");
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().message().find("missing.key") != std::string::npos);
    }
}

TEST_CASE("a plain-HTTP client against a TLS server fails cleanly", "[web][integration][tls]") {
    TlsFixture t(false);
    auto o = t.fx.client_options();
    o.timeout = std::chrono::seconds(5);
    HttpClient client(o);
    const auto r = client.request("GET", "/whoami");
    if (r) CHECK(r->status != 200);  // some stacks answer garbage, others just close
    // The server keeps serving TLS afterwards.
    HttpClient good(t.client(t.server_cert.sha256));
    const auto ok = good.request("GET", "/whoami");
    REQUIRE_OK(ok);
    CHECK(ok->status == 200);
}
