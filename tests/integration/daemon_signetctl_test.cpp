// The signetctl command line as an operator uses it against the real signetd: first-run setup
// with the setup-token file, the admin and signer workflows (clients, keys, signing with nonces,
// counters, disable, destroy, revoke, audit), and the failure paths an operator must be able to
// read: a wrong token, a wrong certificate pin, a missing token file, an unknown command.
#include <catch2/catch.hpp>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "signet_test/daemon_api.hpp"
#include "signet_test/daemon_harness.hpp"
#include "signet_test/temp_dir.hpp"

namespace test = signet::test;
namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

constexpr auto kOwnerOnly = fs::perms::owner_read | fs::perms::owner_write;

// Runs signetctl against `d` (URL and pinned certificate), authenticated by `token_file` unless
// it is empty.
test::ProcessOutcome ctl(const test::SignetDaemon& d, const fs::path& token_file,
                         std::vector<std::string> args, const std::string& fingerprint = {}) {
    std::vector<std::string> argv{"--url", d.url(), "--fingerprint",
                                  fingerprint.empty() ? d.fingerprint() : fingerprint};
    if (!token_file.empty()) argv.insert(argv.end(), {"--token-file", token_file.string()});
    argv.insert(argv.end(), args.begin(), args.end());
    return test::run_signetctl(argv);
}

// A refusal (exit 1) and a usage error (exit 2).
void check_fails(const test::ProcessOutcome& out, const std::vector<std::string>& needles) {
    test::check_exit(out, 1, needles);
}
void check_usage_error(const test::ProcessOutcome& out, const std::vector<std::string>& needles) {
    test::check_exit(out, 2, needles);
}

std::string read_text(const fs::path& p) {
    std::ifstream in(p);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("an operator sets up the appliance and runs its whole key lifecycle with signetctl",
          "[daemon][integration][signetctl]") {
    test::SignetDaemon d;
    d.start();
    const test::TempDir dir("signet-ctl");
    const fs::path setup_file = d.data_dir() / "setup-token";
    REQUIRE(fs::exists(setup_file));
    const std::string setup_token = read_text(setup_file);
    // A stale, world-readable file where the admin token goes must not leak the new token.
    const fs::path admin =
        dir.write_file("admin-token", "stale\n",
                       fs::perms::owner_read | fs::perms::owner_write | fs::perms::others_read);

    const auto setup = ctl(d, {},
                           {"setup", "--setup-token-file", setup_file.string(), "--name", "admin",
                            "--save-token", admin.string()});
    const json::object admin_client = test::ok_json(setup);
    CHECK(test::str(admin_client, "role") == "admin");
    CHECK((fs::status(admin).permissions() & fs::perms::all) == kOwnerOnly);
    CHECK(read_text(admin).rfind("stale", 0) == std::string::npos);

    // Setup runs once: signetd deleted the token file, and the token itself is refused.
    check_fails(ctl(d, {}, {"setup", "--setup-token-file", setup_file.string(), "--name", "a2"}),
                {setup_file.string(), "already set up"});
    check_fails(ctl(d, {},
                    {"setup", "--setup-token", setup_token.substr(0, setup_token.find('\n')),
                     "--name", "admin2"}),
                {"conflict", "setup is already complete", "HTTP 409"});

    // clients create prints the new client and its token once.
    const json::object created =
        test::ok_json(ctl(d, admin, {"clients", "create", "--name", "app", "--role", "signer"}));
    const std::string signer_id = test::str(created.at("client").as_object(), "id");
    const fs::path signer =
        dir.write_file("signer-token", test::str(created, "token") + "\n", kOwnerOnly);
    CHECK(test::contains(ctl(d, admin, {"clients", "list"}).out, "\"" + signer_id + "\""));

    const json::object key =
        test::ok_json(ctl(d, admin,
                          {"keys", "create", "--algorithm", "ecdsa-p256", "--label", "x",
                           "--nonces", "envelope", "--client", signer_id}));
    const std::string key_id = test::str(key, "id");
    CHECK(test::contains(ctl(d, admin, {"keys", "list"}).out, "\"" + key_id + "\""));
    const json::object shown = test::ok_json(ctl(d, admin, {"keys", "show", key_id}));
    CHECK(test::contains(test::str(shown.at("public_key").as_object(), "pem"),
                         "-----BEGIN PUBLIC KEY-----"));

    for (const std::uint64_t nonce : {1u, 2u}) {
        const json::object sig =
            test::ok_json(ctl(d, signer, {"sign", key_id, "--message", "hello", "--nonce"}));
        CHECK_FALSE(test::str(sig, "signature").empty());
        CHECK(test::u64(sig, "nonce") == nonce);
    }
    CHECK(test::u64(test::ok_json(ctl(d, admin, {"counters", "show", key_id})), "last_issued") ==
          2);

    test::ok_json(ctl(d, admin, {"keys", "disable", key_id}));
    check_fails(ctl(d, signer, {"sign", key_id, "--message", "hello", "--nonce"}),
                {"key_disabled", key_id});

    const json::object destroyed = test::ok_json(ctl(d, admin, {"keys", "destroy", key_id}));
    CHECK(test::str(destroyed, "id") == key_id);
    CHECK(test::str(destroyed, "state") == "destroyed");
    check_fails(ctl(d, admin, {"keys", "show", key_id}), {"not_found", "HTTP 404", key_id});

    test::ok_json(ctl(d, admin, {"clients", "revoke", signer_id}));
    check_fails(ctl(d, signer, {"sign", key_id, "--message", "hello"}),
                {"unauthenticated", "HTTP 401"});

    const auto tail = ctl(d, admin, {"audit", "tail"});
    for (const char* action : {"setup.complete", "client.create", "key.create", "sign.nonce",
                               "key.disable", "key.destroy", "client.revoke"})
        CHECK(test::contains(tail.out, std::string("\"action\":\"") + action + "\""));
    CHECK(test::ok_json(ctl(d, admin, {"audit", "verify"})).at("ok").as_bool());
}

TEST_CASE("signetctl refuses clearly: a lost token, a bad token, a wrong pin, an unknown command",
          "[daemon][integration][signetctl]") {
    test::SignetDaemon d;
    d.start();
    const test::TempDir dir("signet-ctl");

    // The admin token is shown once: when it cannot be saved it is printed, never lost.
    const fs::path unsaved = dir.path() / "no-such-dir" / "admin-token";
    const auto setup = ctl(d, {},
                           {"setup", "--setup-token-file", (d.data_dir() / "setup-token").string(),
                            "--name", "admin", "--save-token", unsaved.string()});
    INFO(setup.status.describe() << "\nstdout: " << setup.out << "\nstderr: " << setup.err);
    CHECK(setup.status.exited_with(1));
    CHECK(test::contains(setup.err, unsaved.string()));
    const json::value printed = json::parse(setup.out);
    const fs::path admin =
        dir.write_file("admin-token", test::str(printed.as_object(), "token") + "\n", kOwnerOnly);
    CHECK(ctl(d, admin, {"keys", "list"}).status.exited_with(0));

    const fs::path wrong = dir.write_file("wrong-token", "sgt_not-a-real-token\n", kOwnerOnly);
    check_fails(ctl(d, wrong, {"keys", "list"}), {"unauthenticated", "HTTP 401"});

    // Both fingerprints are shown as signetd prints them, for an operator to compare by eye.
    std::string bad_pin = "aa";
    for (int i = 1; i < 32; ++i) bad_pin += ":aa";
    check_fails(ctl(d, admin, {"keys", "list"}, bad_pin),
                {"pin mismatch", "expected " + bad_pin, "got " + d.fingerprint()});

    const fs::path missing = dir.path() / "missing-token";
    check_fails(ctl(d, missing, {"keys", "list"}), {missing.string(), "No such file"});

    check_usage_error(ctl(d, admin, {"frobnicate"}),
                      {"unknown command 'frobnicate'", "usage: signetctl"});
    check_usage_error(test::run_signetctl({"--url", "https://127.0.0.1:8x43", "health"}),
                      {"'8x43'"});
    // A misspelt or misplaced option is refused before anything is sent, never ignored.
    const std::string key_id =
        test::str(test::ok_json(ctl(
                      d, admin, {"keys", "create", "--algorithm", "ecdsa-p256", "--label", "k"})),
                  "id");
    check_usage_error(ctl(d, admin, {"sign", key_id, "--message", "hi", "--nonces", "1"}),
                      {"unknown option --nonces for 'sign'"});
    check_usage_error(ctl(d, admin, {"keys", "list", "--fingerprnt", "AB"}),
                      {"unknown option --fingerprnt for 'keys list'"});
    check_usage_error(ctl(d, admin, {"sign", key_id, "--digest", "--nonce"}),
                      {"option --digest needs a value"});
    const json::object counter = test::ok_json(ctl(d, admin, {"counters", "show", key_id}));
    CHECK(test::u64(counter, "last_issued") == 0);
}
