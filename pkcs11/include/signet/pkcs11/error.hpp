// Cryptoki return values as an error category ("pkcs11"): the raw CK_RV reaches logs and API errors
// together with its CKR_* name.
#pragma once

#include <boost/system/error_code.hpp>
#include <string>
#include <string_view>

#include "signet/core/error.hpp"
#include "signet/pkcs11/cryptoki.hpp"

namespace signet::pkcs11 {

enum class Ckr : CK_RV {};  // value() == the raw CK_RV

const boost::system::error_category& ckr_category() noexcept;
boost::system::error_code make_error_code(Ckr rv) noexcept;

// "CKR_PIN_INCORRECT", or "CKR_VENDOR_DEFINED+0x..." / "CKR_UNKNOWN(0x...)".
[[nodiscard]] std::string ckr_name(CK_RV rv);

// Error for a failed Cryptoki call; `operation` names the call and its subject ("C_Sign(key
// 0a1b)").
[[nodiscard]] Error ck_error(CK_RV rv, std::string operation);

// The CK_RV carried by `e`, or CKR_OK when `e` is not a pkcs11 error.
[[nodiscard]] CK_RV ckr_of(const Error& e) noexcept;

}  // namespace signet::pkcs11

template <>
struct boost::system::is_error_code_enum<signet::pkcs11::Ckr> : std::true_type {};
