// pkcs11 on SoftHSM: loading modules, finding tokens, logging in, and surviving fork().
#include "signet/pkcs11/module.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <string>

#include "signet/pkcs11/key_store.hpp"
#include "signet/pkcs11/token.hpp"
#include "signet_test/independent_verify.hpp"
#include "signet_test/keys.hpp"
#include "signet_test/result_matchers.hpp"
#include "signet_test/temp_dir.hpp"
#include "signet_test/test_hsm.hpp"

namespace p11 = signet::pkcs11;
namespace test = signet::test;
using signet::Bytes;
using signet::Errc;

TEST_CASE("loading a module path that does not exist fails with not_found naming the path",
          "[pkcs11][integration]") {
    const std::string path = "/nonexistent/signet/libnot-there.so";
    const auto r = p11::Module::load(path);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().is(Errc::not_found));
    CHECK_THAT(r.error().message(), Catch::Contains("'" + path + "' does not exist"));
}

TEST_CASE("loading a file that is not a PKCS#11 module fails with unsupported",
          "[pkcs11][integration]") {
    const test::TempDir dir;
    for (const char* content : {"this is not a shared library\n", ""}) {
        const auto path =
            dir.write_file("libfake-pkcs11.so", content, std::filesystem::perms::owner_all);
        const auto r = p11::Module::load(path);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().is(Errc::unsupported));
        CHECK_THAT(r.error().message(), Catch::Contains(path.string()));
    }
}

TEST_CASE("a module is loaded once per path and lists both test tokens with trimmed labels",
          "[pkcs11][integration]") {
    const auto module = test::test_hsm().module();
    const auto again = p11::Module::load(test::test_hsm().module_path());
    REQUIRE_OK(again);
    CHECK(again->get() == module.get());
    CHECK(module->generation() == 1);

    const auto tokens = module->tokens();
    REQUIRE_OK(tokens);
    std::vector<std::string> labels;
    for (const auto& t : *tokens) {
        // SoftHSM also lists one empty, uninitialised slot for the next token.
        if (!(t.flags & CKF_TOKEN_INITIALIZED)) continue;
        labels.push_back(t.label);
        CHECK(t.manufacturer == "SoftHSM project");
        REQUIRE_FALSE(t.serial.empty());
        CHECK(t.serial.back() != ' ');
        CHECK(t.label.back() != ' ');
    }
    CHECK(std::count(labels.begin(), labels.end(), test::kTokenA) == 1);
    CHECK(std::count(labels.begin(), labels.end(), test::kTokenB) == 1);

    const auto a = module->find_slot({test::kTokenA, ""});
    const auto b = module->find_slot({test::kTokenB, ""});
    REQUIRE_OK(a);
    REQUIRE_OK(b);
    CHECK(*a != *b);
    const auto empty = module->find_slot({});
    REQUIRE_FALSE(empty.has_value());
    CHECK(empty.error().is(Errc::invalid_argument));
}

TEST_CASE("opening an unknown token label fails with not_found naming the label",
          "[pkcs11][integration]") {
    const auto r = p11::Token::open(test::test_hsm().module(), {"no-such-token", ""},
                                    test::test_hsm().user_pin());
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().is(Errc::not_found));
    CHECK_THAT(r.error().message(),
               Catch::Contains("no initialised token with label 'no-such-token'"));
    CHECK_THAT(r.error().message(), Catch::Contains(test::test_hsm().module_path()));
}

TEST_CASE("a wrong PIN is refused with CKR_PIN_INCORRECT and names the token",
          "[pkcs11][integration]") {
    const auto r = p11::Token::open(test::test_hsm().module(), {test::kTokenA, ""},
                                    signet::SecretBuffer::copy_of("not-the-pin"));
    REQUIRE_FALSE(r.has_value());
    CHECK(p11::ckr_of(r.error()) == CKR_PIN_INCORRECT);
    CHECK_THAT(r.error().message(), Catch::Contains("C_Login(user, token label 'signet-a')"));
    CHECK_THAT(r.error().message(), Catch::Contains("CKR_PIN_INCORRECT"));
    CHECK_THAT(r.error().message(), Catch::StartsWith("open token label 'signet-a'"));

    const auto empty =
        p11::Token::open(test::test_hsm().module(), {test::kTokenA, ""}, signet::SecretBuffer());
    REQUIRE_FALSE(empty.has_value());
    CHECK(empty.error().is(Errc::invalid_argument));
    CHECK_THAT(empty.error().message(), Catch::Contains("empty PIN"));

    // The right PIN still works: the failures did not lock the token.
    const auto good = p11::Token::open(test::test_hsm().module(), {test::kTokenA, ""},
                                       test::test_hsm().user_pin());
    REQUIRE_OK(good);
    CHECK((*good)->logins() == 1);
}

TEST_CASE("a label shared by two tokens needs the serial to pick one", "[pkcs11][integration]") {
    test::test_hsm().init_token("twin");
    test::test_hsm().init_token("twin");
    const auto module = test::test_hsm().module();
    const auto ambiguous = module->find_slot({"twin", ""});
    REQUIRE_FALSE(ambiguous.has_value());
    CHECK(ambiguous.error().is(Errc::invalid_argument));
    CHECK_THAT(ambiguous.error().message(),
               Catch::Contains("2 tokens match label 'twin'; add the serial"));

    const auto tokens = module->tokens();
    REQUIRE_OK(tokens);
    std::vector<p11::TokenDescription> twins;
    std::copy_if(tokens->begin(), tokens->end(), std::back_inserter(twins),
                 [](const auto& t) { return t.label == "twin"; });
    REQUIRE(twins.size() == 2);
    const auto by_serial = module->find_slot({"twin", twins[1].serial});
    REQUIRE_OK(by_serial);
    CHECK(*by_serial == twins[1].slot);
    const auto token = p11::Token::open(module, {"", twins[0].serial}, test::test_hsm().user_pin());
    REQUIRE_OK(token);
}

TEST_CASE("the token RNG returns the requested number of fresh bytes", "[pkcs11][integration]") {
    const auto token = test::test_hsm().open_token(test::kTokenA);
    const auto a = token->random(32);
    const auto b = token->random(32);
    REQUIRE_OK(a);
    REQUIRE_OK(b);
    CHECK(a->size() == 32);
    CHECK(*a != *b);
    const auto none = token->random(0);
    REQUIRE_OK(none);
    CHECK(none->empty());
}

namespace {

// Runs in the fork child: signs once and says what happened ("ok" or why not).
std::string sign_in_child(p11::KeyStore& keys, const p11::KeyInfo& key, std::uint64_t generation,
                          std::uint64_t logins) {
    const Bytes msg = signet::to_bytes("signed by the child");
    const p11::SignRequest req{msg, p11::Input::message};
    const auto sig = keys.sign(key.id, req);
    if (!sig) return "child sign failed: " + sig.error().message();
    if (!test::evp_verify(key.algorithm, key.spki_der, sig->digest, sig->bytes)) {
        return "child signature does not verify";
    }
    if (keys.token().module().generation() <= generation) return "module was not re-initialised";
    if (keys.token().logins() <= logins) return "child did not log in again";
    return "ok";
}

}  // namespace

TEST_CASE(
    "a child process signs after fork with a re-initialised module and the parent still "
    "signs",
    "[pkcs11][integration]") {
    const auto keys = test::test_hsm().key_store(test::kTokenA);
    const auto key = test::generate_key(*keys, p11::Algorithm::ecdsa_p256);
    const Bytes msg = signet::to_bytes("signed by the parent");
    const p11::SignRequest req{msg, p11::Input::message};
    REQUIRE_OK(keys->sign(key.id, req));  // the parent now has sessions, a login, cached handles
    const std::uint64_t generation = keys->token().module().generation();
    const std::uint64_t logins = keys->token().logins();

    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        // Child: no Catch assertions; report through the pipe and leave with _exit so nothing the
        // parent owns (the test HSM directory, Catch's reporters) is torn down here.
        ::close(fds[0]);
        const std::string report = sign_in_child(*keys, key, generation, logins);
        const ssize_t n = ::write(fds[1], report.data(), report.size());
        ::_exit(n == static_cast<ssize_t>(report.size()) && report == "ok" ? 0 : 1);
    }
    ::close(fds[1]);
    std::string report;
    char buf[256];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) {
        report.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fds[0]);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    INFO("child: " << report);
    CHECK(report == "ok");
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);

    const auto after = keys->sign(key.id, req);
    REQUIRE_OK(after);
    CHECK(test::evp_verify(key.algorithm, key.spki_der, after->digest, after->bytes));
    CHECK(keys->token().module().generation() == generation);
    CHECK(keys->token().logins() == logins);
}
