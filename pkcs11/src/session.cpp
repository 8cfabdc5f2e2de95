#include "signet/pkcs11/session.hpp"

namespace signet::pkcs11 {

Session& Session::operator=(Session&& o) noexcept {
    if (this != &o) {
        close();
        fns_ = o.fns_;
        handle_ = o.handle_;
        o.handle_ = CK_INVALID_HANDLE;
    }
    return *this;
}

void Session::close() noexcept {
    if (handle_ != CK_INVALID_HANDLE && fns_) (void)fns_->C_CloseSession(handle_);
    handle_ = CK_INVALID_HANDLE;
}

SessionLease::SessionLease(SessionLease&& o) noexcept
    : pool_(o.pool_), session_(std::move(o.session_)), discard_(o.discard_) {
    o.pool_ = nullptr;
}

SessionLease::~SessionLease() {
    if (pool_) pool_->give_back(std::move(session_), discard_);
}

SessionPool::SessionPool(std::size_t max_sessions, std::chrono::milliseconds acquire_timeout,
                         Opener open)
    : max_(max_sessions == 0 ? 1 : max_sessions),
      timeout_(acquire_timeout),
      opener_(std::move(open)) {}

SessionPool::~SessionPool() { close_idle(); }

Result<SessionLease> SessionPool::acquire() {
    std::unique_lock lock(mu_);
    const bool available =
        cv_.wait_for(lock, timeout_, [&] { return !idle_.empty() || open_ < max_; });
    if (!available) {
        return make_error(Errc::unavailable, "all " + std::to_string(max_) +
                                                 " HSM sessions stayed busy for " +
                                                 std::to_string(timeout_.count()) + " ms");
    }
    if (!idle_.empty()) {
        Session s = std::move(idle_.back());
        idle_.pop_back();
        return SessionLease(this, std::move(s));
    }
    ++open_;
    lock.unlock();
    auto s = opener_();  // outside the lock: C_OpenSession may be slow
    if (!s) {
        lock.lock();
        --open_;
        cv_.notify_one();
        return s.error();
    }
    return SessionLease(this, std::move(s).value());
}

void SessionPool::give_back(Session s, bool discard) noexcept {
    std::unique_lock lock(mu_);
    if (discard || !s.valid()) {
        --open_;
        lock.unlock();
        s.close();
    } else {
        idle_.push_back(std::move(s));
        lock.unlock();
    }
    cv_.notify_one();
}

void SessionPool::close_idle() noexcept {
    std::vector<Session> closing;
    {
        const std::lock_guard lock(mu_);
        closing.swap(idle_);
        open_ -= closing.size();
    }
    cv_.notify_all();
    // Sessions close as `closing` goes out of scope, outside the lock.
}

void SessionPool::abandon_all() noexcept {
    const std::lock_guard lock(mu_);
    for (Session& s : idle_) s.abandon();
    open_ -= idle_.size();
    idle_.clear();
}

std::size_t SessionPool::open_count() const {
    const std::lock_guard lock(mu_);
    return open_;
}

}  // namespace signet::pkcs11
