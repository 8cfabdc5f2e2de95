// Drives tests/support/fault_module.cpp from a test: the module must already be loaded in this
// process (pkcs11::Module::load(kFaultModulePath)); its control functions are then found with
// dlopen(RTLD_NOLOAD) + dlsym, so the test arms faults in the very instance Signet talks to.
#pragma once

#include <memory>
#include <string>

#include "signet/pkcs11/cryptoki.hpp"
#include "signet/pkcs11/token.hpp"

namespace signet::test {

#ifdef SIGNET_FAULT_MODULE_PATH
inline constexpr const char* kFaultModulePath = SIGNET_FAULT_MODULE_PATH;
#endif

class FaultControl {
public:
    // Throws std::runtime_error when the module at `module_path` is not loaded or lacks a control.
    explicit FaultControl(const std::string& module_path);
    ~FaultControl();  // disarms every fault
    FaultControl(const FaultControl&) = delete;
    FaultControl& operator=(const FaultControl&) = delete;

    // The next `count` calls of `function` after `skip` good ones return `rv`.
    void arm(const char* function, CK_RV rv, unsigned long skip = 0, unsigned long count = 1) const;
    void clear() const;
    // Failures injected into `function` since it was last armed.
    [[nodiscard]] unsigned long injected(const char* function) const;

private:
    struct DlClose {
        void operator()(void* lib) const noexcept;
    };
    std::unique_ptr<void, DlClose> lib_;  // an RTLD_NOLOAD reference to the loaded module
    void (*arm_)(const char*, CK_RV, unsigned long, unsigned long) = nullptr;
    void (*clear_)() = nullptr;
    unsigned long (*injected_)(const char*) = nullptr;
};

// Opens token `label` of the test HSM through the fault module at `module_path`.
[[nodiscard]] std::shared_ptr<pkcs11::Token> open_fault_token(const std::string& module_path,
                                                              const std::string& label,
                                                              pkcs11::TokenOptions options = {});

}  // namespace signet::test
