#include "worker_pool.hpp"

namespace signet::web {

WorkerPool::WorkerPool(std::size_t threads, std::size_t queue_limit, Gauge& depth)
    : queue_limit_(queue_limit), depth_gauge_(depth) {
    threads_.reserve(threads);
    for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

WorkerPool::~WorkerPool() { stop(); }

bool WorkerPool::try_submit(std::function<void()> task) {
    {
        std::lock_guard lock(mu_);
        // queue_.size() - idle_ tasks will still be waiting after the idle workers wake up.
        if (stopping_ || queue_.size() >= queue_limit_ + idle_) return false;
        queue_.push_back(std::move(task));
        depth_gauge_.set(static_cast<double>(queue_.size()));
    }
    cv_.notify_one();
    return true;
}

std::size_t WorkerPool::depth() const {
    std::lock_guard lock(mu_);
    return queue_.size();
}

void WorkerPool::stop() {
    std::deque<std::function<void()>> dropped;
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
        dropped.swap(queue_);
        depth_gauge_.set(0);
    }
    cv_.notify_all();
    for (auto& t : threads_) {
        if (t.joinable()) t.join();
    }
    threads_.clear();
    // `dropped` dies here, outside the lock: a task's captures may run arbitrary destructors.
}

void WorkerPool::run() {
    for (;;) {
        std::function<void()> task;
        {
            std::unique_lock lock(mu_);
            ++idle_;
            cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            --idle_;
            if (stopping_) return;
            task = std::move(queue_.front());
            queue_.pop_front();
            depth_gauge_.set(static_cast<double>(queue_.size()));
        }
        task();
    }
}

}  // namespace signet::web
