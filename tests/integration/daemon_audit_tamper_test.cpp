// Standalone appliance: the hash-chained audit log written by the real signetd is checked offline
// by `signetctl audit verify --db` and online by POST /v1/audit/verify. Records are edited,
// deleted and reordered with the sqlite3 C API while the daemon is stopped; verification must fail
// and name the first bad record, and an untouched log must verify.
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "audit_log.hpp"
#include "signet/core/bytes.hpp"
#include "signet_test/crypto_oracle.hpp"
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
        const std::string envelope = test::str(
            test::create_key(admin, "ecdsa-p256", "audited-envelope", {{"nonces", "envelope"}}),
            "id");
        const std::string reserved = test::str(
            test::create_key(admin, "ecdsa-p256", "audited-reserved", {{"nonces", "reserved"}}),
            "id");
        test::sign(signer, envelope, {{"digest", test::sha256_hex("a")}, {"nonce", true}});
        test::sign(signer, key, {{"digest", test::sha256_hex("b")}});
        CHECK(signer.post("/v1/keys/" + reserved + "/nonces", json::object{}).status == 201);
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

// Offline, pinned to the audit key the appliance exported to <data_dir>/audit-key.pem.
test::ProcessOutcome verify_pinned(const fs::path& db, const test::SignetDaemon& appliance) {
    return test::run_signetctl({"audit", "verify", "--db", db.string(), "--audit-key",
                                (appliance.data_dir() / "audit-key.pem").string()});
}

// The records the database's checkpoints cover, oldest first.
std::vector<std::uint64_t> checkpoint_seqs(const fs::path& db_path) {
    auto db = signet::daemon::Db::open(db_path, false).value();
    auto st = db.prepare("SELECT seq FROM audit_checkpoints ORDER BY seq").value();
    std::vector<std::uint64_t> out;
    while (st.step().value()) out.push_back(st.uint64(0));
    return out;
}

// Adds audit records (key.create) to a running appliance.
void some_activity(const test::ProvisionedDaemon& p, const std::string& label) {
    ApiClient admin = p.api(p.admin);
    test::create_key(admin, "ecdsa-p256", label);
}

// Stops the appliance cleanly: the final checkpoint covers the newest record.
void stop_cleanly(test::ProvisionedDaemon& p) {
    const auto st = p.daemon.stop();
    INFO(st.describe() << "\n" << p.daemon.log());
    REQUIRE(st.exited_with(0));
}

json::object verify_online(const test::ProvisionedDaemon& p) {
    ApiClient admin = p.api(p.admin);
    const auto v = admin.post("/v1/audit/verify", json::object{});
    INFO(v.describe());
    REQUIRE(v.status == 200);
    return v.object();
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

TEST_CASE("pinned offline verification fails when every checkpoint was deleted",
          "[daemon][integration][audit]") {
    const AuditedStore& store = audited_store();
    const test::TempDir dir("signet-audit");
    const fs::path db = copy_db(dir);
    REQUIRE_FALSE(checkpoint_seqs(db).empty());
    {
        const auto untouched = verify_pinned(db, store.appliance.daemon);
        INFO(untouched.out << untouched.err);
        CHECK(untouched.status.exited_with(0));
    }
    // Without its checkpoints the chain can be rewritten consistently by anyone with the file: the
    // newest record is replaced with a matching hash, so only a missing checkpoint can tell.
    tamper(db, "DELETE FROM audit_checkpoints");
    forge(db, store.records);
    const auto out = verify_pinned(db, store.appliance.daemon);
    INFO(out.status.describe() << "\n" << out.out << out.err);
    CHECK(out.status.exited_with(1));
    CHECK(out.out.find("BROKEN at record 1:") != std::string::npos);
    CHECK(out.out.find("no HSM-signed checkpoint") != std::string::npos);
}

TEST_CASE(
    "checkpoints are chained: deleting a middle one breaks the next, and the audit key "
    "is created once, audited",
    "[daemon][integration][audit]") {
    test::ProvisionedDaemon p;
    // Three runs, each ending with a checkpoint over its newest record.
    some_activity(p, "run-1");
    stop_cleanly(p);
    for (const char* run : {"run-2", "run-3"}) {
        p.daemon.start();
        some_activity(p, run);
        stop_cleanly(p);
    }
    const auto seqs = checkpoint_seqs(p.daemon.db_path());
    REQUIRE(seqs.size() == 3);
    {
        const auto untouched = verify_pinned(p.daemon.db_path(), p.daemon);
        INFO(untouched.out << untouched.err);
        CHECK(untouched.status.exited_with(0));
        CHECK(untouched.out.find("3 HSM-signed checkpoints") != std::string::npos);
    }
    {
        // The audit key was generated at the first start only, and that is itself audited.
        auto db = signet::daemon::Db::open(p.daemon.db_path(), false).value();
        auto st = db.prepare(
                        "SELECT actor, outcome, details FROM audit WHERE action = "
                        "'audit.key_created'")
                      .value();
        REQUIRE(st.step().value());
        CHECK(st.text(0) == "system");
        CHECK(st.text(1) == "ok");
        const json::value details = json::parse(st.text(2));
        std::ifstream pem_in(p.daemon.data_dir() / "audit-key.pem");
        const std::string pem((std::istreambuf_iterator<char>(pem_in)),
                              std::istreambuf_iterator<char>());
        CHECK(test::str(details.as_object(), "spki_sha256") ==
              signet::hex_encode(test::oracle_sha256(test::spki_of_pem(pem))));
        CHECK_FALSE(st.step().value());
    }

    tamper(p.daemon.db_path(),
           "DELETE FROM audit_checkpoints WHERE seq = " + std::to_string(seqs[1]));
    const auto out = verify_offline(p.daemon.db_path());
    INFO(out.status.describe() << "\n" << out.out << out.err);
    CHECK(out.status.exited_with(1));
    CHECK(out.out.find("BROKEN at record " + std::to_string(seqs[2]) + ":") != std::string::npos);
    CHECK(out.out.find("does not verify") != std::string::npos);
}

TEST_CASE("the HSM anchor reveals deleted newest checkpoints and records, across restarts",
          "[daemon][integration][audit]") {
    test::ProvisionedDaemon p;
    some_activity(p, "kept");
    stop_cleanly(p);  // checkpoint 1
    p.daemon.start();
    some_activity(p, "deleted-1");
    some_activity(p, "deleted-2");
    stop_cleanly(p);  // checkpoint 2, also recorded in the HSM
    const auto seqs = checkpoint_seqs(p.daemon.db_path());
    REQUIRE(seqs.size() == 2);
    const std::uint64_t kept = seqs[0], anchored = seqs[1];

    // Cut the log back to checkpoint 1: what remains is a consistent, genuinely signed log.
    tamper(p.daemon.db_path(), "DELETE FROM audit_checkpoints WHERE seq > " + std::to_string(kept) +
                                   "; DELETE FROM audit WHERE seq > " + std::to_string(kept));
    {
        const auto offline = verify_pinned(p.daemon.db_path(), p.daemon);
        INFO(offline.out << offline.err);
        CHECK(offline.status.exited_with(0));  // the database alone cannot tell
    }
    p.daemon.start();
    auto check_reported = [&] {
        const json::object v = verify_online(p);
        CHECK_FALSE(v.at("ok").as_bool());
        CHECK(test::u64(v, "first_bad_seq") == anchored);
        CHECK(test::str(v, "reason").find("HSM") != std::string::npos);
    };
    check_reported();
    // New activity and a clean restart (which writes a checkpoint of the new head) must not
    // launder the cut: the HSM keeps pointing at the record that is gone.
    some_activity(p, "after-the-cut");
    stop_cleanly(p);
    p.daemon.start();
    check_reported();
}
