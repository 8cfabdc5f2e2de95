// A PKCS#11 module that forwards to a real one (SoftHSM by default) and injects faults on demand:
// the way to produce CKR_DEVICE_ERROR, a session dying mid-sign, etc., which a healthy SoftHSM
// never returns. Loaded through signet::pkcs11::Module like any module.
//
// Real module: $SIGNET_FAULT_REAL_MODULE or /usr/lib/softhsm/libsofthsm2.so.
// Control, from a test in the same process (dlopen RTLD_NOLOAD + dlsym):
//   signet_fault_arm("C_Sign", CKR_DEVICE_ERROR, skip, count)  fail `count` calls after `skip` good
//   ones signet_fault_clear()                                       disarm everything
//   signet_fault_injected("C_Sign")                            how many failures were injected
// or at load time with $SIGNET_FAULT_PLAN = "C_Sign:0x30:skip:count[,...]".
// Injecting CKR_SESSION_HANDLE_INVALID/CKR_SESSION_CLOSED also closes the real session, so the
// handle is genuinely dead afterwards.

#include <dlfcn.h>
#include <p11-kit/pkcs11.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <string>

namespace {

struct Fault {
    CK_RV rv = CKR_OK;
    unsigned long skip = 0;
    unsigned long count = 0;
    unsigned long injected = 0;
};

std::mutex g_mu;
std::map<std::string, Fault> g_faults;  // guarded by g_mu
CK_FUNCTION_LIST* g_real = nullptr;
CK_FUNCTION_LIST g_list;

// Returns the CK_RV to inject for this call of `fn`, or CKR_OK to forward it.
CK_RV next_fault(const char* fn) {
    const std::lock_guard lock(g_mu);
    const auto it = g_faults.find(fn);
    if (it == g_faults.end()) return CKR_OK;
    Fault& f = it->second;
    if (f.skip > 0) {
        --f.skip;
        return CKR_OK;
    }
    if (f.count == 0) return CKR_OK;
    --f.count;
    ++f.injected;
    return f.rv;
}

CK_RV inject_on_session(const char* fn, CK_SESSION_HANDLE h) {
    const CK_RV rv = next_fault(fn);
    if (rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED) g_real->C_CloseSession(h);
    if (rv == CKR_USER_NOT_LOGGED_IN) g_real->C_Logout(h);
    return rv;
}

CK_RV w_Login(CK_SESSION_HANDLE h, CK_USER_TYPE u, CK_UTF8CHAR_PTR pin, CK_ULONG len) {
    if (const CK_RV rv = next_fault("C_Login")) return rv;
    return g_real->C_Login(h, u, pin, len);
}
CK_RV w_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, void* app, CK_NOTIFY notify,
                    CK_SESSION_HANDLE_PTR h) {
    if (const CK_RV rv = next_fault("C_OpenSession")) return rv;
    return g_real->C_OpenSession(slot, flags, app, notify, h);
}
CK_RV w_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) {
    if (const CK_RV rv = inject_on_session("C_SignInit", h)) return rv;
    return g_real->C_SignInit(h, m, k);
}
CK_RV w_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR s, CK_ULONG_PTR sl) {
    if (const CK_RV rv = inject_on_session("C_Sign", h)) return rv;
    return g_real->C_Sign(h, d, dl, s, sl);
}
CK_RV w_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
    if (const CK_RV rv = inject_on_session("C_FindObjectsInit", h)) return rv;
    return g_real->C_FindObjectsInit(h, t, n);
}
CK_RV w_GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pt, CK_ULONG pn,
                        CK_ATTRIBUTE_PTR st, CK_ULONG sn, CK_OBJECT_HANDLE_PTR pk,
                        CK_OBJECT_HANDLE_PTR sk) {
    if (const CK_RV rv = inject_on_session("C_GenerateKeyPair", h)) return rv;
    return g_real->C_GenerateKeyPair(h, m, pt, pn, st, sn, pk, sk);
}
CK_RV w_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info) {
    if (const CK_RV rv = next_fault("C_GetTokenInfo")) return rv;
    return g_real->C_GetTokenInfo(slot, info);
}

void parse_plan(const char* plan) {
    std::stringstream all(plan);
    std::string item;
    while (std::getline(all, item, ',')) {
        std::stringstream one(item);
        std::string fn, rv, skip, count;
        std::getline(one, fn, ':');
        std::getline(one, rv, ':');
        std::getline(one, skip, ':');
        std::getline(one, count, ':');
        if (fn.empty() || rv.empty()) continue;
        Fault f;
        f.rv = std::strtoul(rv.c_str(), nullptr, 0);
        f.skip = skip.empty() ? 0 : std::strtoul(skip.c_str(), nullptr, 0);
        f.count = count.empty() ? 1 : std::strtoul(count.c_str(), nullptr, 0);
        g_faults[fn] = f;
    }
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out) {
    if (!out) return CKR_ARGUMENTS_BAD;
    const std::lock_guard lock(g_mu);
    if (!g_real) {
        const char* path = std::getenv("SIGNET_FAULT_REAL_MODULE");
        void* lib = ::dlopen(path && *path ? path : "/usr/lib/softhsm/libsofthsm2.so",
                             RTLD_NOW | RTLD_LOCAL);
        if (!lib) return CKR_GENERAL_ERROR;
        auto get = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(lib, "C_GetFunctionList"));
        if (!get || get(&g_real) != CKR_OK) return CKR_GENERAL_ERROR;
        g_list = *g_real;
        g_list.C_Login = w_Login;
        g_list.C_OpenSession = w_OpenSession;
        g_list.C_SignInit = w_SignInit;
        g_list.C_Sign = w_Sign;
        g_list.C_FindObjectsInit = w_FindObjectsInit;
        g_list.C_GenerateKeyPair = w_GenerateKeyPair;
        g_list.C_GetTokenInfo = w_GetTokenInfo;
        if (const char* plan = std::getenv("SIGNET_FAULT_PLAN")) parse_plan(plan);
    }
    *out = &g_list;
    return CKR_OK;
}

__attribute__((visibility("default"))) void signet_fault_arm(const char* fn, CK_RV rv,
                                                             unsigned long skip,
                                                             unsigned long count) {
    const std::lock_guard lock(g_mu);
    g_faults[fn] = Fault{rv, skip, count, 0};
}

__attribute__((visibility("default"))) void signet_fault_clear() {
    const std::lock_guard lock(g_mu);
    g_faults.clear();
}

__attribute__((visibility("default"))) unsigned long signet_fault_injected(const char* fn) {
    const std::lock_guard lock(g_mu);
    const auto it = g_faults.find(fn);
    return it == g_faults.end() ? 0 : it->second.injected;
}

}  // extern "C"
