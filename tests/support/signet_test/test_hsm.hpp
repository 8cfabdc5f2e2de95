// A hermetic SoftHSM for one test process: a temporary token directory and softhsm2.conf
// (SOFTHSM2_CONF is set before any module is loaded), tokens initialised with softhsm2-util and
// random PINs. Everything is removed when the process exits.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "signet/core/secret_buffer.hpp"
#include "signet/pkcs11/key_store.hpp"
#include "signet/pkcs11/module.hpp"
#include "signet/pkcs11/token.hpp"

namespace signet::test {

inline constexpr const char* kTokenA = "signet-a";
inline constexpr const char* kTokenB = "signet-b";

class TestHsm {
public:
    // Creates the directory, the configuration and tokens kTokenA and kTokenB.
    TestHsm();
    ~TestHsm();
    TestHsm(const TestHsm&) = delete;
    TestHsm& operator=(const TestHsm&) = delete;

    [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }
    [[nodiscard]] std::string module_path() const;  // SoftHSM's library
    [[nodiscard]] SecretBuffer user_pin() const { return SecretBuffer::copy_of(user_pin_); }
    [[nodiscard]] SecretBuffer so_pin() const { return SecretBuffer::copy_of(so_pin_); }
    [[nodiscard]] const std::string& user_pin_text() const { return user_pin_; }
    [[nodiscard]] const std::string& so_pin_text() const { return so_pin_; }

    // Initialises one more token with the same PINs.
    void init_token(const std::string& label) const;

    // Loads the module (once per process) and opens a logged-in token; throws on failure.
    [[nodiscard]] std::shared_ptr<pkcs11::Module> module() const;
    [[nodiscard]] std::shared_ptr<pkcs11::Token> open_token(const std::string& label,
                                                            pkcs11::TokenOptions opts = {}) const;
    [[nodiscard]] std::shared_ptr<pkcs11::KeyStore> key_store(const std::string& label) const;

private:
    std::filesystem::path dir_;
    std::string user_pin_;
    std::string so_pin_;
};

// The process-wide instance, created on first use.
TestHsm& test_hsm();

// Runs a command through /bin/sh and returns its exit status and combined output.
struct CommandResult {
    int status = -1;
    std::string output;
};
CommandResult run_command(const std::string& cmd);

// A fresh private temporary directory under the test HSM directory.
std::filesystem::path make_temp_dir(const std::string& prefix);

}  // namespace signet::test
