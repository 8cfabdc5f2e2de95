// KeyStore: the keys on one token. Generates key pairs inside the HSM with every security attribute
// set explicitly, finds them by id, signs, and destroys them. Object handles are cached per key and
// re-found when the token's handle epoch moves (re-login, fork, stale handle).
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "signet/core/bytes.hpp"
#include "signet/core/result.hpp"
#include "signet/pkcs11/algorithm.hpp"
#include "signet/pkcs11/signature.hpp"
#include "signet/pkcs11/token.hpp"

namespace signet::pkcs11 {

// Labels with this prefix belong to Signet itself (self-test keys) and are hidden from list().
inline constexpr std::string_view kInternalLabelPrefix = "signet.";

struct KeySpec {
    Algorithm algorithm = Algorithm::ecdsa_p256;
    KeyClass key_class = KeyClass::local;
    std::string label;
    std::optional<Bytes> id;  // CKA_ID; 16 random bytes when absent
};

struct KeyInfo {
    std::string id;  // hex of CKA_ID
    std::string label;
    Algorithm algorithm = Algorithm::ecdsa_p256;
    KeyClass key_class = KeyClass::local;
    Bytes spki_der;  // public key
};

// The security attributes of a private key as the HSM reports them.
struct KeyAttributes {
    bool token = false, is_private = false, sensitive = false, always_sensitive = false;
    bool extractable = false, never_extractable = false, wrap_with_trusted = false;
    bool sign = false, decrypt = false, unwrap = false, derive = false, modifiable = false;
};

// Object handles of one key pair, valid while `epoch` == token.handle_epoch().
struct KeyHandles {
    CK_OBJECT_HANDLE private_key = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE public_key = CK_INVALID_HANDLE;
    Algorithm algorithm = Algorithm::ecdsa_p256;
    KeyClass key_class = KeyClass::local;
    Bytes public_point;  // EC: 65-byte uncompressed point (for secp256k1 recovery ids)
    std::uint64_t epoch = 0;
};

class KeyStore {
public:
    explicit KeyStore(std::shared_ptr<Token> token);

    // Generates a key pair in the token. invalid_argument for a bad label or id; already_exists
    // when the id is taken.
    [[nodiscard]] Result<KeyInfo> generate(const KeySpec& spec);

    // Reads the key's description from the HSM. not_found when no private key has that id.
    [[nodiscard]] Result<KeyInfo> get(std::string_view id_hex);
    // All key pairs on the token except Signet's internal ones.
    [[nodiscard]] Result<std::vector<KeyInfo>> list();
    [[nodiscard]] Result<KeyAttributes> attributes(std::string_view id_hex);
    // Destroys both halves in the HSM. not_found when neither exists.
    [[nodiscard]] Result<void> destroy(std::string_view id_hex);

    // Signs with the key. The request is validated first (prepare_sign_input); secp256k1 results
    // are low-S with a recovery id.
    [[nodiscard]] Result<Signature> sign(std::string_view id_hex, const SignRequest& req);

    // Handles of the key pair for use inside Token::run (cached; re-found after epoch change).
    [[nodiscard]] Result<KeyHandles> handles(Session& s, std::string_view id_hex);
    // Finds a Signet-internal key pair by label, or generates it (self-test keys).
    [[nodiscard]] Result<KeyInfo> find_or_generate_internal(std::string_view label, Algorithm a);

    [[nodiscard]] Token& token() const noexcept { return *token_; }
    [[nodiscard]] const std::shared_ptr<Token>& token_ptr() const noexcept { return token_; }
    // Forgets cached handles of one key (after destroy or unwrap over it).
    void forget(std::string_view id_hex);

private:
    Result<KeyInfo> generate_unchecked(const KeySpec& spec);  // any label, reserved ones included
    Result<KeyInfo> describe(Session& s, CK_OBJECT_HANDLE private_key, std::string id_hex);

    std::shared_ptr<Token> token_;
    std::mutex mu_;
    std::unordered_map<std::string, KeyHandles> cache_;  // guarded by mu_
};

}  // namespace signet::pkcs11
