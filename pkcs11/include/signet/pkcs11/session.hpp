// Session: owns one Cryptoki session handle. SessionPool: a bounded set of sessions on one slot,
// leased one thread at a time through an RAII SessionLease.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <vector>

#include "signet/core/result.hpp"
#include "signet/pkcs11/cryptoki.hpp"

namespace signet::pkcs11 {

// Move-only owner of a CK_SESSION_HANDLE; the destructor calls C_CloseSession. Object handles
// found through a session are valid for the token's login lifetime, not only this session's, but
// die with a logout: see Token::handle_epoch().
class Session {
public:
    Session() = default;
    Session(CK_FUNCTION_LIST* fns, CK_SESSION_HANDLE handle) noexcept
        : fns_(fns), handle_(handle) {}
    Session(Session&& o) noexcept : fns_(o.fns_), handle_(o.handle_) {
        o.handle_ = CK_INVALID_HANDLE;
    }
    Session& operator=(Session&& o) noexcept;
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
    ~Session() { close(); }

    [[nodiscard]] CK_SESSION_HANDLE handle() const noexcept { return handle_; }
    [[nodiscard]] CK_FUNCTION_LIST& fn() const noexcept { return *fns_; }
    [[nodiscard]] bool valid() const noexcept { return handle_ != CK_INVALID_HANDLE; }

    void close() noexcept;
    // Forgets the handle without closing it (after fork: the handle belongs to the parent).
    void abandon() noexcept { handle_ = CK_INVALID_HANDLE; }

private:
    CK_FUNCTION_LIST* fns_ = nullptr;
    CK_SESSION_HANDLE handle_ = CK_INVALID_HANDLE;
};

class SessionPool;

// A session on loan from a SessionPool. Returned to the pool on destruction unless discard()ed
// (after any failure: the session may hold an active operation or be dead).
class SessionLease {
public:
    SessionLease(SessionLease&& o) noexcept;
    SessionLease& operator=(SessionLease&&) = delete;
    SessionLease(const SessionLease&) = delete;
    SessionLease& operator=(const SessionLease&) = delete;
    ~SessionLease();

    Session& operator*() noexcept { return session_; }
    Session* operator->() noexcept { return &session_; }
    void discard() noexcept { discard_ = true; }

private:
    friend class SessionPool;
    SessionLease(SessionPool* pool, Session s) noexcept : pool_(pool), session_(std::move(s)) {}

    SessionPool* pool_;
    Session session_;
    bool discard_ = false;
};

class SessionPool {
public:
    // Opens sessions lazily with `open`, at most `max_sessions` at once.
    using Opener = std::function<Result<Session>()>;
    SessionPool(std::size_t max_sessions, std::chrono::milliseconds acquire_timeout, Opener open);
    SessionPool(const SessionPool&) = delete;
    SessionPool& operator=(const SessionPool&) = delete;
    ~SessionPool();

    // Leases an idle session or opens a new one; waits up to the acquire timeout when all are
    // leased (then errc unavailable).
    [[nodiscard]] Result<SessionLease> acquire();

    // Closes every idle session (leased ones are closed when returned with discard, or reused).
    void close_idle() noexcept;
    // Forgets every idle session without closing it (fork child: the handles are the parent's).
    void abandon_all() noexcept;

    [[nodiscard]] std::size_t open_count() const;
    [[nodiscard]] std::size_t max_sessions() const noexcept { return max_; }

private:
    friend class SessionLease;
    void give_back(Session s, bool discard) noexcept;

    const std::size_t max_;
    const std::chrono::milliseconds timeout_;
    Opener opener_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::vector<Session> idle_;  // guarded by mu_
    std::size_t open_ = 0;       // sessions open (idle + leased); guarded by mu_
};

}  // namespace signet::pkcs11
