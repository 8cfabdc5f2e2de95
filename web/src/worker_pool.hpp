// A fixed set of threads for blocking handlers behind a bounded admission queue. Nothing here
// blocks the caller of try_submit(): a full queue is a refusal, so memory stays bounded.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "signet/web/metrics.hpp"

namespace signet::web {

class WorkerPool {
public:
    // `depth` mirrors the number of admitted-but-not-started tasks.
    WorkerPool(std::size_t threads, std::size_t queue_limit, Gauge& depth);
    ~WorkerPool();  // stop()
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    // Queues `task` unless it would leave more than queue_limit tasks waiting once every idle
    // worker has taken one (or the pool is stopping); never blocks. Tasks must not throw.
    [[nodiscard]] bool try_submit(std::function<void()> task);
    [[nodiscard]] std::size_t depth() const;
    // Drops tasks that have not started, waits for running ones to return, joins the threads.
    // Idempotent. Tasks are destroyed on the calling thread.
    void stop();

private:
    void run();

    const std::size_t queue_limit_;
    Gauge& depth_gauge_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> queue_;  // guarded by mu_
    std::size_t idle_ = 0;                     // workers waiting for a task, guarded by mu_
    bool stopping_ = false;                    // guarded by mu_
    std::vector<std::thread> threads_;         // touched only by the constructor and stop()
};

}  // namespace signet::web
