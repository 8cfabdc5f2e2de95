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

// Labels with this prefix belong to Signet itself and are hidden from list(). Every internal key
// carries the label kInternalLabel and is named by its CKA_ID (the name's bytes), so one search
// finds them all (on SoftHSM every search reads every object: one search, not one per key).
inline constexpr std::string_view kInternalLabelPrefix = "signet.";
inline constexpr std::string_view kInternalLabel = "signet.internal";

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
    CK_OBJECT_HANDLE public_key = CK_INVALID_HANDLE;  // may be invalid after warm_up()
    Algorithm algorithm = Algorithm::ecdsa_p256;
    Bytes public_point;  // secp256k1: 65-byte uncompressed point (for recovery ids)
    std::uint64_t epoch = 0;
};

// What the caller already knows about a key (from its own catalog), so warm_up() need not read it
// from the HSM.
struct KeyHint {
    std::string id;
    Algorithm algorithm = Algorithm::ecdsa_p256;
    Bytes spki_der;
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

    // Handles of the key pair for use inside Token::run: cached; otherwise one search by CKA_ID
    // (concurrent cold lookups wait for one another instead of all scanning the token).
    [[nodiscard]] Result<KeyHandles> handles(Session& s, std::string_view id_hex);
    // Finds the Signet-internal key `name` ("signet.selftest.ecdsa-p256", "signet.audit", ...) or
    // generates it (appliance-local; `*generated` says which). The first call searches once for
    // every internal object.
    [[nodiscard]] Result<KeyInfo> find_or_generate_internal(std::string_view name, Algorithm a,
                                                            bool* generated = nullptr);
    // A small private data object (CKO_DATA, CKA_APPLICATION = name) kept in the HSM, where only
    // a holder of the user PIN can change it (the audit anchor). nullopt when it does not exist.
    [[nodiscard]] Result<std::optional<Bytes>> read_internal_data(std::string_view name);
    [[nodiscard]] Result<void> write_internal_data(std::string_view name, ByteView value);
    // Caches the handles of every hinted key with one pass over the token's private keys, so their
    // first signatures need no search. Returns how many were found.
    [[nodiscard]] Result<std::size_t> warm_up(const std::vector<KeyHint>& hints);

    [[nodiscard]] Token& token() const noexcept { return *token_; }
    [[nodiscard]] const std::shared_ptr<Token>& token_ptr() const noexcept { return token_; }
    // Forgets cached handles of one key (after destroy or unwrap over it).
    void forget(std::string_view id_hex);
    // Held by everything that creates or destroys token objects (generate, destroy, unwrap, the
    // KEK ceremony): SoftHSM's file store races when such calls run concurrently.
    [[nodiscard]] std::unique_lock<std::mutex> lock_object_changes() {
        return std::unique_lock(object_mu_);
    }

private:
    // Any label, reserved ones included; `check_id` searches for an id collision first (needed
    // only for caller-chosen ids: 16 random bytes do not collide).
    Result<KeyInfo> generate_unchecked(const KeySpec& spec, bool check_id);
    Result<KeyInfo> describe(Session& s, const KeyHandles& h, const std::string& id_hex);
    Result<KeyHandles> lookup(Session& s, const std::string& id_hex, std::uint64_t epoch);
    Result<void> load_internal(Session& s);
    Result<void> ensure_internal_loaded(std::string_view op);
    void remember(const std::string& id_hex, const KeyHandles& h);

    std::shared_ptr<Token> token_;
    // SoftHSM's file store races when objects are created or destroyed concurrently
    // (CKR_GENERAL_ERROR / CKR_TEMPLATE_INCONSISTENT, measured; SoftHSMv2 #573): one at a time.
    std::mutex object_mu_;
    std::mutex lookup_mu_;  // one cold lookup at a time; the others then find it cached
    std::mutex mu_;
    std::unordered_map<std::string, KeyHandles> cache_;  // guarded by mu_
    // name -> id of internal keys, loaded once; guarded by mu_
    std::optional<std::unordered_map<std::string, std::string>> internal_;
    // name -> handle of internal data objects (valid while data_epoch_ == handle epoch); mu_
    std::unordered_map<std::string, CK_OBJECT_HANDLE> data_;
    std::uint64_t data_epoch_ = 0;  // guarded by mu_
};

}  // namespace signet::pkcs11
