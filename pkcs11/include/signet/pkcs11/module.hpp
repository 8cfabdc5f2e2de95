// A loaded PKCS#11 module: dlopen'ed once per path per process, C_Initialize'd with
// CKF_OS_LOCKING_OK, C_Finalize'd once when the last user drops it. After fork() the child
// re-initialises Cryptoki on first use (PKCS#11 §6.7.7); generation() tells holders of sessions
// that everything they had is gone.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "signet/core/logger.hpp"
#include "signet/core/result.hpp"
#include "signet/pkcs11/cryptoki.hpp"

namespace signet::pkcs11 {

// Which token to use. Tokens are found by label and/or serial, never by slot id: slot ids change
// when tokens are added or removed.
struct TokenSelector {
    std::string label;   // empty: any label
    std::string serial;  // empty: any serial

    [[nodiscard]] std::string describe() const;  // "label 'x'" / "serial 'y'" for messages
};

struct TokenDescription {
    CK_SLOT_ID slot = 0;
    std::string label;
    std::string serial;
    std::string model;
    std::string manufacturer;
    CK_FLAGS flags = 0;
};

class Module {
public:
    // Loads (or returns the already loaded) module at `path`. Errors: not_found when the file does
    // not exist, unsupported when it is not a PKCS#11 module, pkcs11 codes from C_Initialize.
    [[nodiscard]] static Result<std::shared_ptr<Module>> load(const std::filesystem::path& path,
                                                              std::shared_ptr<Logger> logger = {});

    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;
    ~Module();

    // The function list, after re-initialising Cryptoki if this process is a fork child of the one
    // that initialised it.
    [[nodiscard]] Result<CK_FUNCTION_LIST*> functions();

    // Increments every time Cryptoki is (re-)initialised in a new process; sessions, logins and
    // object handles from an older generation are invalid.
    [[nodiscard]] std::uint64_t generation() const noexcept { return generation_.load(); }

    // Tokens present now, with trimmed label/serial.
    [[nodiscard]] Result<std::vector<TokenDescription>> tokens();

    // The slot holding the one token that matches `sel`. not_found when none does; invalid_argument
    // when several do (give the serial too).
    [[nodiscard]] Result<CK_SLOT_ID> find_slot(const TokenSelector& sel);

    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
    [[nodiscard]] Logger& logger() const noexcept { return *logger_; }

private:
    struct DlClose {
        void operator()(void* h) const noexcept;
    };
    Module(std::filesystem::path path, std::unique_ptr<void, DlClose> lib, CK_FUNCTION_LIST* fns,
           std::shared_ptr<Logger> logger);
    Result<void> initialize();

    std::filesystem::path path_;
    std::unique_ptr<void, DlClose> lib_;
    CK_FUNCTION_LIST* fns_;
    std::shared_ptr<Logger> logger_;
    std::mutex init_mu_;  // serialises (re-)initialisation
    std::atomic<long> init_fork_{
        -1};  // fork count when Cryptoki was last initialised here; written under init_mu_
    bool owns_init_ =
        false;  // we called C_Initialize successfully (so we finalize); guarded by init_mu_
    std::atomic<std::uint64_t> generation_{0};
};

}  // namespace signet::pkcs11
