// Token: one logged-in PKCS#11 token (found by label/serial) with a session pool. Every HSM call in
// Signet goes through Token::run, which transparently recovers, a bounded number of times, from a
// lost login, a stale object handle, a dead session or a removed/re-inserted device.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <type_traits>

#include "signet/core/bytes.hpp"
#include "signet/core/logger.hpp"
#include "signet/core/result.hpp"
#include "signet/core/secret_buffer.hpp"
#include "signet/pkcs11/error.hpp"
#include "signet/pkcs11/module.hpp"
#include "signet/pkcs11/session.hpp"

namespace signet::pkcs11 {

struct TokenOptions {
    std::size_t max_sessions = 8;  // one per signing worker is enough
    int max_recoveries = 3;        // transparent recoveries per operation before giving up
    std::chrono::milliseconds acquire_timeout{10'000};
};

// CK_RVs after which Token::run re-establishes state and retries.
[[nodiscard]] bool is_recoverable(CK_RV rv) noexcept;

class Token : public std::enable_shared_from_this<Token> {
public:
    // Finds the token, opens a first session and logs in as user. Errors name the token:
    // not_found (no such token), CKR_PIN_INCORRECT / CKR_PIN_LOCKED from C_Login, ...
    [[nodiscard]] static Result<std::shared_ptr<Token>> open(std::shared_ptr<Module> module,
                                                             TokenSelector selector,
                                                             SecretBuffer pin,
                                                             TokenOptions options = {});
    Token(const Token&) = delete;
    Token& operator=(const Token&) = delete;
    ~Token();

    // Runs fn(Session&) -> Result<T> on a leased, logged-in read-write session. On a recoverable
    // CK_RV (see is_recoverable) the session is dropped, login/slot/handles are re-established
    // and fn runs again, at most options.max_recoveries times. fn must be safe to re-run.
    template <class Fn>
    auto run(std::string_view operation, Fn&& fn) -> std::invoke_result_t<Fn&, Session&>;

    // Runs fn(Session&) on a session logged in as security officer (CKU_SO). User operations wait
    // until it is done; afterwards the user is logged in again and handle_epoch() has moved on.
    template <class Fn>
    auto run_as_so(const SecretBuffer& so_pin, std::string_view operation, Fn&& fn)
        -> std::invoke_result_t<Fn&, Session&>;

    // Changes whenever cached object handles may have become invalid (re-login, re-initialisation
    // after fork, reported stale handle). Handle caches store it and re-find on mismatch.
    [[nodiscard]] std::uint64_t handle_epoch() const noexcept { return handle_epoch_.load(); }

    // Marks cached handles stale (after CKR_OBJECT_HANDLE_INVALID / CKR_KEY_HANDLE_INVALID).
    void invalidate_handles() noexcept { ++handle_epoch_; }

    [[nodiscard]] const TokenSelector& selector() const noexcept { return selector_; }
    [[nodiscard]] Module& module() const noexcept { return *module_; }
    [[nodiscard]] Logger& logger() const noexcept { return module_->logger(); }
    [[nodiscard]] std::size_t max_sessions() const noexcept { return pool_->max_sessions(); }

    // `n` random bytes from the token's RNG.
    [[nodiscard]] Result<Bytes> random(std::size_t n);

    // Counters for metrics and tests.
    [[nodiscard]] std::uint64_t recoveries() const noexcept { return recoveries_.load(); }
    [[nodiscard]] std::uint64_t logins() const noexcept { return logins_.load(); }

private:
    Token(std::shared_ptr<Module> module, TokenSelector selector, SecretBuffer pin,
          TokenOptions options);
    Result<SessionLease> lease();
    Result<Session> open_session();
    // The following run with login_mu_ held.
    Result<void> login_user_locked();
    bool user_logged_in_locked();  // the anchor session still holds the user login
    Result<void> reconnect_locked(std::string_view why);
    Result<void> recover(CK_RV rv, std::uint64_t seen_epoch, std::string_view operation);
    // Security-officer bracket for run_as_so; caller holds so_mu_ exclusively.
    Result<Session> begin_so(const SecretBuffer& so_pin);
    Result<void> end_so(Session so_session);

    std::shared_ptr<Module> module_;
    const TokenSelector selector_;
    const SecretBuffer pin_;
    const TokenOptions options_;
    std::unique_ptr<SessionPool> pool_;
    // Never used for operations: it holds the login, which PKCS#11 drops when the application's
    // last session closes (and the pool discards sessions after failures). guarded by login_mu_
    Session anchor_;

    std::shared_mutex so_mu_;  // user operations hold it shared; run_as_so holds it exclusive
    std::mutex login_mu_;      // serialises login/recovery
    std::atomic<CK_SLOT_ID> slot_{0};                  // written under login_mu_
    std::atomic<std::uint64_t> module_generation_{0};  // written under login_mu_
    std::atomic<std::uint64_t> handle_epoch_{1};
    std::atomic<std::uint64_t> recoveries_{0};
    std::atomic<std::uint64_t> logins_{0};
};

// ---- implementation of the templates -----------------------------------------------------------

template <class Fn>
auto Token::run(std::string_view operation, Fn&& fn) -> std::invoke_result_t<Fn&, Session&> {
    for (int attempt = 0;; ++attempt) {
        const std::uint64_t epoch = handle_epoch();
        CK_RV rv = CKR_OK;
        {
            std::shared_lock so_guard(so_mu_);
            auto leased = lease();
            if (!leased) return leased.error().within(operation);
            auto r = fn(**leased);
            if (r) return r;
            // The session may hold an active operation or be dead: never reuse it after a failure.
            // value(), not ->: the null check above is invisible to GCC -O2 -Wnull-dereference.
            leased.value().discard();
            rv = ckr_of(r.error());
            if (!is_recoverable(rv) || attempt >= options_.max_recoveries) return r;
        }
        if (auto rec = recover(rv, epoch, operation); !rec) return rec.error();
    }
}

template <class Fn>
auto Token::run_as_so(const SecretBuffer& so_pin, std::string_view operation, Fn&& fn)
    -> std::invoke_result_t<Fn&, Session&> {
    std::unique_lock so_guard(so_mu_);  // no user session is leased while the SO is logged in
    auto so_session = begin_so(so_pin);
    if (!so_session) return so_session.error().within(operation);
    auto r = fn(*so_session);
    auto ended = end_so(std::move(*so_session));
    if (!r) return r.error().within(operation);
    if (!ended) return ended.error().within(operation);
    return r;
}

}  // namespace signet::pkcs11
