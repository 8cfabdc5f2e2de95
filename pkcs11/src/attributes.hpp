// Internal: building Cryptoki attribute templates and reading attributes back.
#pragma once

#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "signet/core/bytes.hpp"
#include "signet/core/result.hpp"
#include "signet/pkcs11/algorithm.hpp"
#include "signet/pkcs11/session.hpp"

namespace signet::pkcs11::detail {

// A template whose attribute values live as long as the list (deque: stable addresses).
class AttributeList {
public:
    AttributeList& add_bool(CK_ATTRIBUTE_TYPE type, bool v);
    AttributeList& add_ulong(CK_ATTRIBUTE_TYPE type, CK_ULONG v);
    AttributeList& add_bytes(CK_ATTRIBUTE_TYPE type, ByteView v);
    AttributeList& add_string(CK_ATTRIBUTE_TYPE type, std::string_view v) {
        return add_bytes(type, as_bytes(v));
    }
    [[nodiscard]] CK_ATTRIBUTE* data() noexcept { return attrs_.data(); }
    [[nodiscard]] CK_ULONG size() const noexcept { return attrs_.size(); }

private:
    std::vector<CK_ATTRIBUTE> attrs_;
    std::deque<Bytes> values_;
};

// "CKA_SENSITIVE" etc. for messages.
[[nodiscard]] std::string attribute_name(CK_ATTRIBUTE_TYPE type);

// Reads one attribute (two-call pattern). Errors carry the CKR (e.g. CKR_ATTRIBUTE_SENSITIVE).
[[nodiscard]] Result<Bytes> get_attribute(Session& s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type);
[[nodiscard]] Result<bool> get_bool(Session& s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type);
[[nodiscard]] Result<CK_ULONG> get_ulong(Session& s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type);

// Objects matching `tmpl`, at most `max`. CKR_USER_NOT_LOGGED_IN when the session has no login
// (private objects would be silently missing from the result).
[[nodiscard]] Result<std::vector<CK_OBJECT_HANDLE>> find_objects(Session& s, AttributeList& tmpl,
                                                                 std::size_t max);

// Static facts about each algorithm.
struct AlgorithmTraits {
    CK_KEY_TYPE key_type;
    CK_MECHANISM_TYPE keygen;
    Bytes ec_params;        // DER OID of the curve; empty for RSA
    CK_ULONG modulus_bits;  // RSA only
};
[[nodiscard]] const AlgorithmTraits& traits(Algorithm a);

// How a signing key pair's template is used: generated (every attribute settable) or unwrapped
// (SoftHSM 2.6.1 refuses CKA_MODIFIABLE in an unwrap template: CKR_ATTRIBUTE_READ_ONLY, measured;
// SENSITIVE and EXTRACTABLE are one-way regardless).
enum class TemplateUse { generate, unwrap };

// The templates of a Signet signing key pair. Every security attribute is explicit: SoftHSM
// defaults SENSITIVE to false. Curve / modulus size are added for generation only (an unwrapped or
// created public key carries its material instead).
void signing_key_templates(Algorithm a, bool extractable, std::string_view label, ByteView id,
                           TemplateUse use, AttributeList& pub, AttributeList& priv);

// Recognises a key from its Cryptoki description; unsupported when Signet has no such algorithm.
[[nodiscard]] Result<Algorithm> algorithm_of(CK_KEY_TYPE type, ByteView ec_params,
                                             std::size_t modulus_bytes);

}  // namespace signet::pkcs11::detail
