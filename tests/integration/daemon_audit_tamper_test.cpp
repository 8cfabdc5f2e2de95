// Standalone appliance: the hash-chained audit log written by the real signetd is checked offline
// by `signetctl audit verify --db` and online by POST /v1/audit/verify. Records are edited,
// deleted and reordered with the sqlite3 C API while the daemon is stopped; verification must fail
// and name the first bad record, and an untouched log must verify.
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <memory>
#include <stdexcept>

#include "audit_log.hpp"
#include "signet_test/daemon_api.hpp"
#include "signet_test/daemon_harness.hpp"
#include "signet_test/temp_dir.hpp"
#include "signet_test/test_hsm.hpp"

namespace test = signet::test;
namespace json = boost::json;
namespace fs = std::filesystem;
using test::ApiClient;

namespace {

struct SqliteClose {
    void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};

// Runs `statements` on the database file, as an attacker with file access would.
void tamper(const fs::path& db_path, const std::string& statements) {
    sqlite3* raw = nullptr;
    const int rc = sqlite3_open_v2(db_path.c_str(), &raw, SQLITE_OPEN_READWRITE, nullptr);
    const std::unique_ptr<sqlite3, SqliteClose> db(raw);
    if (rc != SQLITE_OK) throw std::runtime_error("sqlite3_open_v2 " + db_path.string());
    char* err = nullptr;
    if (sqlite3_exec(db.get(), statements.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
        const std::string msg = err ? err : "?";
        sqlite3_free(err);
        throw std::runtime_error("sqlite3_exec: " + msg + " in: " + statements);
    }
}

// Rewrites record `seq`'s details and recomputes its own hash with the documented formula: a
// consistent forgery of one record, which only the next record's link can reveal.
void forge(const fs::path& db_path, std::uint64_t seq) {
    auto db = signet::daemon::Db::open(db_path, false).value();
    auto st =
        db.prepare("SELECT ts, actor, action, subject, outcome, prev_hash FROM audit WHERE seq = ?")
            .value();
    st.bind(1, seq);
    REQUIRE(st.step().value());
    const signet::daemon::AuditEntry forged{st.text(1), st.text(2), st.text(3), st.text(4),
                                            R"({"forged":true})"};
    const signet::Bytes hash =
        signet::daemon::AuditLog::record_hash(st.blob(5), seq, st.text(0), forged);
    auto up = db.prepare("UPDATE audit SET details = ?, hash = ? WHERE seq = ?").value();
    up.bind(1, forged.details_json).bind(2, hash).bind(3, seq);
    REQUIRE(up.run().has_value());
}

// A stopped appliance whose log holds records of many kinds (made once per test process).
struct AuditedStore {
    test::ProvisionedDaemon appliance;
    std::uint64_t records = 0;

    AuditedStore() {
        ApiClient admin = appliance.api(appliance.admin);
        ApiClient signer = appliance.api(appliance.signer);
        const std::string key = test::str(test::create_key(admin, "ecdsa-p256", "audited"), "id");
        test::sign(signer, key, {{"digest", test::sha256_hex("a")}, {"nonce", true}});
        test::sign(signer, key, {{"digest", test::sha256_hex("b")}});
        CHECK(signer.post("/v1/keys/" + key + "/nonces", json::object{}).status == 201);
        CHECK(ApiClient(appliance.daemon, "sgt_wrong").get("/v1/keys").status == 401);
        CHECK(admin.post("/v1/keys/" + key + "/disable", json::object{}).status == 200);
        records = test::audit_records(admin).size();
        const auto st = appliance.daemon.stop();  // flushes the plain-signature tally
        INFO(st.describe());
        REQUIRE(st.exited_with(0));
        ++records;  // the sign.plain tally written at shutdown
    }
};

AuditedStore& audited_store() {
    static AuditedStore store;
    return store;
}

// A private copy of the store's database files.
fs::path copy_db(const test::TempDir& dir) {
    const fs::path src = audited_store().appliance.daemon.db_path();
    for (const char* suffix : {"", "-wal"}) {
        const fs::path from = src.string() + suffix;
        if (fs::exists(from)) fs::copy_file(from, dir.path() / ("signet.db" + std::string(suffix)));
    }
    return dir.path() / "signet.db";
}

test::ProcessOutcome verify_offline(const fs::path& db) {
    return test::run_signetctl({"audit", "verify", "--db", db.string()});
}

// CHECKs that offline verification fails and names `seq` as the first bad record.
void check_broken_at(const fs::path& db, std::uint64_t seq) {
    const auto out = verify_offline(db);
    INFO(out.status.describe() << "\n" << out.out << out.err);
    CHECK(out.status.exited_with(1));
    CHECK(out.out.find("BROKEN at record " + std::to_string(seq) + ":") != std::string::npos);
}

}  // namespace

TEST_CASE("signetctl audit verify accepts the untouched log and names the first tampered record",
          "[daemon][integration][audit]") {
    const AuditedStore& store = audited_store();
    REQUIRE(store.records >= 10);
    const test::TempDir dir("signet-audit");
    const fs::path db = copy_db(dir);

    SECTION("untouched") {
        const auto out = verify_offline(db);
        INFO(out.out << out.err);
        CHECK(out.status.exited_with(0));
        CHECK(out.out.find("audit log ok: " + std::to_string(store.records) + " records") !=
              std::string::npos);
    }
    SECTION("a record's details edited") {
        tamper(db, R"(UPDATE audit SET details = '{"nonce":999}' WHERE seq = 5)");
        check_broken_at(db, 5);
    }
    SECTION("the outcome of the last record edited") {
        tamper(db,
               "UPDATE audit SET outcome = 'denied' WHERE seq = " + std::to_string(store.records));
        check_broken_at(db, store.records);
    }
    SECTION("a record rewritten with a matching hash breaks the next link") {
        forge(db, 4);
        check_broken_at(db, 5);
    }
    SECTION("a record deleted") {
        tamper(db, "DELETE FROM audit WHERE seq = 3");
        check_broken_at(db, 4);
    }
    SECTION("a record deleted and the rest renumbered") {
        tamper(db, "DELETE FROM audit WHERE seq = 3; UPDATE audit SET seq = seq - 1 WHERE seq > 3");
        check_broken_at(db, 3);
    }
    SECTION("two records swapped") {
        tamper(db,
               "UPDATE audit SET seq = -1 WHERE seq = 6; UPDATE audit SET seq = 6 WHERE seq = 7; "
               "UPDATE audit SET seq = 7 WHERE seq = -1");
        check_broken_at(db, 6);
    }
    SECTION("the first record edited") {
        tamper(db, "UPDATE audit SET actor = 'admin' WHERE seq = 1");
        check_broken_at(db, 1);
    }
    // The chain alone cannot see its own tail cut off; the HSM-signed checkpoint written at
    // shutdown covers the last record.
    SECTION("the newest records deleted") {
        tamper(db, "DELETE FROM audit WHERE seq >= " + std::to_string(store.records - 1));
        check_broken_at(db, store.records - 1);
    }
    SECTION("the last record rewritten with a matching hash") {
        forge(db, store.records);
        check_broken_at(db, store.records);
    }
    SECTION("a checkpoint signature forged") {
        tamper(db, "UPDATE audit_checkpoints SET signature = X'3006020101020101'");
        check_broken_at(db, store.records);
    }
}

TEST_CASE("offline verification pins the appliance's HSM audit key",
          "[daemon][integration][audit]") {
    const AuditedStore& store = audited_store();
    const test::TempDir dir("signet-audit-key");
    const fs::path db = copy_db(dir);
    const fs::path key = store.appliance.daemon.db_path().parent_path() / "audit-key.pem";
    REQUIRE(fs::exists(key));

    const auto pinned =
        test::run_signetctl({"audit", "verify", "--db", db.string(), "--audit-key", key.string()});
    INFO(pinned.out << pinned.err);
    CHECK(pinned.status.exited_with(0));
    CHECK(pinned.out.find("signed by the pinned audit key") != std::string::npos);

    // Another key (the TLS identity's public key is a valid P-256 key that never signed these).
    const fs::path other = dir.path() / "other.pem";
    REQUIRE(test::run_command(
                "openssl x509 -in '" +
                (store.appliance.daemon.db_path().parent_path() / "tls" / "cert.pem").string() +
                "' -pubkey -noout > '" + other.string() + "'")
                .status == 0);
    const auto wrong = test::run_signetctl(
        {"audit", "verify", "--db", db.string(), "--audit-key", other.string()});
    INFO(wrong.out << wrong.err);
    CHECK(wrong.status.exited_with(1));
    CHECK(wrong.out.find("not signed by the appliance's audit key") != std::string::npos);
}

TEST_CASE("the running appliance reports a tampered audit log through the API and signetctl",
          "[daemon][integration][audit]") {
    test::ProvisionedDaemon p;
    {
        ApiClient admin = p.api(p.admin);
        test::create_key(admin, "ecdsa-p256", "k1");
        test::create_key(admin, "ecdsa-p256", "k2");
        const auto ok = admin.post("/v1/audit/verify", json::object{});
        REQUIRE(ok.status == 200);
        CHECK(ok.object().at("ok").as_bool());
    }
    REQUIRE(p.daemon.stop().exited_with(0));
    tamper(p.daemon.db_path(), R"(UPDATE audit SET subject = 'someone-else' WHERE seq = 4)");
    // Tampering need not leave valid JSON behind; auditors must still be able to read the log.
    tamper(p.daemon.db_path(), R"(UPDATE audit SET details = '{"broken' WHERE seq = 5)");
    p.daemon.start();
    {
        ApiClient auditor = p.api(p.auditor);
        const auto page = auditor.get("/v1/audit?after=3&limit=2");
        INFO(page.describe());
        REQUIRE(page.status == 200);
        const auto& records = page.object().at("records").as_array();
        REQUIRE(records.size() == 2);
        CHECK(test::str(records[0].as_object(), "subject") == "someone-else");
        CHECK(records[1].as_object().at("details") == json::value(R"({"broken)"));
    }

    for (const auto& who : {p.admin, p.auditor}) {
        ApiClient api = p.api(who);
        const auto v = api.post("/v1/audit/verify", json::object{});
        INFO(v.describe());
        REQUIRE(v.status == 200);
        CHECK_FALSE(v.object().at("ok").as_bool());
        CHECK(test::u64(v.object(), "first_bad_seq") == 4);
        CHECK(test::str(v.object(), "reason").find("record 4") != std::string::npos);
    }
    const test::TempDir dir("signet-audit");
    const fs::path token = dir.write_file("token", p.auditor.token + "\n",
                                          fs::perms::owner_read | fs::perms::owner_write);
    const auto out =
        test::run_signetctl({"--url", p.daemon.url(), "--fingerprint", p.daemon.fingerprint(),
                             "--token-file", token.string(), "audit", "verify"});
    INFO(out.out << out.err);
    CHECK(out.status.exited_with(1));
    CHECK(out.out.find("\"first_bad_seq\":4") != std::string::npos);
}
