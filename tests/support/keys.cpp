#include "signet_test/keys.hpp"

#include <atomic>
#include <stdexcept>

#include "signet/pkcs11/session.hpp"

#include "signet_test/test_hsm.hpp"

namespace signet::test {

pkcs11::KeyInfo generate_key(pkcs11::KeyStore& keys, pkcs11::Algorithm a,
                             pkcs11::KeyClass key_class, std::string label) {
    if (label.empty()) label = "test-" + std::string(pkcs11::to_string(a));
    return keys.generate(pkcs11::KeySpec{a, key_class, std::move(label), std::nullopt}).value();
}

std::vector<std::shared_ptr<pkcs11::KeyStore>> fresh_key_stores(std::size_t n) {
    static std::atomic<int> next{0};
    std::vector<std::string> labels;
    for (std::size_t i = 0; i < n; ++i) {
        labels.push_back("fresh-" + std::to_string(next++));
        test_hsm().init_token(labels.back());
    }
    std::vector<std::shared_ptr<pkcs11::KeyStore>> out;
    for (const std::string& label : labels) {
        auto token = pkcs11::Token::open(test_hsm().module(), {label, ""}, test_hsm().user_pin());
        if (!token) {
            throw std::runtime_error(token.error().message() +
                                     " (SoftHSM sees only tokens that existed when it was "
                                     "initialised: make fresh tokens before opening others)");
        }
        out.push_back(std::make_shared<pkcs11::KeyStore>(std::move(token).value()));
    }
    return out;
}

std::shared_ptr<pkcs11::KeyStore> fresh_key_store() { return fresh_key_stores(1).front(); }

std::size_t count_objects(pkcs11::KeyStore& keys, std::vector<CK_ATTRIBUTE> tmpl) {
    std::size_t count = 0;
    const auto r = keys.token().run("count objects", [&](pkcs11::Session& s) -> Result<void> {
        CK_RV rv = s.fn().C_FindObjectsInit(s.handle(), tmpl.data(), tmpl.size());
        if (rv != CKR_OK) return pkcs11::ck_error(rv, "C_FindObjectsInit");
        CK_OBJECT_HANDLE found[64];
        CK_ULONG n = 0;
        rv = s.fn().C_FindObjects(s.handle(), found, 64, &n);
        (void)s.fn().C_FindObjectsFinal(s.handle());
        if (rv != CKR_OK) return pkcs11::ck_error(rv, "C_FindObjects");
        count = n;
        return ok();
    });
    if (!r) throw std::runtime_error(r.error().message());
    return count;
}

}  // namespace signet::test
