#include "signet/pkcs11/token.hpp"

namespace signet::pkcs11 {

bool is_recoverable(CK_RV rv) noexcept {
    switch (rv) {
        case CKR_USER_NOT_LOGGED_IN:
        case CKR_OBJECT_HANDLE_INVALID:
        case CKR_KEY_HANDLE_INVALID:
        case CKR_SESSION_HANDLE_INVALID:
        case CKR_SESSION_CLOSED:
        case CKR_DEVICE_REMOVED:
        case CKR_TOKEN_NOT_PRESENT:
        case CKR_CRYPTOKI_NOT_INITIALIZED: return true;
        default: return false;
    }
}

Token::Token(std::shared_ptr<Module> module, TokenSelector selector, SecretBuffer pin,
             TokenOptions options)
    : module_(std::move(module)),
      selector_(std::move(selector)),
      pin_(std::move(pin)),
      options_(options),
      pool_(std::make_unique<SessionPool>(options.max_sessions, options.acquire_timeout,
                                          [this] { return open_session(); })) {}

Token::~Token() {
    pool_.reset();
    const std::lock_guard lock(login_mu_);
    anchor_.close();  // closing the last session logs the user out
}

Result<std::shared_ptr<Token>> Token::open(std::shared_ptr<Module> module, TokenSelector selector,
                                           SecretBuffer pin, TokenOptions options) {
    if (!module) return make_error(Errc::invalid_argument, "open token: no module");
    if (pin.empty()) {
        return make_error(Errc::invalid_argument,
                          "open token " + selector.describe() + ": empty PIN");
    }
    std::shared_ptr<Token> t(
        new Token(std::move(module), std::move(selector), std::move(pin), options));
    const std::lock_guard lock(t->login_mu_);
    if (auto r = t->reconnect_locked("open"); !r) {
        return r.error().within("open token " + t->selector_.describe());
    }
    return t;
}

Result<Session> Token::open_session() {
    CK_FUNCTION_LIST* f = SIGNET_TRY(module_->functions());
    CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
    const CK_RV rv =
        f->C_OpenSession(slot_.load(), CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &h);
    if (rv != CKR_OK) return ck_error(rv, "C_OpenSession(token " + selector_.describe() + ")");
    return Session(f, h);
}

Result<SessionLease> Token::lease() {
    (void)SIGNET_TRY(module_->functions());  // re-initialises Cryptoki in a fork child
    if (module_->generation() != module_generation_.load()) {
        const std::lock_guard lock(login_mu_);
        if (module_->generation() != module_generation_.load()) {
            // Every session, login and handle belonged to the parent process.
            pool_->abandon_all();
            anchor_.abandon();
            SIGNET_TRY(reconnect_locked("re-initialised after fork"));
        }
    }
    return pool_->acquire();
}

Result<void> Token::login_user_locked() {
    if (!anchor_.valid()) anchor_ = SIGNET_TRY(open_session());
    CK_FUNCTION_LIST& f = anchor_.fn();
    CK_RV rv =
        f.C_Login(anchor_.handle(), CKU_USER, const_cast<CK_UTF8CHAR*>(pin_.data()), pin_.size());
    if (rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED) {
        anchor_.abandon();  // already gone in the module
        anchor_ = SIGNET_TRY(open_session());
        rv = f.C_Login(anchor_.handle(), CKU_USER, const_cast<CK_UTF8CHAR*>(pin_.data()),
                       pin_.size());
    }
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        return ck_error(rv, "C_Login(user, token " + selector_.describe() + ")");
    }
    ++logins_;
    ++handle_epoch_;
    return ok();
}

bool Token::user_logged_in_locked() {
    if (!anchor_.valid()) return false;
    CK_SESSION_INFO info{};
    if (anchor_.fn().C_GetSessionInfo(anchor_.handle(), &info) != CKR_OK) return false;
    return info.state == CKS_RW_USER_FUNCTIONS || info.state == CKS_RO_USER_FUNCTIONS;
}

Result<void> Token::reconnect_locked(std::string_view why) {
    pool_->close_idle();
    anchor_.close();
    const CK_SLOT_ID slot = SIGNET_TRY(module_->find_slot(selector_));
    slot_.store(slot);
    module_generation_.store(module_->generation());
    SIGNET_TRY(login_user_locked());
    logger().log(LogLevel::info, "pkcs11", "token_connected",
                 {{"token", selector_.describe()}, {"slot", slot}, {"reason", why}});
    return ok();
}

Result<void> Token::recover(CK_RV rv, std::uint64_t seen_epoch, std::string_view operation) {
    ++recoveries_;
    const std::lock_guard lock(login_mu_);
    logger().log(
        LogLevel::warn, "pkcs11", "token_recovering",
        {{"token", selector_.describe()}, {"operation", operation}, {"ckr", ckr_name(rv)}});
    Result<void> r = ok();
    switch (rv) {
        case CKR_SESSION_HANDLE_INVALID:
        case CKR_SESSION_CLOSED:
            // The failed session was discarded. Idle ones may be dead too (C_CloseAllSessions,
            // a module restart): drop them rather than spend the bounded retries finding out.
            pool_->close_idle();
            break;
        case CKR_OBJECT_HANDLE_INVALID:
        case CKR_KEY_HANDLE_INVALID:
            // A C_Logout on any session of this application ends the login for all of them, and
            // SoftHSM 2.6.1 then reports cached private-key handles as CKR_OBJECT_HANDLE_INVALID,
            // not CKR_USER_NOT_LOGGED_IN (measured). Re-finding without a login cannot see the
            // key, so log in again (which also moves the epoch) when the login is gone.
            if (handle_epoch_.load() == seen_epoch) {
                if (user_logged_in_locked()) {
                    ++handle_epoch_;
                } else {
                    r = login_user_locked();
                }
            }
            break;
        case CKR_USER_NOT_LOGGED_IN:
            // Someone logged out (or the last session closed). Another thread may already have
            // logged in again since we started: then the epoch has moved and we only retry.
            if (handle_epoch_.load() == seen_epoch) r = login_user_locked();
            break;
        default:  // device removed / token not present / Cryptoki not initialised
            if (handle_epoch_.load() == seen_epoch) r = reconnect_locked(ckr_name(rv));
            break;
    }
    if (!r) return r.error().within(std::string(operation) + ": recovering from " + ckr_name(rv));
    return ok();
}

Result<Session> Token::begin_so(const SecretBuffer& so_pin) {
    const std::lock_guard lock(login_mu_);
    pool_->close_idle();  // no leases are out: the caller holds so_mu_ exclusively
    if (anchor_.valid()) (void)anchor_.fn().C_Logout(anchor_.handle());
    ++handle_epoch_;
    auto s = open_session();
    if (!s) return s.error();
    const CK_RV rv = s->fn().C_Login(s->handle(), CKU_SO, const_cast<CK_UTF8CHAR*>(so_pin.data()),
                                     so_pin.size());
    if (rv != CKR_OK) {
        s->close();
        auto relogin = login_user_locked();
        if (!relogin) {
            logger().log(LogLevel::error, "pkcs11", "user_relogin_failed",
                         {{"token", selector_.describe()}, {"error", relogin.error().message()}});
        }
        return ck_error(rv, "C_Login(security officer, token " + selector_.describe() + ")");
    }
    logger().log(LogLevel::info, "pkcs11", "so_login", {{"token", selector_.describe()}});
    return std::move(s).value();
}

Result<void> Token::end_so(Session so_session) {
    const std::lock_guard lock(login_mu_);
    (void)so_session.fn().C_Logout(so_session.handle());
    so_session.close();
    logger().log(LogLevel::info, "pkcs11", "so_logout", {{"token", selector_.describe()}});
    return login_user_locked();
}

Result<Bytes> Token::random(std::size_t n) {
    // An empty vector's data() may be null, which modules reject as CKR_ARGUMENTS_BAD (SoftHSM
    // does): zero bytes need no HSM call.
    if (n == 0) return Bytes{};
    return run("C_GenerateRandom", [&](Session& s) -> Result<Bytes> {
        Bytes out(n);
        const CK_RV rv = s.fn().C_GenerateRandom(s.handle(), out.data(), out.size());
        if (rv != CKR_OK) return ck_error(rv, "C_GenerateRandom");
        return out;
    });
}

}  // namespace signet::pkcs11
