// The standalone store's guarantees without the daemon around them: the audit hash chain, the
// watermark guard and the nonce authority on a temporary SQLite file. A "crash" here is dropping
// the objects without finishing what they started, then loading the same file again: the
// deterministic version of the kill -9 in daemon_crash_test.
#include <catch2/catch.hpp>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "audit_log.hpp"
#include "committer.hpp"
#include "db.hpp"
#include "nonce_authority.hpp"
#include "signet/core/clock.hpp"
#include "signet/core/logger.hpp"
#include "signet_test/result_matchers.hpp"
#include "signet_test/temp_dir.hpp"
#include "watermark_guard.hpp"

namespace sd = signet::daemon;
namespace test = signet::test;
using signet::Bytes;
using signet::Errc;

namespace {

// One open store: a writer behind a Committer and a reader, like the appliance has.
struct Store {
    explicit Store(const std::filesystem::path& path) {
        auto writer = sd::Db::open(path, true);
        REQUIRE_OK(writer);
        REQUIRE_OK(sd::migrate(*writer));
        committer = std::make_shared<sd::Committer>(std::move(writer).value(),
                                                    std::make_shared<signet::NullLogger>());
        auto r = sd::Db::open(path, false);
        REQUIRE_OK(r);
        reader.emplace(std::move(r).value());
    }
    std::shared_ptr<sd::Committer> committer;
    std::optional<sd::Db> reader;
    std::shared_ptr<const signet::Clock> clock = std::make_shared<signet::SystemClock>();

    std::vector<signet::web::AuditRecord> audit() {
        auto t = sd::AuditLog::tail(*reader, 0, 1000);
        REQUIRE_OK(t);
        return *t;
    }
    std::vector<std::uint64_t> gaps(const std::string& key) {
        std::vector<std::uint64_t> out;
        for (const auto& r : audit()) {
            if (r.action != "nonce.gap" || r.subject != key) continue;
            const auto at = r.details_json.find("\"nonce\":") + 8;
            out.push_back(std::stoull(r.details_json.substr(at)));
        }
        return out;
    }
    void append(const std::string& action) { REQUIRE_OK(committer->submit(appending(action))); }
    // Values of `key` with a committed nonce_pending row.
    std::vector<std::uint64_t> pending(const std::string& key) {
        auto st =
            reader->prepare("SELECT value FROM nonce_pending WHERE key_id = ? ORDER BY value");
        REQUIRE_OK(st);
        st->bind(1, key);
        std::vector<std::uint64_t> out;
        for (auto row = st->step(); row && *row; row = st->step()) out.push_back(st->uint64(0));
        return out;
    }
    std::vector<std::string> actions() {
        std::vector<std::string> out;
        for (const auto& r : audit()) out.push_back(r.action);
        return out;
    }
    // A work that appends one audit record.
    static sd::Committer::Work appending(const std::string& action) {
        return [action](sd::Db& txn) -> signet::Result<void> {
            SIGNET_TRY(sd::AuditLog::append(txn, {"test", action, "s", "ok", "{}"},
                                            "2026-01-01T00:00:00.000Z"));
            return signet::ok();
        };
    }
};

// Holds the committer's writer thread inside a work (its own transaction) until destroyed, so
// that everything posted meanwhile runs afterwards as one batch: one transaction, one commit.
class WriterHold {
public:
    explicit WriterHold(sd::Committer& committer) {
        auto entered = entered_.get_future();
        committer.post(
            [released = released_.get_future().share(), this](sd::Db&) -> signet::Result<void> {
                entered_.set_value();
                // Bounded: a failed test must not hang the writer.
                (void)released.wait_for(std::chrono::seconds(30));
                return signet::ok();
            });
        REQUIRE(entered.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    }
    ~WriterHold() { released_.set_value(); }
    WriterHold(const WriterHold&) = delete;
    WriterHold& operator=(const WriterHold&) = delete;

private:
    std::promise<void> entered_, released_;
};

// Work that stages `t`'s release and then succeeds or fails (a later step of the same
// transaction, e.g. its audit record, going wrong).
sd::Committer::Work release(sd::LocalNonceAuthority& nonces, const sd::NonceTicket& t,
                            bool fail_after = false) {
    return [&nonces, t, fail_after](sd::Db& txn) -> signet::Result<void> {
        SIGNET_TRY(nonces.stage_release(txn, t));
        if (fail_after) return signet::make_error(Errc::internal, "injected failure after staging");
        return signet::ok();
    };
}

Bytes hash_of(char c) { return Bytes(32, static_cast<std::uint8_t>(c)); }

}  // namespace

TEST_CASE("the audit chain verifies and names the first edited, deleted or reordered record",
          "[daemon][integration][store][audit]") {
    test::TempDir dir("signet-store");
    Store s(dir.path() / "signet.db");
    for (int i = 1; i <= 6; ++i) s.append("test." + std::to_string(i));
    auto v = sd::AuditLog::verify(*s.reader);
    REQUIRE_OK(v);
    CHECK(v->ok);
    CHECK(v->records == 6);

    std::string sql;
    std::uint64_t bad = 0;
    SECTION("edited") {
        sql = "UPDATE audit SET action = 'test.x' WHERE seq = 2";
        bad = 2;
    }
    SECTION("deleted") {
        sql = "DELETE FROM audit WHERE seq = 4";
        bad = 5;
    }
    SECTION("reordered") {
        sql =
            "UPDATE audit SET seq = 0 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 4; "
            "UPDATE audit SET seq = 4 WHERE seq = 0";
        bad = 3;
    }
    REQUIRE_OK(s.reader->exec(sql));
    v = sd::AuditLog::verify(*s.reader);
    REQUIRE_OK(v);
    CHECK_FALSE(v->ok);
    CHECK(v->first_bad_seq == bad);
    CHECK(v->reason.find("record " + std::to_string(bad)) == 0);
}

TEST_CASE("the watermark guard refuses regressions and keeps its watermark across a reload",
          "[daemon][integration][store][watermark]") {
    test::TempDir dir("signet-store");
    const auto path = dir.path() / "signet.db";
    {
        Store s(path);
        sd::LocalWatermarkGuard guard;
        REQUIRE_OK(guard.load(*s.reader));
        auto lease = guard.begin("k", {5, 0}, hash_of('a'), true);
        REQUIRE_OK(lease);
        REQUIRE_OK(s.committer->submit([&](sd::Db& txn) { return guard.stage(txn, **lease); }));
        (*lease)->committed();
        lease->reset();  // releases the key

        auto lower = guard.begin("k", {4, 9}, hash_of('b'), true);
        REQUIRE_FALSE(lower.has_value());
        CHECK(lower.error().is(Errc::watermark_regression));
        auto other_payload = guard.begin("k", {5, 0}, hash_of('b'), true);
        REQUIRE_FALSE(other_payload.has_value());
        CHECK(other_payload.error().is(Errc::watermark_regression));
        CHECK(guard.begin("k", {5, 0}, hash_of('a'), true).has_value());  // the same payload again
        // Not when the caller says an equal watermark cannot be the same signature (a new nonce).
        auto no_equal = guard.begin("k", {5, 0}, hash_of('a'), false);
        REQUIRE_FALSE(no_equal.has_value());
        CHECK(no_equal.error().is(Errc::watermark_regression));
        CHECK(guard.begin("k", {5, 1}, hash_of('c'), false).has_value());  // higher: fine
        // A key's watermarks keep the arity of the first one ([5,0] < [5,0,1] would otherwise
        // make [5,0] signable twice under two spellings).
        for (const sd::Watermark& w : {sd::Watermark{5, 0, 1}, sd::Watermark{6}}) {
            auto other_arity = guard.begin("k", w, hash_of('c'), true);
            REQUIRE_FALSE(other_arity.has_value());
            CHECK(other_arity.error().is(Errc::unprocessable));
        }
        CHECK(guard.begin("other", {1}, hash_of('c'), true).has_value());  // per key
        // An attempt that never became durable leaves the watermark where it was.
        CHECK(guard.begin("k", {9, 0}, hash_of('d'), true).has_value());
        CHECK(guard.current("k") == sd::Watermark{5, 0});
    }
    Store again(path);
    sd::LocalWatermarkGuard reloaded;
    REQUIRE_OK(reloaded.load(*again.reader));
    CHECK(reloaded.current("k") == sd::Watermark{5, 0});
    auto lower = reloaded.begin("k", {5, 0}, hash_of('z'), true);
    REQUIRE_FALSE(lower.has_value());
    CHECK(lower.error().is(Errc::watermark_regression));
    auto other_arity = reloaded.begin("k", {5}, hash_of('a'), true);
    REQUIRE_FALSE(other_arity.has_value());
    CHECK(other_arity.error().is(Errc::unprocessable));
}

TEST_CASE("nonces allocated but unreleased below a durable one are audited as gaps after a crash",
          "[daemon][integration][store][nonce]") {
    test::TempDir dir("signet-store");
    const auto path = dir.path() / "signet.db";
    {
        Store s(path);
        sd::LocalNonceAuthority nonces(s.committer, s.clock);
        REQUIRE_OK(nonces.load(*s.reader));
        const auto t1 = nonces.next("k");
        const auto t2 = nonces.next("k");
        const auto t3 = nonces.next("k");
        REQUIRE_OK(t3);
        CHECK(t1->value == 1);
        CHECK(t2->value == 2);
        // 2 is released (durably) while 1 is still being signed and 3 was just allocated.
        REQUIRE_OK(
            s.committer->submit([&](sd::Db& txn) { return nonces.stage_release(txn, *t2); }));
        nonces.finish(*t2, true);
        // Crash: 1 and 3 are never finished.
    }
    Store s(path);
    sd::LocalNonceAuthority nonces(s.committer, s.clock);
    REQUIRE_OK(nonces.load(*s.reader));
    // 1 lies below the durable 2: it may have been signed, so it is never issued again.
    CHECK(s.gaps("k") == std::vector<std::uint64_t>{1});
    // 3 never left the process: it may be issued now.
    const auto next = nonces.next("k");
    REQUIRE_OK(next);
    CHECK(next->value == 3);
    auto st = nonces.state("k");
    REQUIRE_OK(st);
    CHECK(st->last_issued == 2);

    // A value whose signing failed is burnt: audited and never reissued, even after a reload.
    nonces.burn(*next, "signing failed: test");
    s.append("barrier");  // runs after the burn's queued work
    CHECK(s.gaps("k") == std::vector<std::uint64_t>{1, 3});
    CHECK(nonces.next("k")->value == 4);
    auto v = sd::AuditLog::verify(*s.reader);
    REQUIRE_OK(v);
    CHECK(v->ok);
}

TEST_CASE("a reserved nonce is claimed by its owner only and consumed once, across reloads",
          "[daemon][integration][store][nonce]") {
    test::TempDir dir("signet-store");
    const auto path = dir.path() / "signet.db";
    std::uint64_t used = 0, kept = 0;
    {
        Store s(path);
        sd::LocalNonceAuthority nonces(s.committer, s.clock);
        REQUIRE_OK(nonces.load(*s.reader));
        const sd::AuditEntry audit{"cl_a", "nonce.reserve", "k", "ok", "{}"};
        auto a = nonces.reserve("k", "cl_a", audit);
        auto b = nonces.reserve("k", "cl_a", audit);
        REQUIRE_OK(b);
        used = *a;
        kept = *b;
        CHECK(kept == used + 1);

        auto foreign = nonces.claim("k", used, "cl_b");
        REQUIRE_FALSE(foreign.has_value());
        CHECK(foreign.error().is(Errc::reservation_invalid));
        auto claim = nonces.claim("k", used, "cl_a");
        REQUIRE_OK(claim);
        auto twice = nonces.claim("k", used, "cl_a");
        REQUIRE_FALSE(twice.has_value());
        CHECK(twice.error().is(Errc::conflict));
        REQUIRE_OK(
            s.committer->submit([&](sd::Db& txn) { return nonces.stage_consume(txn, **claim); }));
        (*claim)->consumed();
        claim->reset();
        auto after = nonces.claim("k", used, "cl_a");
        REQUIRE_FALSE(after.has_value());
        CHECK(after.error().is(Errc::reservation_invalid));
        CHECK(nonces.state("k")->reserved_outstanding == 1);
    }
    Store s(path);
    sd::LocalNonceAuthority nonces(s.committer, s.clock);
    REQUIRE_OK(nonces.load(*s.reader));
    auto used_again = nonces.claim("k", used, "cl_a");
    REQUIRE_FALSE(used_again.has_value());
    CHECK(used_again.error().is(Errc::reservation_invalid));
    auto claim = nonces.claim("k", kept, "cl_a");
    REQUIRE_OK(claim);
    CHECK(nonces.next("k")->value == kept + 1);
    CHECK(s.gaps("k").empty());
}

TEST_CASE("two nonces released in one committed batch leave no pending row and no gap",
          "[daemon][integration][store][nonce]") {
    test::TempDir dir("signet-store");
    const auto path = dir.path() / "signet.db";
    {
        Store s(path);
        sd::LocalNonceAuthority nonces(s.committer, s.clock);
        REQUIRE_OK(nonces.load(*s.reader));
        const sd::NonceTicket t1 = nonces.next("k").value();
        const sd::NonceTicket t2 = nonces.next("k").value();
        const bool higher_first = GENERATE(false, true);
        CAPTURE(higher_first);
        {
            WriterHold hold(*s.committer);
            s.committer->post(release(nonces, higher_first ? t2 : t1));
            s.committer->post(release(nonces, higher_first ? t1 : t2));
        }
        s.append("barrier");
        CHECK(s.pending("k").empty());
        CHECK(nonces.state("k")->last_issued == 2);
        // Neither value is left outstanding in memory: a later release writes no row for them.
        const sd::NonceTicket t3 = nonces.next("k").value();
        REQUIRE_OK(s.committer->submit(release(nonces, t3)));
        CHECK(s.pending("k").empty());
    }
    Store s(path);
    sd::LocalNonceAuthority nonces(s.committer, s.clock);
    REQUIRE_OK(nonces.load(*s.reader));
    CHECK(s.gaps("k").empty());
    CHECK(nonces.next("k")->value == 4);
}

TEST_CASE("a release rolled back below one that commits becomes a pending row, audited as a gap",
          "[daemon][integration][store][nonce]") {
    test::TempDir dir("signet-store");
    const auto path = dir.path() / "signet.db";
    const bool failing_first = GENERATE(true, false);
    CAPTURE(failing_first);
    bool crash = false;
    {
        Store s(path);
        sd::LocalNonceAuthority nonces(s.committer, s.clock);
        REQUIRE_OK(nonces.load(*s.reader));
        const sd::NonceTicket t1 = nonces.next("k").value();
        const sd::NonceTicket t2 = nonces.next("k").value();
        {
            WriterHold hold(*s.committer);
            if (failing_first) s.committer->post(release(nonces, t1, true));
            s.committer->post(release(nonces, t2));
            if (!failing_first) s.committer->post(release(nonces, t1, true));
        }
        s.append("barrier");
        // 2 is durable while 1 may still be signed by someone: 1 must survive a crash as a row.
        CHECK(s.pending("k") == std::vector<std::uint64_t>{1});
        CHECK(nonces.state("k")->last_issued == 2);
        CHECK(s.gaps("k").empty());
        SECTION("the failed signature burns its value") {
            nonces.finish(t1, false);
            CHECK(s.pending("k").empty());
            CHECK(s.gaps("k") == std::vector<std::uint64_t>{1});
        }
        SECTION("a crash before the burn") { crash = true; }
    }
    Store s(path);
    sd::LocalNonceAuthority nonces(s.committer, s.clock);
    REQUIRE_OK(nonces.load(*s.reader));
    CAPTURE(crash);
    CHECK(s.gaps("k") == std::vector<std::uint64_t>{1});  // audited exactly once either way
    CHECK(s.pending("k").empty());
    CHECK(nonces.next("k")->value == 3);
    const auto v = sd::AuditLog::verify(*s.reader);
    REQUIRE_OK(v);
    CHECK(v->ok);
}

TEST_CASE("commit and rollback hooks run exactly once, and a throwing work is an internal error",
          "[daemon][integration][store]") {
    test::TempDir dir("signet-store");
    Store s(dir.path() / "signet.db");
    struct Hooks {
        int commits = 0, rollbacks = 0;  // written on the writer thread, read after its results
    };
    enum class End { ok, error, exception };
    // Appends `action`, registers both hooks, then ends as `end` says.
    auto counted = [](Hooks& h, const std::string& action, End end) -> sd::Committer::Work {
        return [&h, action, end](sd::Db& txn) -> signet::Result<void> {
            txn.on_commit([&h] { ++h.commits; });
            txn.on_rollback([&h] { ++h.rollbacks; });
            SIGNET_TRY(Store::appending(action)(txn));
            if (end == End::error) return signet::make_error(Errc::internal, "injected");
            if (end == End::exception) throw std::runtime_error("injected bug");
            return signet::ok();
        };
    };
    Hooks ok, failed, threw_in_batch, threw, after;
    {
        WriterHold hold(*s.committer);  // one batch: a failing item must not disturb the others
        s.committer->post(counted(ok, "test.ok", End::ok));
        s.committer->post(counted(failed, "test.failed", End::error));
        s.committer->post(counted(threw_in_batch, "test.threw", End::exception));
    }
    const auto r = s.committer->submit(counted(threw, "test.threw", End::exception));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().is(Errc::internal));
    CHECK(r.error().message().find("injected bug") != std::string::npos);
    // The writer survived the exception.
    REQUIRE_OK(s.committer->submit(counted(after, "test.after", End::ok)));

    for (const auto& [name, h, committed] :
         {std::tuple{"ok", &ok, true}, std::tuple{"failed", &failed, false},
          std::tuple{"threw in a batch", &threw_in_batch, false},
          std::tuple{"threw", &threw, false}, std::tuple{"after", &after, true}}) {
        INFO(name);
        CHECK(h->commits == (committed ? 1 : 0));
        CHECK(h->rollbacks == (committed ? 0 : 1));
    }
    CHECK(s.actions() == std::vector<std::string>{"test.ok", "test.after"});
}
