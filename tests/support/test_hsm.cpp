#include "signet_test/test_hsm.hpp"

#include <dlfcn.h>
#include <openssl/rand.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

#include "signet/core/bytes.hpp"

// Sanitizer defaults for every test binary that uses the in-process SoftHSM (this object file is
// linked only into those; ASAN_OPTIONS / LSAN_OPTIONS in the environment still override them).
//
// SoftHSM 2.6.1 leaks two small OpenSSL ASN.1 objects each time it decodes an Ed25519 key (C_Sign,
// C_WrapKey; measured). That is third-party code, so leaks with a SoftHSM frame are suppressed;
// Signet's own leaks still fail the test. Two things make the SoftHSM frame visible: TestHsm keeps
// SoftHSM mapped (RTLD_NODELETE) so it is not an "<unknown module>" at exit, and malloc stacks are
// unwound with DWARF, because the fast frame-pointer unwinder stops inside libcrypto (built without
// frame pointers) before reaching the caller. The precise suppression costs speed (about 4x on the
// secp256k1 test); a broad one on libcrypto frames would also hide Signet's own OpenSSL leaks.
extern "C" const char* __asan_default_options();
extern "C" const char* __asan_default_options() { return "fast_unwind_on_malloc=0"; }
extern "C" const char* __lsan_default_suppressions();
extern "C" const char* __lsan_default_suppressions() { return "leak:libsofthsm2.so\n"; }

namespace signet::test {
namespace {

std::string random_pin() {
    std::array<unsigned char, 12> b{};
    if (RAND_bytes(b.data(), static_cast<int>(b.size())) != 1)
        throw std::runtime_error("RAND_bytes");
    return hex_encode(b);
}

}  // namespace

CommandResult run_command(const std::string& cmd) {
    CommandResult r;
    const std::string full = cmd + " 2>&1";
    FILE* p = ::popen(full.c_str(), "r");
    if (!p) return r;
    std::array<char, 4096> buf{};
    std::size_t n = 0;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
    const int st = ::pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

TestHsm::TestHsm() : user_pin_(random_pin()), so_pin_(random_pin()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/signet-test-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
    dir_ = tmpl;
    std::filesystem::create_directories(dir_ / "tokens");
    {
        std::ofstream conf(dir_ / "softhsm2.conf");
        conf << "directories.tokendir = " << (dir_ / "tokens").string() << "\n"
             << "objectstore.backend = file\n"
             << "log.level = ERROR\n"
             << "slots.removable = false\n";
    }
    ::setenv("SOFTHSM2_CONF", (dir_ / "softhsm2.conf").c_str(), 1);
    // Keep SoftHSM mapped for the whole process (the handle is deliberately never closed), so
    // LeakSanitizer can attribute SoftHSM's own leaks at exit (see __lsan_default_suppressions).
    (void)::dlopen(module_path().c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    init_token(kTokenA);
    init_token(kTokenB);
}

TestHsm::~TestHsm() {
    std::error_code ec;
    if (!std::getenv("SIGNET_KEEP_TEST_DIRS")) std::filesystem::remove_all(dir_, ec);
}

std::string TestHsm::module_path() const {
    const char* env = std::getenv("SIGNET_TEST_PKCS11_MODULE");
    return env && *env ? env : "/usr/lib/softhsm/libsofthsm2.so";
}

void TestHsm::init_token(const std::string& label) const {
    const auto r = run_command("softhsm2-util --init-token --free --label '" + label +
                               "' --so-pin " + so_pin_ + " --pin " + user_pin_);
    if (r.status != 0) throw std::runtime_error("softhsm2-util --init-token failed: " + r.output);
}

std::shared_ptr<pkcs11::Module> TestHsm::module() const {
    return pkcs11::Module::load(module_path()).value();
}

std::shared_ptr<pkcs11::Token> TestHsm::open_token(const std::string& label,
                                                   pkcs11::TokenOptions opts) const {
    return pkcs11::Token::open(module(), {label, ""}, user_pin(), opts).value();
}

std::shared_ptr<pkcs11::KeyStore> TestHsm::key_store(const std::string& label) const {
    return std::make_shared<pkcs11::KeyStore>(open_token(label));
}

TestHsm& test_hsm() {
    static TestHsm instance;
    return instance;
}

std::filesystem::path make_temp_dir(const std::string& prefix) {
    std::string tmpl = (test_hsm().dir() / (prefix + "-XXXXXX")).string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
    return tmpl;
}

}  // namespace signet::test
