// signetctl backup / restore against the real signetd (docs/ha.md, "Backup and restore"): a backup
// taken while signetd runs, more nonces and watermarks signed after it, then a restore. Whatever
// the restore had to work with (the current store, or only a margin), the next nonce lies above
// every nonce issued before it and no watermark signed before it can be signed again. The refusals
// an operator relies on: signetd running, a corrupt, tampered or newer backup, and no current store
// without a margin. After each refusal the store is untouched.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "db.hpp"
#include "signet_test/daemon_api.hpp"
#include "signet_test/daemon_harness.hpp"
#include "signet_test/temp_dir.hpp"

namespace test = signet::test;
namespace json = boost::json;
namespace fs = std::filesystem;
using signet::daemon::Db;

namespace {

test::ProcessOutcome backup(const test::SignetDaemon& d, const fs::path& out) {
    return test::run_signetctl({"backup", "--db", d.db_path().string(), "--out", out.string()});
}

test::ProcessOutcome restore(const test::SignetDaemon& d, const fs::path& file,
                             std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{"restore", "--backup", file.string(), "--data-dir",
                                  d.data_dir().string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return test::run_signetctl(argv);
}

std::uint64_t sign_nonce(test::ApiClient& signer, const std::string& key) {
    return test::u64(test::sign(signer, key, {{"digest", test::sha256_hex("n")}, {"nonce", true}}),
                     "nonce");
}

test::ApiReply sign_mark(test::ApiClient& signer, const std::string& key, std::uint64_t height,
                         const std::string& payload = "block") {
    return signer.post(
        "/v1/keys/" + key + "/sign",
        json::object{{"digest", test::sha256_hex(payload)}, {"watermark", json::array{height, 0}}});
}

std::string file_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Files in the data directory whose name starts with `prefix`.
std::vector<fs::path> files_starting(const fs::path& dir, const std::string& prefix) {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().filename().string().rfind(prefix, 0) == 0) out.push_back(e.path());
    return out;
}

void exec_sql(const fs::path& db, const std::string& sql) {
    auto d = Db::open(db, false);
    REQUIRE(d.has_value());
    REQUIRE(d->exec(sql).has_value());
    REQUIRE(d->exec("PRAGMA journal_mode=DELETE").has_value());
}

struct Keys {
    std::string nonces, marks;
};

Keys make_keys(test::ApiClient& admin) {
    return {
        test::str(test::create_key(admin, "ecdsa-p256", "nonces", {{"nonces", "envelope"}}), "id"),
        test::str(
            test::create_key(admin, "ecdsa-p256", "validator", {{"watermark_required", true}}),
            "id")};
}

}  // namespace

TEST_CASE(
    "a restore over a readable store keeps each counter, watermark and the audit log at "
    "their highest",
    "[daemon][integration][backup]") {
    test::ProvisionedDaemon p;
    const test::TempDir dir("signet-backup");
    Keys k;
    test::ClientCredentials late;
    {
        auto admin = p.api(p.admin);
        auto signer = p.api(p.signer);
        k = make_keys(admin);
        late = test::create_client(admin, "revoked-later", "signer");
        for (std::uint64_t n = 1; n <= 3; ++n) CHECK(sign_nonce(signer, k.nonces) == n);
        REQUIRE(sign_mark(signer, k.marks, 10).status == 200);

        // Taken while signetd runs and signs.
        const fs::path file = dir.path() / "b1.db";
        const json::object b = test::ok_json(backup(p.daemon, file));
        CHECK(test::str(b, "file") == fs::absolute(file).string());
        CHECK(b.at("counters").as_object().at(k.nonces).to_number<std::uint64_t>() == 3);
        CHECK(json::serialize(b.at("watermarks").as_object().at(k.marks)) == "[10,0]");
        CHECK((fs::status(file).permissions() & fs::perms::all) ==
              (fs::perms::owner_read | fs::perms::owner_write));
        CHECK_FALSE(fs::exists(file.string() + "-wal"));
        // One self-contained file: SQLite's header says rollback journal (1), not WAL (2).
        CHECK(static_cast<int>(file_bytes(file).at(18)) == 1);
        // Never over an existing file.
        test::check_exit(backup(p.daemon, file), 1,
                         {"backup failed", "cannot create", file.string()});

        // Restore is offline: refused while signetd holds the data directory.
        test::check_exit(restore(p.daemon, file), 1, {"restore refused", "stop it first"});
        CHECK(files_starting(p.daemon.data_dir(), "signet.db.").empty());

        // Issued after the backup: the backup does not know these.
        for (std::uint64_t n = 4; n <= 5; ++n) CHECK(sign_nonce(signer, k.nonces) == n);
        REQUIRE(sign_mark(signer, k.marks, 20).status == 200);
        REQUIRE(admin.post("/v1/clients/" + late.id + "/revoke", json::object{}).status == 200);
    }
    REQUIRE(p.daemon.stop().exited_with(0));
    const fs::path file = dir.path() / "b1.db";
    const std::string store_before = file_bytes(p.daemon.db_path());

    SECTION("a corrupt, tampered or newer backup is refused and changes nothing") {
        const fs::path garbage = dir.write_file("garbage.db", std::string(8192, 'x'),
                                                fs::perms::owner_read | fs::perms::owner_write);
        test::check_exit(restore(p.daemon, garbage), 1, {"restore refused", "not a database"});

        const fs::path newer = dir.path() / "newer.db";
        fs::copy_file(file, newer);
        exec_sql(newer,
                 "PRAGMA user_version = " + std::to_string(signet::daemon::kSchemaVersion + 1));
        test::check_exit(restore(p.daemon, newer), 1,
                         {"restore refused", "newer than this Signet"});

        const fs::path tampered = dir.path() / "tampered.db";
        fs::copy_file(file, tampered);
        exec_sql(tampered, "UPDATE audit SET details = '{\"x\":1}' WHERE seq = 2");
        test::check_exit(restore(p.daemon, tampered), 1,
                         {"restore refused", "audit log", "does not verify at record 2"});

        test::check_exit(restore(p.daemon, dir.path() / "missing.db"), 1, {"no backup file"});
        test::check_exit(restore(p.daemon, file, {"--counter-margin", "12x"}), 2,
                         {"--counter-margin must be a whole number"});
        test::check_exit(restore(p.daemon, file, {"--counter-margin", "1", "--confirm-counters"}),
                         2, {"exclude each other"});
        test::check_exit(restore(p.daemon, file, {"--force", "yes"}), 2,
                         {"unknown option --force for 'restore'"});

        CHECK(file_bytes(p.daemon.db_path()) == store_before);
        CHECK(files_starting(p.daemon.data_dir(), "signet.db.").empty());
        p.daemon.start();
        auto signer = p.api(p.signer);
        CHECK(sign_nonce(signer, k.nonces) == 6);
    }

    SECTION("the restore takes the exact maxima from the current store") {
        const json::object r = test::ok_json(restore(p.daemon, file));
        CHECK(test::str(r, "mode") == "exact");
        CHECK(test::str(r, "audit_source") == "current");
        bool saw = false;
        for (const auto& row : r.at("counters").as_array()) {
            const auto& o = row.as_object();
            if (test::str(o, "key") != k.nonces) continue;
            saw = true;
            CHECK(test::u64(o, "backup") == 3);
            CHECK(test::u64(o, "current") == 5);
            CHECK(test::u64(o, "restored") == 5);
        }
        CHECK(saw);
        REQUIRE(r.contains("kept_aside"));
        CHECK(file_bytes(test::str(r, "kept_aside")) == store_before);
        CHECK(r.at("clients_revoked").as_array().size() == 1);

        p.daemon.start();
        auto admin = p.api(p.admin);
        auto signer = p.api(p.signer);
        // Exact: the very next value, above every nonce issued before the restore.
        CHECK(sign_nonce(signer, k.nonces) == 6);
        // The watermark signed after the backup still holds.
        test::check_api_error(sign_mark(signer, k.marks, 15), 409, "watermark_regression");
        test::check_api_error(sign_mark(signer, k.marks, 20, "other block"), 409,
                              "watermark_regression");
        CHECK(sign_mark(signer, k.marks, 21).status == 200);
        // Revoked after the backup: stays revoked.
        test::ApiClient revoked(p.daemon, late.token);
        test::check_api_error(revoked.get("/v1/keys"), 401, "unauthenticated");
        // The audit log kept every record (the HSM's checkpoint anchor matches) plus the restore.
        test::check_audit_chain(admin);
        const auto restored = test::audit_with_action(admin, "store.restored");
        REQUIRE(restored.size() == 1);
        const auto& details = restored[0].at("details").as_object();
        CHECK(test::str(details, "mode") == "exact");
        CHECK(test::str(restored[0], "actor") == "signetctl");
        CHECK(test::audit_with_action(admin, "sign.nonce").size() >= 6);
    }
}

TEST_CASE(
    "without the current store a restore needs a margin, and the margin keeps every counter "
    "and watermark above what was issued",
    "[daemon][integration][backup]") {
    test::ProvisionedDaemon p;
    const test::TempDir dir("signet-backup");
    const fs::path file = dir.path() / "b.db";
    Keys k;
    {
        auto admin = p.api(p.admin);
        auto signer = p.api(p.signer);
        k = make_keys(admin);
        for (std::uint64_t n = 1; n <= 2; ++n) CHECK(sign_nonce(signer, k.nonces) == n);
        REQUIRE(sign_mark(signer, k.marks, 5).status == 200);
        test::ok_json(backup(p.daemon, file));
        for (std::uint64_t n = 3; n <= 7; ++n) CHECK(sign_nonce(signer, k.nonces) == n);
        REQUIRE(sign_mark(signer, k.marks, 9).status == 200);
    }
    REQUIRE(p.daemon.stop().exited_with(0));
    // The disk holding the store is lost.
    for (const char* s : {"", "-wal", "-shm"}) fs::remove(p.daemon.db_path().string() + s);

    test::check_exit(
        restore(p.daemon, file), 1,
        {"restore refused", "no current store", "--counter-margin N", "--confirm-counters"});
    test::check_exit(restore(p.daemon, file, {"--counter-margin", "100"}), 1,
                     {"restore refused", "watermarks for 1 key", "--watermark-margin"});
    test::check_exit(test::run_signetctl({"restore", "--backup", file.string(), "--data-dir",
                                          p.daemon.data_dir().string(), "--watermark-margin", "5"}),
                     2, {"--watermark-margin goes with --counter-margin"});
    CHECK_FALSE(fs::exists(p.daemon.db_path()));
    CHECK(files_starting(p.daemon.data_dir(), "signet.db").empty());

    const json::object r = test::ok_json(
        restore(p.daemon, file, {"--counter-margin", "100", "--watermark-margin", "100"}));
    CHECK(test::str(r, "mode") == "margin");
    CHECK(test::str(r, "current_store") == "absent");
    CHECK_FALSE(r.contains("kept_aside"));

    p.daemon.start();
    auto admin = p.api(p.admin);
    auto signer = p.api(p.signer);
    // 2 in the backup + 100: above the 7 issued before the restore.
    CHECK(sign_nonce(signer, k.nonces) == 103);
    // The backup's watermark [5,0] raised to [105,0], and refused at it.
    test::check_api_error(sign_mark(signer, k.marks, 9), 409, "watermark_regression");
    test::check_api_error(sign_mark(signer, k.marks, 105), 409, "watermark_regression");
    CHECK(sign_mark(signer, k.marks, 106).status == 200);

    // The restored chain is intact, and the restore is in it...
    const auto restored = test::audit_with_action(admin, "store.restored");
    REQUIRE(restored.size() == 1);
    CHECK(test::u64(restored[0].at("details").as_object(), "counter_margin") == 100);
    const auto offline =
        test::run_signetctl({"audit", "verify", "--db", p.daemon.db_path().string()});
    INFO(offline.out << offline.err);
    CHECK(offline.status.exited_with(0));
    CHECK(test::contains(offline.out, "audit log ok"));
    // ...but the records written after the backup are gone with the lost disk, and the HSM's
    // checkpoint anchor says so: the online verification reports the loss.
    const test::ApiReply v = admin.post("/v1/audit/verify", json::object{});
    REQUIRE(v.status == 200);
    CHECK_FALSE(v.object().at("ok").as_bool());
}

TEST_CASE("with --confirm-counters a restore without the current store keeps the backup's values",
          "[daemon][integration][backup]") {
    test::ProvisionedDaemon p;
    const test::TempDir dir("signet-backup");
    const fs::path file = dir.path() / "b.db";
    std::string key;
    {
        auto admin = p.api(p.admin);
        auto signer = p.api(p.signer);
        key = make_keys(admin).nonces;
        CHECK(sign_nonce(signer, key) == 1);
    }
    // Taken with signetd stopped, and nothing issued since: the operator can confirm that.
    REQUIRE(p.daemon.stop().exited_with(0));
    test::ok_json(backup(p.daemon, file));
    for (const char* s : {"", "-wal", "-shm"}) fs::remove(p.daemon.db_path().string() + s);
    const json::object r = test::ok_json(restore(p.daemon, file, {"--confirm-counters"}));
    CHECK(test::str(r, "mode") == "confirmed");
    p.daemon.start();
    auto signer = p.api(p.signer);
    CHECK(sign_nonce(signer, key) == 2);
}
