// ha: the shared nonce allocator (fast blocks and strict batches) on the fake coordinator: unique
// values across two appliances, burning on unknown outcomes, fencing, and the held-block rule.
#include "signet/ha/nonce_allocator.hpp"

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <condition_variable>
#include <deque>
#include <set>
#include <thread>
#include <vector>

#include "signet_test/fake_coordinator.hpp"
#include "signet_test/result_matchers.hpp"

using namespace std::chrono_literals;
using signet::Result;
using signet::ha::AllocationMode;
using signet::ha::AllocatorOptions;
using signet::ha::BurntRange;
using signet::ha::Compare;
using signet::ha::Fence;
using signet::ha::HaErrc;
using signet::ha::NonceAllocator;
using signet::ha::PairMode;
using signet::ha::Role;
using signet::ha::RoleMachine;
using signet::ha::RoleOptions;
using signet::test::FakeClock;
using signet::test::FakeCoordinator;
using signet::test::FakeStore;
using signet::test::Fault;

namespace {

const std::string kPrefix = "/signet/t/";

// A fence the test opens and closes by hand.
class TestFence final : public Fence {
public:
    [[nodiscard]] std::vector<Compare> guard() const override { return {}; }
    [[nodiscard]] Result<void> check() const override {
        if (const auto e = error_.load(); e != HaErrc{}) return signet::make_error(e, "test fence");
        return signet::ok();
    }
    void fail(HaErrc e) { error_ = e; }
    void pass() { error_ = HaErrc{}; }

private:
    std::atomic<HaErrc> error_{HaErrc{}};
};

// Queues posted work until the test runs it.
class ManualExecutor {
public:
    signet::ha::Executor executor() {
        return [this](std::function<void()> f) {
            std::lock_guard lock(mu_);
            queue_.push_back(std::move(f));
        };
    }
    std::size_t queued() const {
        std::lock_guard lock(mu_);
        return queue_.size();
    }
    void run_all() {
        for (;;) {
            std::function<void()> f;
            {
                std::lock_guard lock(mu_);
                if (queue_.empty()) return;
                f = std::move(queue_.front());
                queue_.pop_front();
            }
            f();
        }
    }

private:
    mutable std::mutex mu_;
    std::deque<std::function<void()>> queue_;
};

AllocatorOptions options(AllocationMode mode, std::uint64_t block) {
    AllocatorOptions o;
    o.prefix = kPrefix;
    o.mode = mode;
    o.block_size = block;
    o.txn_timeout = 100ms;
    return o;
}

struct Store {
    std::shared_ptr<FakeClock> clock = std::make_shared<FakeClock>();
    std::shared_ptr<FakeStore> store = std::make_shared<FakeStore>(clock);
    std::shared_ptr<FakeCoordinator> ca = std::make_shared<FakeCoordinator>(store);
    std::shared_ptr<FakeCoordinator> cb = std::make_shared<FakeCoordinator>(store);
    std::shared_ptr<TestFence> fence = std::make_shared<TestFence>();
};

std::uint64_t value(Result<std::uint64_t> r) {
    REQUIRE_OK(r);
    return *r;
}

bool fails_with(const Result<std::uint64_t>& r, HaErrc e) {
    return !r && r.error().code == make_error_code(e);
}

}  // namespace

namespace signet::ha {
// Ranges compare by what they cover; reasons are checked separately.
bool operator==(const BurntRange& a, const BurntRange& b) {
    return a.counter == b.counter && a.first == b.first && a.last == b.last;
}
}  // namespace signet::ha

namespace Catch {
template <>
struct StringMaker<BurntRange> {
    static std::string convert(const BurntRange& r) {
        return r.counter + "[" + std::to_string(r.first) + "," + std::to_string(r.last) + "]";
    }
};
}  // namespace Catch

TEST_CASE("fast mode: two appliances interleaved get unique values, increasing per appliance",
          "[ha][unit]") {
    Store s;
    NonceAllocator a(s.ca, s.fence, options(AllocationMode::fast, 3));
    NonceAllocator b(s.cb, s.fence, options(AllocationMode::fast, 3));
    std::vector<std::uint64_t> va;
    std::vector<std::uint64_t> vb;
    for (int round = 0; round < 2; ++round) {
        va.push_back(value(a.next("k")));
        va.push_back(value(a.next("k")));
        vb.push_back(value(b.next("k")));
        vb.push_back(value(b.next("k")));
    }
    CHECK(va == std::vector<std::uint64_t>{1, 2, 3, 7});
    CHECK(vb == std::vector<std::uint64_t>{4, 5, 6, 10});
    CHECK(value(a.high_water("k")) == 12);
    CHECK(a.stats().issued == 4);
    CHECK(a.stats().transactions == 3);  // its second block lost one CAS race to b
    CHECK(a.stats().conflicts == 1);
    CHECK(value(a.next("other")) == 1);  // counters are independent
}

TEST_CASE("fast mode refills at half use on the executor so next() does not wait for a txn",
          "[ha][unit]") {
    Store s;
    ManualExecutor ex;
    NonceAllocator a(s.ca, s.fence, options(AllocationMode::fast, 4), ex.executor());
    CHECK(value(a.next("k")) == 1);
    CHECK(ex.queued() == 0);
    CHECK(value(a.next("k")) == 2);  // half used
    CHECK(ex.queued() == 1);
    CHECK(s.ca->txns() == 1);
    SECTION("the refill ran") {
        ex.run_all();
        CHECK(s.ca->txns() == 2);
        CHECK(value(a.next("k")) == 3);
        CHECK(value(a.next("k")) == 4);
        CHECK(value(a.next("k")) == 5);
        CHECK(s.ca->txns() == 2);
        CHECK(value(a.high_water("k")) == 8);
    }
    SECTION("the refill had not run: the caller refills, and the late refill does nothing") {
        CHECK(value(a.next("k")) == 3);
        CHECK(value(a.next("k")) == 4);
        CHECK(value(a.next("k")) == 5);
        CHECK(s.ca->txns() == 2);
        ex.run_all();
        CHECK(s.ca->txns() == 2);
        CHECK(value(a.next("k")) == 6);
    }
}

TEST_CASE("a refill queued after the allocator is destroyed does nothing", "[ha][unit]") {
    Store s;
    ManualExecutor ex;
    {
        NonceAllocator a(s.ca, s.fence, options(AllocationMode::fast, 2), ex.executor());
        CHECK(value(a.next("k")) == 1);
        REQUIRE(ex.queued() == 1);
    }
    ex.run_all();
    CHECK(s.ca->txns() == 1);
}

TEST_CASE("a block txn with an unknown outcome burns the block and the next block starts above it",
          "[ha][unit]") {
    Store s;
    NonceAllocator a(s.ca, s.fence, options(AllocationMode::fast, 5));
    std::vector<BurntRange> burnt;
    a.on_burn([&](const BurntRange& r) { burnt.push_back(r); });
    SECTION("reply lost: the txn was applied") { s.ca->inject(Fault::lost_reply, 1, true); }
    SECTION("request lost: the txn was not applied, burnt all the same") {
        s.ca->inject(Fault::lost_request, 1, true);
    }
    CHECK(value(a.next("k")) == 6);
    REQUIRE(burnt.size() == 1);
    CHECK(burnt[0] == BurntRange{"k", 1, 5, {}});
    CHECK_THAT(burnt[0].reason, Catch::Contains("unknown"));
    CHECK(a.stats().unknown == 1);
    CHECK(a.stats().burnt == 5);
    CHECK(value(a.high_water("k")) == 10);
    // Another appliance starting now never sees the burnt values either.
    NonceAllocator b(s.cb, s.fence, options(AllocationMode::fast, 5));
    CHECK(value(b.next("k")) == 11);
}

TEST_CASE("a lost CAS race is retried with the value read back by the failure branch",
          "[ha][unit]") {
    Store s;
    NonceAllocator a(s.ca, s.fence, options(AllocationMode::fast, 5));
    NonceAllocator b(s.cb, s.fence, options(AllocationMode::fast, 5));
    SECTION("the peer committed between two of our blocks") {
        CHECK(value(a.next("k")) == 1);
        CHECK(value(b.next("k")) == 6);
        for (std::uint64_t v = 2; v <= 5; ++v) CHECK(value(a.next("k")) == v);
        const std::uint64_t calls = s.ca->calls();
        CHECK(value(a.next("k")) == 11);
        CHECK(s.ca->calls() - calls == 2);  // the lost txn and the retry: no extra read
        CHECK(s.ca->txns() == 3);
    }
    SECTION("the peer committed while our txn was in flight (slow commit)") {
        bool once = false;
        s.ca->before_txn([&] {
            if (!std::exchange(once, true)) CHECK(value(b.next("k")) == 1);
        });
        CHECK(value(a.next("k")) == 6);
        CHECK(s.ca->calls() == 3);  // the first read, the lost txn and the retry
        CHECK(s.ca->txns() == 2);
    }
    CHECK(a.stats().conflicts == 1);
}

TEST_CASE("dense mode: values from two appliances increase in the order the calls completed",
          "[ha][unit]") {
    Store s;
    NonceAllocator a(s.ca, s.fence, options(AllocationMode::dense, 1000));
    NonceAllocator b(s.cb, s.fence, options(AllocationMode::dense, 1000));
    std::vector<std::uint64_t> got;
    for (NonceAllocator* x : {&a, &b, &b, &a, &a, &b}) got.push_back(value(x->next("k")));
    CHECK(got == std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6});
    CHECK(value(a.high_water("k")) == 6);
}

TEST_CASE("dense mode batches concurrent callers into fewer transactions than calls",
          "[ha][unit]") {
    constexpr int kThreads = 8;
    Store s;
    NonceAllocator a(s.ca, s.fence, options(AllocationMode::dense, 1000));
    std::mutex mu;
    std::condition_variable cv;
    bool first_in_txn = false;
    bool timed_out = false;
    std::atomic<int> txn_count{0};
    s.ca->before_txn([&] {
        if (txn_count++ != 0) return;
        {
            std::lock_guard lock(mu);
            first_in_txn = true;
        }
        cv.notify_all();
        // Hold the first batch's txn until every other caller has queued behind it (bounded).
        const auto give_up = std::chrono::steady_clock::now() + 10s;
        while (a.waiting("k") < kThreads - 1) {
            if (std::chrono::steady_clock::now() > give_up) {
                timed_out = true;
                return;
            }
            std::this_thread::yield();
        }
    });
    std::vector<std::uint64_t> got(kThreads, 0);
    std::vector<std::thread> threads;
    threads.emplace_back([&] { got[0] = a.next("k").value(); });
    {
        std::unique_lock lock(mu);
        REQUIRE(cv.wait_for(lock, 10s, [&] { return first_in_txn; }));
    }
    for (int i = 1; i < kThreads; ++i) {
        threads.emplace_back([&, i] { got[static_cast<std::size_t>(i)] = a.next("k").value(); });
    }
    for (auto& t : threads) t.join();
    REQUIRE_FALSE(timed_out);
    CHECK(got[0] == 1);
    const std::set<std::uint64_t> distinct(got.begin(), got.end());
    CHECK(distinct.size() == kThreads);
    CHECK(*distinct.begin() == 1);
    CHECK(*distinct.rbegin() == kThreads);
    CHECK(s.ca->txns() == 2);
    CHECK(a.stats().issued == kThreads);
}

TEST_CASE(
    "dense mode: a batch whose CAS lost takes in the callers queued meanwhile before it retries",
    "[ha][unit]") {
    constexpr std::size_t kLate = 3;
    Store s;
    NonceAllocator a(s.ca, s.fence, options(AllocationMode::dense, 1000));
    NonceAllocator b(s.cb, s.fence, options(AllocationMode::dense, 1000));
    std::mutex mu;
    std::condition_variable cv;
    bool in_txn = false;
    bool timed_out = false;
    std::uint64_t peer = 0;
    bool once = false;
    s.ca->before_txn([&] {
        if (std::exchange(once, true)) return;
        peer = b.next("k").value();  // the peer commits while our first txn is in flight: it loses
        {
            std::lock_guard lock(mu);
            in_txn = true;
        }
        cv.notify_all();
        const auto give_up = std::chrono::steady_clock::now() + 10s;
        while (a.waiting("k") < kLate) {
            if (std::chrono::steady_clock::now() > give_up) {
                timed_out = true;
                return;
            }
            std::this_thread::yield();
        }
    });
    std::vector<std::uint64_t> got(kLate + 1, 0);
    std::vector<std::thread> threads;
    threads.emplace_back([&] { got[0] = a.next("k").value(); });
    {
        std::unique_lock lock(mu);
        REQUIRE(cv.wait_for(lock, 10s, [&] { return in_txn; }));
    }
    for (std::size_t i = 1; i <= kLate; ++i) {
        threads.emplace_back([&, i] { got[i] = a.next("k").value(); });
    }
    for (auto& t : threads) t.join();
    REQUIRE_FALSE(timed_out);
    CHECK(peer == 1);
    CHECK(got[0] == 2);  // the first caller is first in the batch
    const std::set<std::uint64_t> distinct(got.begin(), got.end());
    CHECK(distinct == std::set<std::uint64_t>{2, 3, 4, 5});
    CHECK(s.ca->txns() == 2);  // the lost one and one retry for all four callers
    CHECK(a.stats().conflicts == 1);
    CHECK(a.stats().issued == kLate + 1);
    CHECK(value(a.high_water("k")) == 5);
}

TEST_CASE("dense mode: the next batch's txn runs while a committed batch's range is recorded",
          "[ha][unit]") {
    Store s;
    NonceAllocator a(s.ca, s.fence, options(AllocationMode::dense, 1000));
    std::mutex mu;
    std::condition_variable cv;
    bool recording = false;
    bool overlapped = false;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
    a.on_reserve([&](const std::string&, std::uint64_t first, std::uint64_t last) {
        bool first_call = false;
        {
            std::lock_guard lock(mu);
            ranges.emplace_back(first, last);
            first_call = !std::exchange(recording, true);
        }
        if (!first_call) return;
        cv.notify_all();
        // Hold the first batch's record (a local fsync in the daemon) until the second batch has
        // sent its txn (bounded).
        const auto give_up = std::chrono::steady_clock::now() + 10s;
        while (s.ca->txns() < 2 && std::chrono::steady_clock::now() < give_up) {
            std::this_thread::yield();
        }
        overlapped = s.ca->txns() >= 2;
    });
    std::uint64_t v1 = 0;
    std::uint64_t v2 = 0;
    std::thread t1([&] { v1 = a.next("k").value(); });
    {
        std::unique_lock lock(mu);
        REQUIRE(cv.wait_for(lock, 10s, [&] { return recording; }));
    }
    std::thread t2([&] { v2 = a.next("k").value(); });
    t2.join();
    t1.join();
    CHECK(overlapped);
    CHECK(v1 == 1);
    CHECK(v2 == 2);
    // Each range was reported before any of its values was handed out.
    CHECK(ranges == std::vector<std::pair<std::uint64_t, std::uint64_t>>{{1, 1}, {2, 2}});
}

TEST_CASE("a deposed active gets not_active and no value", "[ha][unit]") {
    const auto mode = GENERATE(AllocationMode::fast, AllocationMode::strict, AllocationMode::dense);
    Store s;
    auto o = [](const std::string& name) {
        RoleOptions r;
        r.prefix = kPrefix;
        r.name = name;
        r.url = "https://" + name;
        return r;
    };
    auto ra = std::make_shared<RoleMachine>(s.ca, s.clock, o("a"));
    auto rb = std::make_shared<RoleMachine>(s.cb, s.clock, o("b"));
    ra->tick();
    rb->tick();
    NonceAllocator a(s.ca, ra, options(mode, 2));
    NonceAllocator b(s.cb, rb, options(mode, 2));
    const std::uint64_t v1 = value(a.next("k"));
    const std::uint64_t v2 = value(a.next("k"));
    CHECK(v1 < v2);
    CHECK(fails_with(b.next("k"), HaErrc::not_active));
    // The leader key goes behind the active's back (an operator revokes its lease); the peer wins.
    FakeCoordinator op(s.store);
    for (const auto& kv : s.store->dump(kPrefix + "leader"))
        REQUIRE_OK(op.lease_revoke(kv.lease, 1s));
    rb->tick();
    REQUIRE(rb->status().role == Role::active);
    REQUIRE_OK(ra->check());  // it has not heard
    auto r = a.next("k");
    REQUIRE(fails_with(r, HaErrc::not_active));
    CHECK_THAT(r.error().message(), Catch::Contains("deposed"));
    const std::uint64_t hw = value(a.high_water("k"));
    CHECK(hw >= v2);
    CHECK(value(b.next("k")) > hw);
}

TEST_CASE("a fenced appliance hands out nothing, not even from its held block", "[ha][unit]") {
    Store s;
    RoleOptions ro;
    ro.prefix = kPrefix;
    ro.name = "a";
    auto ra = std::make_shared<RoleMachine>(s.ca, s.clock, ro);
    ra->tick();
    NonceAllocator a(s.ca, ra, options(AllocationMode::fast, 10));
    CHECK(value(a.next("k")) == 1);
    s.clock->advance(ro.lease_ttl - ro.safety_margin);  // no renewal: the deadline passes
    CHECK(fails_with(a.next("k"), HaErrc::fenced));
    CHECK(a.stats().issued == 1);
    CHECK(s.ca->txns() == 2);  // the campaign and one block: the fenced call sent nothing
    ra->tick();                // renewed (the lease had not expired in the store)
    CHECK(value(a.next("k")) == 2);
}

TEST_CASE("drop_blocks burns the unused rest of the current and the next block", "[ha][unit]") {
    Store s;
    ManualExecutor ex;
    NonceAllocator a(s.ca, s.fence, options(AllocationMode::fast, 10), ex.executor());
    std::vector<BurntRange> burnt;
    a.on_burn([&](const BurntRange& r) { burnt.push_back(r); });
    for (std::uint64_t v = 1; v <= 5; ++v) CHECK(value(a.next("k")) == v);
    ex.run_all();
    a.drop_blocks("role lost");
    CHECK(burnt == std::vector<BurntRange>{{"k", 6, 10, {}}, {"k", 11, 20, {}}});
    CHECK(burnt[0].reason == "role lost");
    CHECK(a.stats().burnt == 15);
    CHECK(value(a.next("k")) == 21);
}

TEST_CASE("raise never lowers the mark and later values start above the floor", "[ha][unit]") {
    Store s;
    NonceAllocator a(s.ca, s.fence, options(AllocationMode::fast, 10));
    std::vector<BurntRange> burnt;
    a.on_burn([&](const BurntRange& r) { burnt.push_back(r); });
    CHECK(value(a.next("k")) == 1);
    CHECK(value(a.raise("k", 5)) == 10);
    CHECK(value(a.high_water("k")) == 10);
    CHECK(burnt == std::vector<BurntRange>{{"k", 2, 10, {}}});  // the held block was dropped
    CHECK(value(a.next("k")) == 11);
    CHECK(value(a.raise("k", 100)) == 100);
    CHECK(value(a.high_water("k")) == 100);
    CHECK(value(a.next("k")) == 101);
    s.fence->fail(HaErrc::not_active);
    CHECK(fails_with(a.raise("k", 1000), HaErrc::not_active));
    CHECK(value(a.high_water("k")) == 110);
}

TEST_CASE("while partitioned the held block still serves values, then allocation stops",
          "[ha][unit]") {
    Store s;
    NonceAllocator a(s.ca, s.fence, options(AllocationMode::fast, 3));
    CHECK(value(a.next("k")) == 1);
    s.ca->partition(true);
    CHECK(value(a.next("k")) == 2);
    CHECK(value(a.next("k")) == 3);
    auto r = a.next("k");
    REQUIRE(fails_with(r, HaErrc::allocation_stopped));
    CHECK_THAT(r.error().message(), Catch::Contains("partitioned"));
    CHECK(a.stats().burnt == 0);  // nothing was sent, so nothing is lost
    s.ca->partition(false);
    CHECK(value(a.next("k")) == 4);
}

TEST_CASE("allocation modes have stable names and counters their own keys", "[ha][unit]") {
    CHECK(signet::ha::to_string(AllocationMode::fast) == "fast");
    CHECK(signet::ha::parse_allocation_mode("strict") == AllocationMode::strict);
    CHECK(signet::ha::to_string(AllocationMode::dense) == "dense");
    CHECK(signet::ha::parse_allocation_mode("dense") == AllocationMode::dense);
    CHECK_FALSE(signet::ha::parse_allocation_mode("eventual"));
    CHECK(signet::ha::counter_key(kPrefix, "key-1") == "/signet/t/counters/key-1");
}

// Strict mode: values are B + R * 1000 + i for a batch committed at store revision R.
namespace {
std::string record(const Store& s) {
    for (const auto& kv : s.store->dump(kPrefix + "counters/")) return kv.value;
    return {};
}
}  // namespace

TEST_CASE(
    "strict mode: values derive from each batch's revision and increase in the order the calls "
    "completed across appliances",
    "[ha][unit]") {
    Store s;
    NonceAllocator a(s.ca, s.fence, options(AllocationMode::strict, 1000));
    NonceAllocator b(s.cb, s.fence, options(AllocationMode::strict, 1000));
    std::vector<std::uint64_t> got;
    for (NonceAllocator* x : {&a, &b, &b, &a, &a, &b}) {
        got.push_back(value(x->next("k")));
        // A batch of one at the revision its txn created.
        CHECK(got.back() == static_cast<std::uint64_t>(s.store->revision()) * 1000);
    }
    CHECK(std::is_sorted(got.begin(), got.end()));
    CHECK(std::set<std::uint64_t>(got.begin(), got.end()).size() == got.size());
    CHECK(record(s) == "s0");
    CHECK(value(a.high_water("k")) == got.back() + 999);
    CHECK(a.stats().conflicts + b.stats().conflicts == 0);
    CHECK(a.stats().burnt + b.stats().burnt == 0);
}

TEST_CASE("strict mode: the two appliances' batches commit side by side without a conflict",
          "[ha][unit]") {
    Store s;
    NonceAllocator a(s.ca, s.fence, options(AllocationMode::strict, 1000));
    NonceAllocator b(s.cb, s.fence, options(AllocationMode::strict, 1000));
    const std::uint64_t first = value(a.next("k"));  // the record exists from here on
    std::uint64_t peer = 0;
    bool once = false;
    s.ca->before_txn([&] {
        if (!std::exchange(once, true)) peer = value(b.next("k"));  // commits first
    });
    const std::uint64_t mine = value(a.next("k"));
    CHECK(first < peer);
    CHECK(peer < mine);  // committed later, so a higher revision
    CHECK(s.ca->txns() == 2);
    CHECK(a.stats().conflicts == 0);
    CHECK(b.stats().conflicts == 0);
}

TEST_CASE("strict mode: a batch whose reply is lost is sent again and nothing is burnt",
          "[ha][unit]") {
    Store s;
    NonceAllocator a(s.ca, s.fence, options(AllocationMode::strict, 1000));
    std::vector<BurntRange> burnt;
    a.on_burn([&](const BurntRange& r) { burnt.push_back(r); });
    const std::uint64_t before = value(a.next("k"));
    s.ca->inject(Fault::lost_reply, 1, true);  // applied at the next revision, reply lost
    const std::int64_t lost_rev = s.store->revision() + 1;
    const std::uint64_t v = value(a.next("k"));
    CHECK(v > before);
    // The lost txn's revision is nobody's: the value came from the retry's, above it.
    CHECK(v / 1000 > static_cast<std::uint64_t>(lost_rev));
    CHECK(a.stats().unknown == 1);
    CHECK(a.stats().issued == 2);
    CHECK(burnt.empty());
}

TEST_CASE(
    "strict mode takes over a decimal mark from a raise or another mode and never goes below "
    "it, and the other modes take over its record",
    "[ha][unit]") {
    Store s;
    NonceAllocator fast(s.ca, s.fence, options(AllocationMode::fast, 10));
    NonceAllocator strict(s.cb, s.fence, options(AllocationMode::strict, 1000));
    CHECK(value(fast.next("k")) == 1);
    CHECK(value(fast.raise("k", 5'000'000)) == 5'000'000);
    const std::uint64_t v1 = value(strict.next("k"));
    CHECK(record(s) == "s5000000");
    CHECK(v1 > 5'000'000);
    CHECK(v1 == 5'000'000 + static_cast<std::uint64_t>(s.store->revision()) * 1000);
    // A raise below the mark the record stands for changes nothing; above it, it lifts the base.
    const std::uint64_t hw = value(strict.high_water("k"));
    CHECK(hw == v1 + 999);
    CHECK(value(strict.raise("k", 10)) == hw);
    CHECK(value(strict.raise("k", hw + 1'000'000)) == hw + 1'000'000);
    const std::uint64_t v2 = value(strict.next("k"));
    CHECK(v2 > hw + 1'000'000);
    // Fast and dense allocate above the strict record's mark.
    NonceAllocator dense(s.ca, s.fence, options(AllocationMode::dense, 1000));
    const std::uint64_t hw2 = value(strict.high_water("k"));
    CHECK(hw2 == v2 + 999);
    const std::uint64_t v3 = value(dense.next("k"));
    CHECK(v3 == hw2 + 1);
    CHECK(value(fast.next("k")) > v3);
}

TEST_CASE("counter records read as marks in both forms, and anything else is refused",
          "[ha][unit]") {
    using signet::ha::counter_mark;
    CHECK(value(counter_mark("", 0)) == 0);
    CHECK(value(counter_mark("12", 7)) == 12);
    CHECK(value(counter_mark("s5", 7)) == 5 + 7 * 1000 + 999);
    CHECK_FALSE(counter_mark("s", 7).has_value());
    CHECK_FALSE(counter_mark("x12", 7).has_value());
    CHECK_FALSE(counter_mark("12 ", 7).has_value());
    CHECK_FALSE(counter_mark("s18446744073709551615", 7).has_value());  // overflows
}

namespace {
// Sends every call to a coordinator the test can swap: an etcd restored from an older snapshot
// while the appliance runs.
class SwitchedCoordinator final : public signet::ha::Coordinator {
public:
    explicit SwitchedCoordinator(std::shared_ptr<Coordinator> to) : to_(std::move(to)) {}
    void use(std::shared_ptr<Coordinator> to) { to_ = std::move(to); }

    Result<signet::ha::RangeResponse> range(const std::string& key, const std::string& end,
                                            signet::ha::Milliseconds t) override {
        return to_->range(key, end, t);
    }
    Result<signet::ha::TxnResponse> txn(const signet::ha::TxnRequest& r,
                                        signet::ha::Milliseconds t) override {
        return to_->txn(r, t);
    }
    Result<signet::ha::Lease> lease_grant(signet::ha::Milliseconds ttl,
                                          signet::ha::Milliseconds t) override {
        return to_->lease_grant(ttl, t);
    }
    Result<signet::ha::Milliseconds> lease_keepalive(std::int64_t id,
                                                     signet::ha::Milliseconds t) override {
        return to_->lease_keepalive(id, t);
    }
    Result<void> lease_revoke(std::int64_t id, signet::ha::Milliseconds t) override {
        return to_->lease_revoke(id, t);
    }
    Result<std::unique_ptr<signet::ha::Watch>> watch(const std::string& key, const std::string& end,
                                                     std::int64_t start,
                                                     signet::ha::WatchHandlers h) override {
        return to_->watch(key, end, start, std::move(h));
    }
    std::vector<signet::ha::MemberStatus> members(signet::ha::Milliseconds t) override {
        return to_->members(t);
    }

private:
    std::shared_ptr<Coordinator> to_;
};
}  // namespace

TEST_CASE(
    "no mode reissues this appliance's values when etcd comes back from an older snapshot with "
    "the same record at a lower revision",
    "[ha][unit]") {
    const auto mode = GENERATE(AllocationMode::strict, AllocationMode::dense, AllocationMode::fast);
    INFO(signet::ha::to_string(mode));
    Store now;
    auto older = std::make_shared<FakeStore>(now.clock);
    auto sw = std::make_shared<SwitchedCoordinator>(now.ca);
    NonceAllocator a(sw, now.fence, options(mode, 10));
    std::set<std::uint64_t> seen;
    for (int i = 0; i < 20; ++i) REQUIRE(seen.insert(value(a.next("k"))).second);
    // The snapshot: the same history cut short, so the record matches at a lower revision.
    {
        NonceAllocator earlier(std::make_shared<FakeCoordinator>(older), now.fence,
                               options(mode, 10));
        for (int i = 0; i < 5; ++i) (void)value(earlier.next("k"));
    }
    REQUIRE(older->revision() < now.store->revision());
    sw->use(std::make_shared<FakeCoordinator>(older));
    a.drop_blocks("etcd restored");
    const std::uint64_t top = *seen.rbegin();
    for (int i = 0; i < 20; ++i) {
        const std::uint64_t v = value(a.next("k"));
        CHECK(v > top);
        CHECK(seen.insert(v).second);
    }
}
