// Group commit: the single writer of the database. Callers hand it work; it runs queued work from
// many threads in one transaction (each piece in its own SAVEPOINT, so one failure does not undo
// the others) and commits once: one fsync for the whole batch. submit() returns only when the
// transaction holding the work is durable, which is what "durable before release" needs.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

#include "db.hpp"
#include "signet/core/logger.hpp"
#include "signet/core/result.hpp"

namespace signet::daemon {

class Committer {
public:
    // Work runs on the writer thread inside the open transaction; it must not block on anything
    // but the database. Its changes are rolled back (to its savepoint) if it returns an error.
    using Work = std::function<Result<void>(Db&)>;

    Committer(Db db, std::shared_ptr<Logger> logger, std::size_t max_batch = 512);
    ~Committer();  // stop()s
    Committer(const Committer&) = delete;
    Committer& operator=(const Committer&) = delete;

    // Runs `work` in the next group transaction and waits until it is durable. Returns the work's
    // error, or the commit's error (then nothing of the batch is durable).
    [[nodiscard]] Result<void> submit(Work work);
    // Queues `work` without waiting (e.g. periodic counters). Errors are logged.
    void post(Work work);

    // Finishes queued work, then stops the writer thread. Later submits fail with unavailable.
    void stop();

    // Counters for metrics and benchmarks.
    [[nodiscard]] std::uint64_t transactions() const noexcept { return transactions_.load(); }
    [[nodiscard]] std::uint64_t items() const noexcept { return items_.load(); }

private:
    struct Item {
        Work work;
        std::promise<Result<void>> done;
        bool wait = true;
    };
    void loop();
    void run_batch(std::deque<Item>& batch);

    Db db_;  // used only by the writer thread
    std::shared_ptr<Logger> logger_;
    const std::size_t max_batch_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Item> queue_;  // guarded by mu_
    bool stopping_ = false;   // guarded by mu_
    std::atomic<std::uint64_t> transactions_{0};
    std::atomic<std::uint64_t> items_{0};
    std::thread thread_;
};

}  // namespace signet::daemon
