// NonceAllocator: one high-water-mark key per counter (nonce_allocator.hpp).
//
// Invariants, per counter:
// - A value is handed out only from a range [first, last] that a committed transaction moved the
//   mark to (mark >= last), with the fence's guard holding at commit and fence->check() passing
//   just before the hand-out.
// - `floor` is the highest value this appliance must never go below: every mark it saw or wrote
//   and every value of a transaction whose outcome is unknown. New ranges start above
//   max(mark, floor), so a burnt value is never issued even if its transaction was not applied.
// - Blocks only grow: a later reservation is above every earlier one, so fast-mode values are
//   strictly increasing per appliance.
// - Strict: a batch's values come from its own txn's revision R above a base B >= max(mark,
//   floor) of the record it replaced, and R exceeds the record's mod revision, so they lie above
//   the mark and the floor.
// Lock order: Counter::txn_mu -> Counter::mu -> State::mu. Callbacks run with none held.
#include "signet/ha/nonce_allocator.hpp"

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <vector>

namespace signet::ha {

std::string_view to_string(AllocationMode m) noexcept {
    switch (m) {
        case AllocationMode::fast: return "fast";
        case AllocationMode::strict: return "strict";
        case AllocationMode::dense: return "dense";
    }
    return "unknown";
}

std::optional<AllocationMode> parse_allocation_mode(std::string_view s) noexcept {
    if (s == "fast") return AllocationMode::fast;
    if (s == "strict") return AllocationMode::strict;
    if (s == "dense") return AllocationMode::dense;
    return std::nullopt;
}

std::string counter_key(const std::string& prefix, const std::string& name) {
    return prefix + "counters/" + name;
}

namespace {

// A counter key's record: a decimal mark, or "s<base>" (strict).
struct Record {
    bool by_revision = false;
    std::uint64_t number = 0;  // the mark, or the strict base
};

std::optional<Record> parse_record(std::string_view v) {
    Record r;
    if (v.empty()) return r;
    if (v.front() == 's') {
        r.by_revision = true;
        v.remove_prefix(1);
    }
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), r.number);
    if (ec != std::errc{} || end != v.data() + v.size() || v.empty()) return std::nullopt;
    return r;
}

constexpr std::int64_t kRevisionHeadroom = std::int64_t{1} << 32;

// The first value of a strict batch committed at `revision` on `base`; nullopt past 2^64.
std::optional<std::uint64_t> strict_first(std::uint64_t base, std::int64_t revision) {
    const auto rev = static_cast<std::uint64_t>(std::max<std::int64_t>(revision, 0));
    constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
    if (rev > (kMax - kStrictStride) / kStrictStride) return std::nullopt;
    if (base > kMax - kStrictStride - rev * kStrictStride) return std::nullopt;
    return base + rev * kStrictStride;
}

}  // namespace

Result<std::uint64_t> counter_mark(const std::string& value, std::int64_t mod_revision) {
    const auto r = parse_record(value);
    if (!r) return make_error(Errc::internal, "counter record '" + value + "' is not a mark");
    if (!r->by_revision) return r->number;
    const auto first = strict_first(r->number, mod_revision);
    if (!first) return make_error(Errc::internal, "counter record '" + value + "' overflows");
    return *first + kStrictStride - 1;
}

namespace {

constexpr std::string_view kComponent = "ha.allocator";

// Values next..last of a reserved range remain; empty once next > last.
struct Block {
    std::uint64_t first = 0;
    std::uint64_t next = 0;
    std::uint64_t last = 0;

    [[nodiscard]] bool empty() const { return next > last; }
    // Half or more handed out: time to fetch the next block.
    [[nodiscard]] bool half_used() const { return (next - first) * 2 >= last - first + 1; }
};

struct Reserved {
    std::uint64_t first = 0;
    std::uint64_t last = 0;
};

// One strict-mode caller waiting for its batch.
struct Waiter {
    bool taken = false;  // guarded by Counter::mu: in a batch (no longer queued)
    std::optional<Result<std::uint64_t>> result;  // guarded by Counter::mu
    // Woken alone (with Counter::mu held, so it outlives the notify): for its result, or, at the
    // queue's front, when the running batch txn is done.
    std::condition_variable cv;
};

template <class N>
bool compare_values(Compare::Op op, const N& have, const N& want) {
    switch (op) {
        case Compare::Op::equal: return have == want;
        case Compare::Op::not_equal: return have != want;
        case Compare::Op::greater: return have > want;
        case Compare::Op::less: return have < want;
    }
    return false;
}

// Evaluates a guard compare on a failure-branch read, with etcd's zeros for a missing key.
bool holds(const Compare& c, const std::vector<KeyValue>& kvs) {
    const KeyValue none;
    const KeyValue& kv = kvs.empty() ? none : kvs.front();
    switch (c.target) {
        case Compare::Target::value: return compare_values(c.op, kv.value, c.value);
        case Compare::Target::version: return compare_values(c.op, kv.version, c.number);
        case Compare::Target::create_revision:
            return compare_values(c.op, kv.create_revision, c.number);
        case Compare::Target::mod_revision: return compare_values(c.op, kv.mod_revision, c.number);
        case Compare::Target::lease: return compare_values(c.op, kv.lease, c.number);
    }
    return false;
}

bool is_fence_error(const Error& e) {
    return e.code == make_error_code(HaErrc::not_active) ||
           e.code == make_error_code(HaErrc::fenced);
}

// What next() reports when no values can be had: the fence's own error, or allocation_stopped
// naming the cause when the engine cannot be reached (no quorum, partition, lost answers).
Error stopped(const Error& cause, const std::string& counter) {
    if (is_fence_error(cause)) return cause;
    if (cause.code == make_error_code(Errc::unavailable) ||
        cause.code == make_error_code(HaErrc::outcome_unknown)) {
        return make_error(
            HaErrc::allocation_stopped,
            "counter " + counter + ": no block held and none can be had (" + cause.message() + ")");
    }
    return cause;
}

}  // namespace

struct Counter {
    Counter(std::string n, std::string k) : name(std::move(n)), key(std::move(k)) {}
    const std::string name;
    const std::string key;

    // Serialises this allocator's transactions on the counter and owns the CAS cache.
    std::mutex txn_mu;
    bool known = false;        // guarded by txn_mu: mark/mod_rev reflect a read or a commit
    std::uint64_t mark = 0;    // guarded by txn_mu: last high-water mark seen or written
    std::int64_t mod_rev = 0;  // guarded by txn_mu: its mod revision (0: key absent)
    std::string text;          // guarded by txn_mu: the record as read or written ("": absent)
    Record record;             // guarded by txn_mu: `text` parsed
    std::uint64_t floor = 0;   // guarded by txn_mu: see the invariants at the top

    std::mutex mu;
    std::optional<Block> current;     // guarded by mu: fast mode, values being handed out
    std::optional<Block> next_block;  // guarded by mu: fast mode, reserved by a refill
    bool refill_posted = false;       // guarded by mu: a refill is queued or running
    // Bumped by drop_blocks: a reservation begun under an older generation is burnt, not held.
    std::uint64_t generation = 0;  // guarded by mu
    std::deque<Waiter*> queue;     // guarded by mu: strict/dense, callers not yet in a batch
    bool committing = false;       // guarded by mu: strict/dense, a batch txn is running
};

struct NonceAllocator::State : std::enable_shared_from_this<NonceAllocator::State> {
    State(std::shared_ptr<Coordinator> c, std::shared_ptr<const Fence> f, AllocatorOptions o,
          Executor e, std::shared_ptr<Logger> l)
        : coordinator(std::move(c)),
          fence(std::move(f)),
          options(std::move(o)),
          executor(std::move(e)),
          logger(std::move(l)) {}

    const std::shared_ptr<Coordinator> coordinator;
    const std::shared_ptr<const Fence> fence;
    const AllocatorOptions options;
    const Executor executor;
    const std::shared_ptr<Logger> logger;

    std::atomic<std::uint64_t> transactions{0};
    std::atomic<std::uint64_t> conflicts{0};
    std::atomic<std::uint64_t> unknown{0};
    std::atomic<std::uint64_t> burnt_values{0};
    std::atomic<std::uint64_t> issued{0};

    mutable std::mutex mu;
    std::map<std::string, std::shared_ptr<Counter>> counters;  // guarded by mu
    std::function<void(const BurntRange&)> burn_callback;      // guarded by mu
    std::function<void(const std::string&, std::uint64_t, std::uint64_t)>
        reserve_callback;  // guarded by mu

    std::shared_ptr<Counter> counter(const std::string& name) {
        std::lock_guard lock(mu);
        auto& c = counters[name];
        if (!c) c = std::make_shared<Counter>(name, counter_key(options.prefix, name));
        return c;
    }

    std::vector<std::shared_ptr<Counter>> all_counters() const {
        std::lock_guard lock(mu);
        std::vector<std::shared_ptr<Counter>> out;
        for (const auto& [name, c] : counters) out.push_back(c);
        return out;
    }

    // Reports ranges that will never be issued. Caller holds no lock.
    void burn(const std::vector<BurntRange>& ranges) {
        if (ranges.empty()) return;
        std::function<void(const BurntRange&)> cb;
        {
            std::lock_guard lock(mu);
            cb = burn_callback;
        }
        for (const auto& r : ranges) {
            burnt_values += r.last - r.first + 1;
            logger->log(LogLevel::warn, kComponent, "values_burnt",
                        {{"counter", r.counter},
                         {"first", r.first},
                         {"last", r.last},
                         {"reason", r.reason}});
            if (cb) cb(r);
        }
    }

    // Caller holds c.txn_mu. Adopts a read of the counter key.
    static Result<void> absorb(Counter& c, const std::vector<KeyValue>& kvs) {
        std::string text;
        std::int64_t rev = 0;
        if (!kvs.empty()) {
            text = kvs.front().value;
            rev = kvs.front().mod_revision;
            if (text.empty()) {
                return make_error(Errc::internal, "counter key " + c.key + " holds no value");
            }
        }
        auto mark = counter_mark(text, rev);
        if (!mark) return mark.error().within("counter key " + c.key);
        c.mark = *mark;
        c.mod_rev = rev;
        c.text = std::move(text);
        c.record = parse_record(c.text).value_or(Record{});
        c.floor = std::max(c.floor, c.mark);  // even a deleted key cannot take us back below it
        c.known = true;
        return ok();
    }

    // Caller holds c.txn_mu. A linearizable read into the CAS cache.
    Result<void> load(Counter& c) {
        auto r = coordinator->range(c.key, {}, options.txn_timeout);
        if (!r) return r.error().within("read counter " + c.name);
        return absorb(c, r->kvs);
    }

    // Caller holds no lock, or c.txn_mu only (fast mode). Calls for one counter may overlap in
    // strict mode (a batch's range is recorded while the next batch's txn runs).
    void reserved(const std::string& counter, std::uint64_t first, std::uint64_t last) {
        std::function<void(const std::string&, std::uint64_t, std::uint64_t)> cb;
        {
            std::lock_guard lock(mu);
            cb = reserve_callback;
        }
        if (cb) cb(counter, first, last);
    }

    // Caller holds c.txn_mu. A txn whose compares failed: adopts the record its failure branch
    // read; ok when the record changed (a lost race: retry), the fence's error when the guard
    // failed.
    Result<void> lost(Counter& c, const TxnResponse& r, const std::vector<Compare>& guard) {
        if (r.results.size() < 1 + guard.size()) {
            return make_error(Errc::internal, "allocation txn for counter " + c.name +
                                                  ": failure branch reads missing");
        }
        SIGNET_TRY(absorb(c, r.results.front()));
        for (std::size_t i = 0; i < guard.size(); ++i) {
            if (holds(guard[i], r.results[i + 1])) continue;
            if (auto f = fence->check(); !f) return f.error();
            return make_error(HaErrc::not_active,
                              "allocation guard failed for counter " + c.name +
                                  ": the leader key changed (this appliance was deposed)");
        }
        ++conflicts;
        return ok();
    }

    // Caller holds c.txn_mu. Strict: one txn for `n` values (n <= kStrictStride) derived from its
    // revision; `grow` as for reserve(). An unknown outcome is simply retried: the values of that
    // txn's revision can never be anybody's.
    Result<Reserved> reserve_by_revision(Counter& c, std::uint64_t n,
                                         const std::function<std::uint64_t()>& grow) {
        if (!c.known) SIGNET_TRY(load(c));
        for (int attempt = 0; attempt < std::max(1, options.max_attempts); ++attempt) {
            if (attempt > 0 && grow) n = std::max(n, grow());
            // Keep the record's base while its next revision's values lie above the floor (so
            // both appliances put the same record and never conflict); otherwise lift it.
            std::uint64_t base = c.record.by_revision ? c.record.number : c.mark;
            if (const auto f = strict_first(base, c.mod_rev + 1); f && *f <= c.floor)
                base = c.floor;
            // Headroom for 2^32 more revisions, so that no committed record can overflow.
            if (!strict_first(base, c.mod_rev + kRevisionHeadroom)) {
                return make_error(Errc::internal, "counter " + c.name + " exhausted");
            }
            const std::string text = "s" + std::to_string(base);
            const std::vector<Compare> guard = fence->guard();
            TxnRequest t;
            t.compare.push_back(c.text.empty() ? Compare::absent(c.key)
                                               : Compare::value_equals(c.key, c.text));
            t.compare.insert(t.compare.end(), guard.begin(), guard.end());
            t.success.push_back(Op::put(c.key, text));
            t.failure.push_back(Op::get(c.key));
            for (const auto& g : guard) t.failure.push_back(Op::get(g.key));
            ++transactions;
            auto r = coordinator->txn(t, options.txn_timeout);
            if (r && r->succeeded) {
                const auto first = strict_first(base, r->revision);
                if (!first) return make_error(Errc::internal, "counter " + c.name + " exhausted");
                c.mod_rev = r->revision;
                c.text = text;
                c.record = Record{true, base};
                if (*first <= c.floor) {
                    // The revision went back (etcd restored from an older snapshot): this
                    // revision's values may have been issued. Take none of them; the next attempt
                    // lifts the base above the floor.
                    logger->log(
                        LogLevel::warn, kComponent, "revision_went_back",
                        {{"counter", c.name}, {"revision", r->revision}, {"floor", c.floor}});
                    continue;
                }
                c.mark = *first + kStrictStride - 1;
                c.floor = std::max(c.floor, c.mark);
                return Reserved{*first, *first + n - 1};
            }
            if (r) {
                SIGNET_TRY(lost(c, *r, guard));
                continue;
            }
            if (r.error().code == make_error_code(HaErrc::outcome_unknown)) {
                ++unknown;
                logger->log(LogLevel::warn, kComponent, "batch_outcome_unknown",
                            {{"counter", c.name}, {"error", r.error().message()}});
                c.known = false;
                SIGNET_TRY(load(c));
                continue;
            }
            return r.error().within("allocate counter " + c.name);
        }
        return make_error(HaErrc::conflict, "counter " + c.name + ": record changed " +
                                                std::to_string(options.max_attempts) + " times");
    }

    // Caller holds c.txn_mu. Moves the mark up by `n` (or to `to` when set) with the guard;
    // returns the range taken (the caller reports it through reserved() before using it).
    // Unknown outcomes are appended to `burnt` and retried above. `grow`, when set, is asked for
    // the size before every attempt after the first (a strict batch takes in callers that queued
    // while a lost attempt was in flight); it must never shrink the size.
    Result<Reserved> reserve(Counter& c, std::uint64_t n, std::vector<BurntRange>& burnt,
                             std::optional<std::uint64_t> to = std::nullopt,
                             const std::function<std::uint64_t()>& grow = {}) {
        if (!c.known) SIGNET_TRY(load(c));
        for (int attempt = 0; attempt < std::max(1, options.max_attempts); ++attempt) {
            if (attempt > 0 && grow) n = std::max(n, grow());
            const std::uint64_t base = std::max(c.mark, c.floor);
            if (to && c.mark >= *to) return Reserved{c.mark + 1, c.mark};  // never lowers
            if (!to && base > std::numeric_limits<std::uint64_t>::max() - n) {
                return make_error(Errc::internal, "counter " + c.name + " exhausted");
            }
            const std::uint64_t hw = to ? std::max(*to, c.floor) : base + n;
            const std::vector<Compare> guard = fence->guard();
            TxnRequest t;
            t.compare.push_back(Compare::mod_revision_equals(c.key, c.mod_rev));
            t.compare.insert(t.compare.end(), guard.begin(), guard.end());
            t.success.push_back(Op::put(c.key, std::to_string(hw)));
            // The failure branch reads back what the compares looked at: the fresh mark for the
            // retry, and the guard's keys to tell a lost role from a lost race.
            t.failure.push_back(Op::get(c.key));
            for (const auto& g : guard) t.failure.push_back(Op::get(g.key));
            ++transactions;
            auto r = coordinator->txn(t, options.txn_timeout);
            if (r && r->succeeded) {
                c.mark = hw;
                c.mod_rev = r->revision;
                c.text = std::to_string(hw);
                c.record = Record{false, hw};
                c.floor = std::max(c.floor, hw);
                return Reserved{base + 1, hw};
            }
            if (r) {
                SIGNET_TRY(lost(c, *r, guard));
                continue;
            }
            if (r.error().code == make_error_code(HaErrc::outcome_unknown)) {
                ++unknown;
                if (!to) {
                    burnt.push_back(
                        BurntRange{c.name, base + 1, hw,
                                   "transaction outcome unknown: " + r.error().message()});
                }
                c.floor = std::max(c.floor, hw);
                c.known = false;
                SIGNET_TRY(load(c));
                continue;
            }
            return r.error().within("allocate counter " + c.name);
        }
        return make_error(HaErrc::conflict, "counter " + c.name + ": compare-and-swap lost " +
                                                std::to_string(options.max_attempts) + " times");
    }

    // Caller holds c.mu. Makes the next block current once the current one is used up.
    static void promote(Counter& c) {
        if ((!c.current || c.current->empty()) && c.next_block) {
            c.current = c.next_block;
            c.next_block.reset();
        }
    }

    // Caller holds c.mu.
    static bool wants_refill(const Counter& c) {
        return !c.next_block && (!c.current || c.current->empty() || c.current->half_used());
    }

    // A value from a held block, posting a refill at half use; nullopt when none is held.
    // Caller holds no lock (an executor that runs work inline takes txn_mu).
    std::optional<std::uint64_t> take(const std::shared_ptr<Counter>& c) {
        std::optional<std::uint64_t> v;
        bool post = false;
        {
            std::lock_guard lock(c->mu);
            promote(*c);
            if (!c->current || c->current->empty()) return std::nullopt;
            v = c->current->next++;
            if (executor && !c->refill_posted && wants_refill(*c)) {
                c->refill_posted = true;
                post = true;
            }
        }
        ++issued;
        if (post) {
            // Weak: a refill that runs after the allocator is gone does nothing.
            executor([weak = weak_from_this(), c] {
                if (auto s = weak.lock()) s->run_refill(*c);
            });
        }
        return v;
    }

    // Runs on the executor: reserves the next block unless it is no longer needed.
    void run_refill(Counter& c) {
        std::vector<BurntRange> burnt;
        {
            std::lock_guard t(c.txn_mu);
            bool need = false;
            std::uint64_t gen = 0;
            {
                std::lock_guard lock(c.mu);
                need = wants_refill(c);
                gen = c.generation;
            }
            // A fenced appliance would only be refused by the guard; do not spend a txn on it.
            std::optional<Result<Reserved>> r;
            if (need && fence->check()) r = reserve(c, options.block_size, burnt);
            if (r && *r) reserved(c.name, (*r)->first, (*r)->last);
            std::lock_guard lock(c.mu);
            c.refill_posted = false;
            if (r && *r) {
                const Block b{(*r)->first, (*r)->first, (*r)->last};
                if (c.generation != gen) {
                    burnt.push_back({c.name, b.first, b.last, "blocks dropped during refill"});
                } else if (!c.current || c.current->empty()) {
                    c.current = b;
                } else {
                    c.next_block = b;
                }
            } else if (r) {
                logger->log(LogLevel::warn, kComponent, "refill_failed",
                            {{"counter", c.name}, {"error", (*r).error().message()}});
            }
        }
        burn(burnt);
    }

    // Exhausted with no next block: reserves one on the caller's thread and makes it current
    // (ok without a txn when a refill landed while we waited for txn_mu).
    Result<void> refill_now(Counter& c, std::vector<BurntRange>& burnt) {
        std::lock_guard t(c.txn_mu);
        std::uint64_t gen = 0;
        {
            std::lock_guard lock(c.mu);
            promote(c);
            if (c.current && !c.current->empty()) return ok();
            gen = c.generation;
        }
        auto r = reserve(c, options.block_size, burnt);
        if (!r) return stopped(r.error(), c.name);
        reserved(c.name, r->first, r->last);
        std::lock_guard lock(c.mu);
        if (c.generation != gen) {
            burnt.push_back({c.name, r->first, r->last, "blocks dropped during refill"});
            return make_error(HaErrc::allocation_stopped,
                              "counter " + c.name + ": blocks dropped during refill");
        }
        c.current = Block{r->first, r->first, r->last};
        return ok();
    }

    Result<std::uint64_t> next_fast(const std::shared_ptr<Counter>& c) {
        // Values are taken without txn_mu held (take() may post a refill, which needs it); so a
        // fresh block can be emptied by other callers before we get to it: try again, bounded.
        for (int attempt = 0;; ++attempt) {
            if (auto v = take(c)) return *v;
            if (attempt >= std::max(1, options.max_attempts)) {
                return make_error(HaErrc::conflict,
                                  "counter " + c->name + ": blocks used up by concurrent callers");
            }
            std::vector<BurntRange> burnt;
            Result<void> r = refill_now(*c, burnt);
            burn(burnt);
            if (!r) return r.error();
            // The reservation may have taken a while: prove the role again before handing out.
            SIGNET_TRY(fence->check());
        }
    }

    // Caller holds c.mu. Moves queued callers into `batch` (up to max_batch in all).
    void take_queued(Counter& c, std::vector<Waiter*>& batch) const {
        std::size_t cap = std::max<std::size_t>(1, options.max_batch);
        if (options.mode == AllocationMode::strict) cap = std::min<std::size_t>(cap, kStrictStride);
        while (!c.queue.empty() && batch.size() < cap) {
            c.queue.front()->taken = true;
            batch.push_back(c.queue.front());
            c.queue.pop_front();
        }
    }

    // Group commit (strict, dense): the first queued waiter to find no batch txn running commits
    // one txn for everyone queued, taking in those who queue while a lost attempt is in flight.
    // Values come from the batch's own txn (its revision, or the mark it moved), which began
    // after every member called next(), so they are strictly increasing in real time across
    // appliances. `committing` covers only the txn: once it committed, the next batch may send its
    // txn while this batch's range is recorded (on_reserve) and handed out. Each waiter is woken
    // alone: the queue's front when the txn is done, a batch's members for their results (waking
    // every queued caller twice per batch costs CPU in proportion to the callers queued).
    Result<std::uint64_t> next_batched(const std::shared_ptr<Counter>& c) {
        Waiter w;
        std::unique_lock lock(c->mu);
        c->queue.push_back(&w);
        while (!w.result) {
            if (w.taken || c->committing) {
                w.cv.wait(lock);
                continue;
            }
            c->committing = true;
            std::vector<Waiter*> batch;
            take_queued(*c, batch);
            lock.unlock();
            std::vector<BurntRange> burnt;
            Result<Reserved> r = [&] {
                std::lock_guard t(c->txn_mu);
                auto grow = [&] {
                    std::lock_guard l(c->mu);
                    take_queued(*c, batch);
                    return static_cast<std::uint64_t>(batch.size());
                };
                if (options.mode == AllocationMode::strict) {
                    return reserve_by_revision(*c, batch.size(), grow);
                }
                return reserve(*c, batch.size(), burnt, std::nullopt, grow);
            }();
            lock.lock();
            c->committing = false;
            if (!c->queue.empty()) c->queue.front()->cv.notify_one();  // may send the next batch
            lock.unlock();
            // r covers exactly the batch: the last grow() call sized the successful attempt.
            if (r) reserved(c->name, r->first, r->last);
            // Committed under the guard; still, nothing leaves a fenced appliance.
            Result<void> f = r ? fence->check() : ok();
            if (r && !f) burnt.push_back({c->name, r->first, r->last, "fenced after commit"});
            burn(burnt);
            if (r && f) issued += batch.size();
            lock.lock();
            for (std::size_t i = 0; i < batch.size(); ++i) {
                if (!r) {
                    batch[i]->result = stopped(r.error(), c->name);
                } else if (!f) {
                    batch[i]->result = f.error();
                } else {
                    batch[i]->result = r->first + i;
                }
                batch[i]->cv.notify_one();
            }
        }
        return std::move(*w.result);
    }

    // Caller holds no lock. Empties the counter's blocks into `burnt`.
    static void drop(Counter& c, const std::string& reason, std::vector<BurntRange>& burnt) {
        std::lock_guard lock(c.mu);
        if (c.current && !c.current->empty()) {
            burnt.push_back({c.name, c.current->next, c.current->last, reason});
        }
        if (c.next_block)
            burnt.push_back({c.name, c.next_block->first, c.next_block->last, reason});
        c.current.reset();
        c.next_block.reset();
        ++c.generation;
    }
};

NonceAllocator::NonceAllocator(std::shared_ptr<Coordinator> coordinator,
                               std::shared_ptr<const Fence> fence, AllocatorOptions options,
                               Executor executor, std::shared_ptr<Logger> logger)
    : coordinator_(std::move(coordinator)),
      fence_(std::move(fence)),
      options_(std::move(options)),
      executor_(std::move(executor)),
      logger_(logger ? std::move(logger) : null_logger()),
      s_(std::make_shared<State>(coordinator_, fence_, options_, executor_, logger_)) {}

NonceAllocator::~NonceAllocator() = default;

Result<std::uint64_t> NonceAllocator::next(const std::string& counter) {
    // Before any value, even one from a held block: a standby or fenced appliance issues nothing.
    SIGNET_TRY(fence_->check());
    auto c = s_->counter(counter);
    if (options_.mode != AllocationMode::fast) return s_->next_batched(c);
    return s_->next_fast(c);
}

Result<std::uint64_t> NonceAllocator::high_water(const std::string& counter) {
    auto r = coordinator_->range(counter_key(options_.prefix, counter), {}, options_.txn_timeout);
    if (!r) return r.error().within("read counter " + counter);
    Counter scratch(counter, counter_key(options_.prefix, counter));
    SIGNET_TRY(State::absorb(scratch, r->kvs));
    return scratch.mark;
}

Result<std::uint64_t> NonceAllocator::raise(const std::string& counter, std::uint64_t floor) {
    SIGNET_TRY(fence_->check());
    auto c = s_->counter(counter);
    std::vector<BurntRange> burnt;
    // txn_mu first: no refill can reserve from the old mark between the drop and the raise. The
    // floor is recorded before anything else, so every later reservation starts above it, and the
    // blocks held (possibly installed by a refill that finished just now) are dropped under it.
    std::lock_guard t(c->txn_mu);
    c->floor = std::max(c->floor, floor);
    State::drop(*c, "counter raised to " + std::to_string(floor), burnt);
    s_->burn(burnt);
    burnt.clear();
    c->known = false;  // raise acts on a fresh linearizable read, not on the cache
    auto r = s_->reserve(*c, 0, burnt, floor);
    if (!r) return r.error();
    return c->mark;
}

void NonceAllocator::drop_blocks(const std::string& reason) {
    std::vector<BurntRange> burnt;
    for (const auto& c : s_->all_counters()) State::drop(*c, reason, burnt);
    s_->burn(burnt);
}

void NonceAllocator::on_burn(std::function<void(const BurntRange&)> callback) {
    std::lock_guard lock(s_->mu);
    s_->burn_callback = std::move(callback);
}

void NonceAllocator::on_reserve(
    std::function<void(const std::string&, std::uint64_t, std::uint64_t)> callback) {
    std::lock_guard lock(s_->mu);
    s_->reserve_callback = std::move(callback);
}

AllocatorStats NonceAllocator::stats() const {
    AllocatorStats st;
    st.transactions = s_->transactions;
    st.conflicts = s_->conflicts;
    st.unknown = s_->unknown;
    st.burnt = s_->burnt_values;
    st.issued = s_->issued;
    return st;
}

std::size_t NonceAllocator::waiting(const std::string& counter) const {
    std::shared_ptr<Counter> c;
    {
        std::lock_guard lock(s_->mu);
        auto it = s_->counters.find(counter);
        if (it == s_->counters.end()) return 0;
        c = it->second;
    }
    std::lock_guard lock(c->mu);
    return c->queue.size();
}

}  // namespace signet::ha
