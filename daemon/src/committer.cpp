#include "committer.hpp"

namespace signet::daemon {

Committer::Committer(Db db, std::shared_ptr<Logger> logger, std::size_t max_batch)
    : db_(std::move(db)),
      logger_(logger ? std::move(logger) : null_logger()),
      max_batch_(max_batch == 0 ? 1 : max_batch),
      thread_([this] { loop(); }) {}

Committer::~Committer() { stop(); }

Result<void> Committer::submit(Work work) {
    std::future<Result<void>> f;
    {
        const std::lock_guard lock(mu_);
        if (stopping_) return make_error(Errc::unavailable, "the store is shutting down");
        Item& item = queue_.emplace_back(Item{std::move(work), {}, true});
        f = item.done.get_future();
    }
    cv_.notify_one();
    return f.get();
}

void Committer::post(Work work) {
    {
        const std::lock_guard lock(mu_);
        if (stopping_) return;
        queue_.push_back(Item{std::move(work), {}, false});
    }
    cv_.notify_one();
}

void Committer::stop() {
    {
        const std::lock_guard lock(mu_);
        if (stopping_ && !thread_.joinable()) return;
        stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
}

void Committer::loop() {
    for (;;) {
        std::deque<Item> batch;
        {
            std::unique_lock lock(mu_);
            cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) return;  // stopping and drained
            while (!queue_.empty() && batch.size() < max_batch_) {
                batch.push_back(std::move(queue_.front()));
                queue_.pop_front();
            }
        }
        run_batch(batch);
    }
}

void Committer::run_batch(std::deque<Item>& batch) {
    std::vector<Result<void>> results;
    results.reserve(batch.size());
    auto begin = db_.exec("BEGIN IMMEDIATE");
    if (!begin) {
        for (Item& it : batch) it.done.set_value(begin.error().within("begin transaction"));
        return;
    }
    for (Item& it : batch) {
        auto sp = db_.exec("SAVEPOINT work");
        Result<void> r = sp ? it.work(db_) : Result<void>(sp.error());
        if (r) {
            r = db_.exec("RELEASE work");
        } else {
            (void)db_.exec("ROLLBACK TO work");
            (void)db_.exec("RELEASE work");
        }
        results.push_back(std::move(r));
    }
    auto commit = db_.exec("COMMIT");
    if (!commit) {
        (void)db_.exec("ROLLBACK");
        logger_->log(LogLevel::error, "store", "commit_failed",
                     {{"items", batch.size()}, {"error", commit.error().message()}});
    }
    ++transactions_;
    items_ += batch.size();
    for (std::size_t i = 0; i < batch.size(); ++i) {
        Result<void> r =
            commit ? std::move(results[i]) : Result<void>(commit.error().within("commit"));
        if (!batch[i].wait && !r) {
            logger_->log(LogLevel::error, "store", "background_write_failed",
                         {{"error", r.error().message()}});
        }
        batch[i].done.set_value(std::move(r));
    }
}

}  // namespace signet::daemon
