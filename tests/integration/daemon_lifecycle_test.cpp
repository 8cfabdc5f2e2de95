// Standalone appliance, the real signetd process: graceful shutdown (SIGTERM lets in-flight work
// finish and exits 0), one daemon per data directory, refusal to start on configuration mistakes
// (with a message naming the problem), a store from a newer Signet or a damaged one refused,
// systemd readiness notifications, and plain HTTP on loopback.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <thread>

#include "db.hpp"
#include "signet/pkcs11/algorithm.hpp"
#include "signet_test/crypto_oracle.hpp"
#include "signet_test/daemon_api.hpp"
#include "signet_test/daemon_harness.hpp"
#include "signet_test/independent_verify.hpp"
#include "signet_test/result_matchers.hpp"

namespace test = signet::test;
namespace json = boost::json;
using test::ApiClient;
using test::ApiReply;
using test::contains;
using namespace std::chrono_literals;

namespace {

// Starts another signetd on `d`'s var directory and expects it to refuse with exit `code` and a
// message containing each of `needles` on stderr.
void check_refuses(const test::SignetDaemon& d, int code, const std::vector<std::string>& needles,
                   const std::vector<std::string>& flags = {}) {
    const test::ProcessOutcome out = d.run_another(flags, 60s);
    INFO(out.status.describe() << "\nstdout:\n" << out.out << "\nstderr:\n" << out.err);
    CHECK(out.status.exited_with(code));
    for (const auto& n : needles) CHECK(contains(out.err, n));
    CHECK_FALSE(contains(out.out, "listening"));
}

// A datagram socket standing in for systemd's $NOTIFY_SOCKET.
class NotifySocket {
public:
    explicit NotifySocket(const std::filesystem::path& path) : path_(path) {
        fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd_ >= 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        REQUIRE(path.native().size() < sizeof addr.sun_path);
        std::memcpy(addr.sun_path, path.c_str(), path.native().size());
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        const timeval bound{.tv_sec = 30, .tv_usec = 0};
        REQUIRE(::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound) == 0);
    }
    ~NotifySocket() {
        ::close(fd_);
        std::filesystem::remove(path_);
    }
    NotifySocket(const NotifySocket&) = delete;
    NotifySocket& operator=(const NotifySocket&) = delete;

    // The next datagram, or "" after 30 s.
    [[nodiscard]] std::string next() const {
        char buf[512];
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
    }

private:
    std::filesystem::path path_;
    int fd_ = -1;
};

}  // namespace

TEST_CASE("SIGTERM lets an in-flight request finish and signetd exits 0",
          "[daemon][integration][lifecycle]") {
    test::ProvisionedDaemon p({}, [](test::SignetDaemon& d) {
        d.set_option("limits", "batch_max", "1000");
        d.set_option("server", "shutdown_grace_ms", "90000");
    });
    ApiClient admin = p.api(p.admin);
    const auto key = test::create_key(admin, "rsa-3072", "slow-key");
    const std::string key_id = test::str(key, "id");
    const std::string pem = test::str(key.at("public_key").as_object(), "pem");

    // ~1000 RSA-3072 signatures: seconds of HSM work in one request.
    json::array digests;
    for (int i = 0; i < 1000; ++i)
        digests.emplace_back(test::sha256_hex("artifact " + std::to_string(i)));
    std::optional<signet::Result<ApiReply>> reply;
    std::chrono::steady_clock::time_point completed;
    std::thread client([&] {
        ApiClient signer(p.daemon.client_options(120s), p.signer.token);
        reply = signer.try_request("POST", "/v1/keys/" + key_id + "/sign-batch",
                                   json::serialize(json::object{{"digests", digests}}));
        completed = std::chrono::steady_clock::now();
    });
    // Wait until the signer's connection is open (ours for /metrics is the other one), then give
    // the request time to reach the HSM. The check after the response proves it was in flight.
    ApiClient observer(p.daemon);
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (test::metric_sum(observer.get("/metrics").body, "signet_http_connections") < 2 &&
           std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(20ms);
    }
    std::this_thread::sleep_for(300ms);
    const auto terminated = std::chrono::steady_clock::now();
    p.daemon.send_signal(SIGTERM);

    // While it drains, the daemon takes no new work.
    std::this_thread::sleep_for(200ms);
    {
        ApiClient late(p.daemon.client_options(5s), "");
        auto r = late.try_request("GET", "/v1/health/live");
        CHECK((!r || r->status == 503));
    }
    const auto exited = p.daemon.wait_exit(90s);  // the configured grace period
    client.join();
    REQUIRE(exited.has_value());
    INFO(exited->describe() << "\n" << p.daemon.log());
    CHECK(exited->exited_with(0));

    REQUIRE(reply.has_value());
    REQUIRE(reply->has_value());
    const ApiReply& r = reply->value();
    INFO(r.describe());
    REQUIRE(r.status == 200);
    // The request really was in flight when SIGTERM arrived (otherwise this proves nothing).
    REQUIRE(completed > terminated);
    const auto& sigs = r.object().at("signatures").as_array();
    REQUIRE(sigs.size() == 1000);
    for (const std::size_t i : {std::size_t{0}, std::size_t{499}, std::size_t{999}}) {
        const auto digest = test::unhex(std::string(digests[i].as_string()));
        CHECK(test::evp_verify(signet::pkcs11::Algorithm::rsa_3072, test::spki_of_pem(pem), digest,
                               test::unhex(test::str(sigs[i].as_object(), "signature"))));
    }
    CHECK(contains(p.daemon.log(), "event=stopping"));

    // The shutdown flushed the plain-signature tally; the keys survive the restart.
    p.daemon.start();
    ApiClient admin2 = p.api(p.admin);
    std::uint64_t tallied = 0;
    for (const auto& rec : test::audit_with_action(admin2, "sign.plain")) {
        tallied += test::u64(rec.at("details").as_object(), "count");
    }
    CHECK(tallied == 1000);
    CHECK(admin2.get("/v1/keys/" + key_id).status == 200);
}

TEST_CASE("a second signetd on the same data directory refuses to start",
          "[daemon][integration][lifecycle]") {
    test::SignetDaemon d;
    d.start();
    check_refuses(d, 1, {"another signetd", d.data_dir().string()});
    // The first one is unharmed.
    ApiClient anon(d);
    CHECK(anon.get("/v1/health/ready").status == 200);
    REQUIRE(d.stop().exited_with(0));
    // Once it is gone, the directory is free again.
    d.start();
    CHECK(ApiClient(d).get("/v1/health/ready").status == 200);
}

TEST_CASE("signetd refuses to start on configuration mistakes and says which",
          "[daemon][integration][lifecycle][config]") {
    test::SignetDaemon d;
    SECTION("unknown option") {
        d.set_option("server", "listen_adress", "\"127.0.0.1:0\"");
        check_refuses(d, 2, {"unknown option [server] listen_adress", d.config_path().string()});
    }
    SECTION("unknown section") {
        d.append_config("\n[cluster]\npeers = []\n");
        check_refuses(d, 2, {"unknown section [cluster]"});
    }
    SECTION("wrong type") {
        d.set_option("server", "worker_threads", "\"eight\"");
        check_refuses(d, 2, {"[server] worker_threads has the wrong type"});
    }
    SECTION("not TOML") {
        d.append_config("\n[server\n");
        check_refuses(d, 2, {"not valid TOML"});
    }
    SECTION("group-readable PIN file") {
        REQUIRE(::chmod(d.pin_file().c_str(), 0640) == 0);
        check_refuses(d, 1, {d.pin_file().string(), "0640", "group or others"});
    }
    SECTION("world-readable PIN file") {
        REQUIRE(::chmod(d.pin_file().c_str(), 0604) == 0);
        check_refuses(d, 1, {d.pin_file().string(), "0604"});
    }
    SECTION("missing PIN file") {
        d.set_option("hsm", "pin_file", "\"" + (d.var_dir() / "no-such-pin").string() + "\"");
        check_refuses(d, 1, {"no-such-pin"});
    }
    SECTION("wrong PIN") {
        { std::ofstream(d.pin_file(), std::ios::trunc) << "00000000\n"; }
        check_refuses(d, 1, {"C_Login"});
    }
    SECTION("unknown token") {
        d.set_option("hsm", "token_label", "\"no-such-token\"");
        check_refuses(d, 1, {"no-such-token"});
    }
    SECTION("plain HTTP on a non-loopback address") {
        check_refuses(d, 1, {"plain HTTP is allowed only on a loopback address"},
                      {"--plain-http", "--listen", "0.0.0.0:0"});
    }
    SECTION("unknown command-line flag") {
        check_refuses(d, 2, {"unknown option --bogus"}, {"--bogus", "1"});
    }
}

TEST_CASE("signetd refuses a store from a newer Signet or a damaged one, and says so",
          "[daemon][integration][lifecycle][store]") {
    test::SignetDaemon d;
    d.start();
    REQUIRE(d.stop().exited_with(0));
    SECTION("a newer schema version") {
        {
            auto db = signet::daemon::Db::open(d.db_path(), true);
            REQUIRE_OK(db);
            REQUIRE_OK(db->exec("PRAGMA user_version = 9999"));
        }
        check_refuses(
            d, 1,
            {"the store " + d.db_path().string(), "schema version 9999 is newer than this Signet"});
    }
    SECTION("damaged pages") {
        // Overwrite everything after the first page (the header stays valid, the b-trees do not).
        const auto size = std::filesystem::file_size(d.db_path());
        REQUIRE(size > 8192);
        {
            std::fstream f(d.db_path(), std::ios::in | std::ios::out | std::ios::binary);
            f.seekp(4096);
            const std::string junk(size - 4096, '\x5a');
            f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
        }
        check_refuses(d, 1, {"the store " + d.db_path().string(), "restore a backup"});
    }
}

TEST_CASE("signetd notifies systemd when it serves and when it stops",
          "[daemon][integration][lifecycle]") {
    test::SignetDaemon d;
    const NotifySocket notify(d.var_dir() / "notify.sock");
    REQUIRE(::setenv("NOTIFY_SOCKET", (d.var_dir() / "notify.sock").c_str(), 1) == 0);
    d.start(/*wait_ready=*/false);
    CHECK(notify.next() == "READY=1");
    // READY=1 follows the listening socket: the API answers at once.
    CHECK(ApiClient(d).get("/v1/health/live").status == 200);
    REQUIRE(d.stop().exited_with(0));
    CHECK(notify.next() == "STOPPING=1");
    ::unsetenv("NOTIFY_SOCKET");
}

TEST_CASE("plain HTTP on loopback serves the same API", "[daemon][integration][lifecycle]") {
    test::ProvisionedDaemon p({.flags = {"--plain-http"}});
    CHECK(p.daemon.url().rfind("http://127.0.0.1:", 0) == 0);
    CHECK(p.daemon.fingerprint().empty());
    ApiClient admin = p.api(p.admin);
    ApiClient signer = p.api(p.signer);
    const auto key = test::create_key(admin, "ed25519", "plain");
    const signet::Bytes msg{'h', 'i'};
    const auto s = test::sign(signer, test::str(key, "id"), {{"message", signet::hex_encode(msg)}});
    CHECK(test::openssl_cli_verify(signet::pkcs11::Algorithm::ed25519,
                                   test::str(key.at("public_key").as_object(), "pem"), msg,
                                   test::unhex(test::str(s, "signature"))));
}

TEST_CASE("signing is refused with 503 not_ready until the HSM self-test has passed",
          "[daemon][integration][lifecycle]") {
    // On the first start the self-test generates its keys (seconds); later starts reuse them.
    test::SignetDaemon d;
    d.start(/*wait_ready=*/false);
    ApiClient admin(d, test::complete_setup(d).token);
    ApiClient signer(d, test::create_client(admin, "early-signer", "signer").token);
    ApiClient anon(d);
    const std::string key_id = test::str(test::create_key(admin, "ecdsa-p256", "early"), "id");
    const std::string reserved_id = test::str(
        test::create_key(admin, "ecdsa-p256", "early-reserved", {{"nonces", "reserved"}}), "id");
    const ApiReply ready = anon.get("/v1/health/ready");
    const json::object body{{"digest", test::sha256_hex("early")}};
    const ApiReply early = signer.post("/v1/keys/" + key_id + "/sign", body);
    const ApiReply early_nonce = signer.post("/v1/keys/" + reserved_id + "/nonces", json::object{});
    const ApiReply still = anon.get("/v1/health/ready");
    if (still.status == 200) {
        WARN("the self-test finished before the requests; nothing was proven this time");
    } else {
        test::check_api_error(ready, 503, "not_ready");
        CHECK(contains(ready.error_message(), "self-test"));
        test::check_api_error(early, 503, "not_ready");
        test::check_api_error(early_nonce, 503, "not_ready");
        CHECK(early.headers.count("Retry-After") == 1);
    }
    REQUIRE(d.wait_ready(30s));
    test::sign(signer, key_id, body);
    const ApiReply c = signer.get("/v1/keys/" + reserved_id + "/counter");
    REQUIRE(c.status == 200);
    // A refused reservation allocated nothing; one the finished self-test let through holds its
    // value.
    INFO(early_nonce.describe());
    const std::uint64_t reserved =
        early_nonce.status == 201 ? test::u64(early_nonce.object(), "nonce") : 0;
    CHECK(test::u64(c.object(), "last_issued") == reserved);
}
