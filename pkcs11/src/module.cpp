#include "signet/pkcs11/module.hpp"

#include <dlfcn.h>
#include <pthread.h>

#include <map>
#include <optional>
#include <system_error>

#include "signet/pkcs11/error.hpp"

namespace signet::pkcs11 {
namespace {

// Bumped in every fork child; a module initialised under another value must re-initialise.
std::atomic<std::uint64_t> g_fork_count{0};
void on_fork_child() noexcept { g_fork_count.fetch_add(1, std::memory_order_relaxed); }
std::once_flag g_atfork_once;

std::mutex g_registry_mu;
std::map<std::string, std::weak_ptr<Module>>& registry() {  // guarded by g_registry_mu
    static std::map<std::string, std::weak_ptr<Module>> r;
    return r;
}

std::string trim_padded(const unsigned char* p, std::size_t n) {
    std::size_t end = n;
    while (end > 0 && (p[end - 1] == ' ' || p[end - 1] == '\0')) --end;
    return std::string(reinterpret_cast<const char*>(p), end);
}

CK_C_INITIALIZE_ARGS initialize_args() {
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;  // the module must be thread-safe; we pass no mutex callbacks
    return args;
}

}  // namespace

std::string TokenSelector::describe() const {
    if (!label.empty() && !serial.empty()) return "label '" + label + "' serial '" + serial + "'";
    if (!serial.empty()) return "serial '" + serial + "'";
    return "label '" + label + "'";
}

void Module::DlClose::operator()(void* h) const noexcept {
    if (h) ::dlclose(h);
}

Module::Module(std::filesystem::path path, std::unique_ptr<void, DlClose> lib,
               CK_FUNCTION_LIST* fns, std::shared_ptr<Logger> logger)
    : path_(std::move(path)), lib_(std::move(lib)), fns_(fns), logger_(std::move(logger)) {}

Result<std::shared_ptr<Module>> Module::load(const std::filesystem::path& path,
                                             std::shared_ptr<Logger> logger) {
    std::call_once(g_atfork_once, [] { ::pthread_atfork(nullptr, nullptr, on_fork_child); });
    if (!logger) logger = null_logger();

    std::error_code fs_ec;
    if (!std::filesystem::exists(path, fs_ec)) {
        return make_error(Errc::not_found, "PKCS#11 module '" + path.string() +
                                               "' does not exist (check hsm.module in the config)");
    }
    const std::string key = std::filesystem::weakly_canonical(path, fs_ec).string();

    const std::lock_guard lock(g_registry_mu);
    if (auto existing = registry()[key].lock()) return existing;

    // RTLD_NODELETE: a PKCS#11 module may own threads and atexit handlers; it stays mapped for the
    // process's life (and LeakSanitizer can name its frames at exit).
    std::unique_ptr<void, DlClose> lib(
        ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE));
    if (!lib) {
        const char* why = ::dlerror();
        return make_error(Errc::unsupported, "dlopen PKCS#11 module '" + path.string() +
                                                 "': " + (why ? why : "unknown error"));
    }
    auto get_list = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(lib.get(), "C_GetFunctionList"));
    if (!get_list) {
        return make_error(Errc::unsupported,
                          "'" + path.string() + "' is not a PKCS#11 module (no C_GetFunctionList)");
    }
    CK_FUNCTION_LIST* fns = nullptr;
    if (const CK_RV rv = get_list(&fns); rv != CKR_OK || !fns) {
        return ck_error(rv, "C_GetFunctionList('" + path.string() + "')");
    }
    std::shared_ptr<Module> m(new Module(path, std::move(lib), fns, std::move(logger)));
    if (auto r = m->initialize(); !r) return r.error();
    registry()[key] = m;
    return m;
}

Result<void> Module::initialize() {
    CK_C_INITIALIZE_ARGS args = initialize_args();
    CK_RV rv = fns_->C_Initialize(&args);
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        // Another library in this process (libp11 for the TLS identity) initialised the same
        // module first. Share it and leave finalisation to that owner.
        logger_->log(LogLevel::info, "pkcs11", "module_shared_initialisation",
                     {{"module", path_.string()}});
        rv = CKR_OK;
    } else if (rv == CKR_OK) {
        owns_init_ = true;
    }
    if (rv != CKR_OK) return ck_error(rv, "C_Initialize('" + path_.string() + "')");
    init_fork_.store(static_cast<long>(g_fork_count.load()));
    ++generation_;
    return ok();
}

Result<CK_FUNCTION_LIST*> Module::functions() {
    const auto forks = static_cast<long>(g_fork_count.load(std::memory_order_relaxed));
    if (forks == init_fork_.load(std::memory_order_acquire)) return fns_;

    const std::lock_guard lock(init_mu_);
    if (forks != init_fork_.load()) {
        // Fork child: the parent's Cryptoki state is meaningless here (PKCS#11 v2.40 §6.7.7).
        // Modules that copied their "initialised" flag answer ALREADY_INITIALIZED: finalize first.
        CK_C_INITIALIZE_ARGS args = initialize_args();
        CK_RV rv = fns_->C_Initialize(&args);
        if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
            (void)fns_->C_Finalize(nullptr);
            rv = fns_->C_Initialize(&args);
        }
        if (rv != CKR_OK) {
            return ck_error(rv, "C_Initialize('" + path_.string() + "') after fork");
        }
        owns_init_ = true;
        init_fork_.store(forks, std::memory_order_release);
        ++generation_;
        logger_->log(LogLevel::info, "pkcs11", "module_reinitialised_after_fork",
                     {{"module", path_.string()}});
    }
    return fns_;
}

Module::~Module() {
    const auto forks = static_cast<long>(g_fork_count.load());
    if (owns_init_ && forks == init_fork_.load()) (void)fns_->C_Finalize(nullptr);
}

Result<std::vector<TokenDescription>> Module::tokens() {
    CK_FUNCTION_LIST* f = SIGNET_TRY(functions());
    CK_ULONG count = 0;
    if (const CK_RV rv = f->C_GetSlotList(CK_TRUE, nullptr, &count); rv != CKR_OK) {
        return ck_error(rv, "C_GetSlotList");
    }
    std::vector<CK_SLOT_ID> slots(count);
    if (count > 0) {
        if (const CK_RV rv = f->C_GetSlotList(CK_TRUE, slots.data(), &count); rv != CKR_OK) {
            return ck_error(rv, "C_GetSlotList");
        }
        slots.resize(count);
    }
    std::vector<TokenDescription> out;
    out.reserve(slots.size());
    for (const CK_SLOT_ID slot : slots) {
        CK_TOKEN_INFO info{};
        const CK_RV rv = f->C_GetTokenInfo(slot, &info);
        if (rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_TOKEN_NOT_RECOGNIZED) continue;
        if (rv != CKR_OK) return ck_error(rv, "C_GetTokenInfo(slot " + std::to_string(slot) + ")");
        TokenDescription d;
        d.slot = slot;
        d.label = trim_padded(info.label, sizeof info.label);
        d.serial = trim_padded(info.serialNumber, sizeof info.serialNumber);
        d.model = trim_padded(info.model, sizeof info.model);
        d.manufacturer = trim_padded(info.manufacturerID, sizeof info.manufacturerID);
        d.flags = info.flags;
        out.push_back(std::move(d));
    }
    return out;
}

Result<CK_SLOT_ID> Module::find_slot(const TokenSelector& sel) {
    if (sel.label.empty() && sel.serial.empty()) {
        return make_error(Errc::invalid_argument, "token selector needs a label or a serial");
    }
    const auto all = SIGNET_TRY(tokens());
    std::optional<CK_SLOT_ID> found;
    std::size_t matches = 0;
    for (const TokenDescription& t : all) {
        if (!(t.flags & CKF_TOKEN_INITIALIZED)) continue;
        if (!sel.label.empty() && t.label != sel.label) continue;
        if (!sel.serial.empty() && t.serial != sel.serial) continue;
        found = t.slot;
        ++matches;
    }
    if (matches == 0) {
        return make_error(Errc::not_found, "no initialised token with " + sel.describe() +
                                               " in module '" + path_.string() + "'");
    }
    if (matches > 1) {
        return make_error(Errc::invalid_argument, std::to_string(matches) + " tokens match " +
                                                      sel.describe() + "; add the serial");
    }
    return *found;
}

}  // namespace signet::pkcs11
