#include "signet_test/fault_control.hpp"

#include <dlfcn.h>

#include <stdexcept>

#include "signet_test/test_hsm.hpp"

namespace signet::test {
namespace {

template <class Fn>
Fn resolve(void* lib, const char* name) {
    void* sym = ::dlsym(lib, name);
    if (!sym) throw std::runtime_error(std::string("fault module has no ") + name);
    return reinterpret_cast<Fn>(sym);
}

}  // namespace

void FaultControl::DlClose::operator()(void* lib) const noexcept { ::dlclose(lib); }

FaultControl::FaultControl(const std::string& module_path)
    : lib_(::dlopen(module_path.c_str(), RTLD_NOW | RTLD_NOLOAD)) {
    if (!lib_) throw std::runtime_error("fault module '" + module_path + "' is not loaded");
    arm_ = resolve<decltype(arm_)>(lib_.get(), "signet_fault_arm");
    clear_ = resolve<decltype(clear_)>(lib_.get(), "signet_fault_clear");
    injected_ = resolve<decltype(injected_)>(lib_.get(), "signet_fault_injected");
}

FaultControl::~FaultControl() { clear_(); }

void FaultControl::arm(const char* function, CK_RV rv, unsigned long skip,
                       unsigned long count) const {
    arm_(function, rv, skip, count);
}

void FaultControl::clear() const { clear_(); }

unsigned long FaultControl::injected(const char* function) const { return injected_(function); }

std::shared_ptr<pkcs11::Token> open_fault_token(const std::string& module_path,
                                                const std::string& label,
                                                pkcs11::TokenOptions options) {
    TestHsm& hsm = test_hsm();  // sets SOFTHSM2_CONF before SoftHSM is loaded behind the wrapper
    auto module = pkcs11::Module::load(module_path).value();
    return pkcs11::Token::open(std::move(module), {label, ""}, hsm.user_pin(), options).value();
}

}  // namespace signet::test
