#include "committer.hpp"

#include <algorithm>
#include <optional>

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

namespace {

void run_all(std::vector<std::function<void()>>& hooks, bool reverse) {
    if (reverse) std::ranges::reverse(hooks);
    for (auto& h : hooks) h();
    hooks.clear();
}

// A work that throws is a bug; it must not take the writer thread (and every waiter) with it.
Result<void> run_work(const Committer::Work& work, Db& db) {
    try {
        return work(db);
    } catch (const std::exception& e) {
        return make_error(Errc::internal, std::string("store work threw: ") + e.what());
    }
}

}  // namespace

void Committer::run_batch(std::deque<Item>& batch) {
    std::vector<Result<void>> results;
    std::vector<TxnHooks> hooks(batch.size());
    results.reserve(batch.size());
    auto begin = db_.exec("BEGIN IMMEDIATE");
    if (!begin) {
        for (Item& it : batch) it.done.set_value(begin.error().within("begin transaction"));
        return;
    }
    std::optional<Error> aborted;  // SQLite rolled the whole transaction back by itself
    for (std::size_t i = 0; i < batch.size(); ++i) {
        if (aborted) {
            results.push_back(*aborted);
            continue;
        }
        auto sp = db_.exec("SAVEPOINT work");
        db_.set_hooks(&hooks[i]);
        Result<void> r = sp ? run_work(batch[i].work, db_) : Result<void>(sp.error());
        db_.set_hooks(nullptr);
        if (r) {
            r = db_.exec("RELEASE work");
        } else if (sqlite3_get_autocommit(db_.handle())) {
            // FULL, IOERR, NOMEM, ...: SQLite already rolled back everything, including the work
            // before this one. Nothing of the batch is durable; say so to every item.
            aborted = r.error().within("transaction rolled back by SQLite");
        } else {
            (void)db_.exec("ROLLBACK TO work");
            (void)db_.exec("RELEASE work");
            run_all(hooks[i].on_rollback, true);
            hooks[i].on_commit.clear();
        }
        results.push_back(std::move(r));
    }
    Result<void> commit = aborted ? Result<void>(*aborted) : db_.exec("COMMIT");
    if (!commit) {
        if (!sqlite3_get_autocommit(db_.handle())) (void)db_.exec("ROLLBACK");
        logger_->log(LogLevel::error, "store", "commit_failed",
                     {{"items", batch.size()}, {"error", commit.error().message()}});
    }
    ++transactions_;
    items_ += batch.size();
    for (std::size_t i = 0; i < batch.size(); ++i) {
        // In-memory state follows the outcome before any waiter can observe it.
        if (commit) {
            run_all(hooks[i].on_commit, false);
        } else {
            run_all(hooks[i].on_rollback, true);
        }
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
