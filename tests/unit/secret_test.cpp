// core: SecretBuffer ownership and wiping, and reading secrets from files.
#include "signet/core/secret_buffer.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <ostream>
#include <string>
#include <type_traits>

#include "signet/core/bytes.hpp"
#include "signet_test/result_matchers.hpp"
#include "signet_test/temp_dir.hpp"

using signet::Errc;
using signet::SecretBuffer;
namespace fs = std::filesystem;

namespace {

constexpr fs::perms kOwnerOnly = fs::perms::owner_read | fs::perms::owner_write;
constexpr fs::perms kWorldReadable = kOwnerOnly | fs::perms::group_read | fs::perms::others_read;

std::string text_of(const SecretBuffer& b) {
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

template <class T>
concept Streamable = requires(std::ostream& os, const T& v) {
    os << v;
};

}  // namespace

TEST_CASE("a SecretBuffer cannot be copied, printed or turned into a string implicitly",
          "[core][unit]") {
    STATIC_REQUIRE_FALSE(std::is_copy_constructible_v<SecretBuffer>);
    STATIC_REQUIRE_FALSE(std::is_copy_assignable_v<SecretBuffer>);
    STATIC_REQUIRE_FALSE(Streamable<SecretBuffer>);
    STATIC_REQUIRE_FALSE(std::is_convertible_v<SecretBuffer, std::string>);
    STATIC_REQUIRE_FALSE(std::is_convertible_v<SecretBuffer, std::string_view>);
    STATIC_REQUIRE(std::is_nothrow_move_constructible_v<SecretBuffer>);
    STATIC_REQUIRE(std::is_nothrow_move_assignable_v<SecretBuffer>);
}

TEST_CASE("moving a SecretBuffer transfers the bytes and leaves the source empty", "[core][unit]") {
    SecretBuffer a = SecretBuffer::copy_of("correct horse");
    const std::uint8_t* storage = a.data();

    SecretBuffer b(std::move(a));
    CHECK(b.data() == storage);  // moved, not copied: no second plaintext copy exists
    CHECK(text_of(b) == "correct horse");
    CHECK(a.empty());  // NOLINT(bugprone-use-after-move): the moved-from state is the contract
    CHECK(a.size() == 0);
    CHECK(a.data() == nullptr);

    SecretBuffer c = SecretBuffer::copy_of("old pin");
    c = std::move(b);
    CHECK(c.data() == storage);
    CHECK(text_of(c) == "correct horse");
    CHECK(b.empty());  // NOLINT(bugprone-use-after-move)

    SecretBuffer& alias = c;
    c = std::move(alias);  // self-move keeps the content
    CHECK(text_of(c) == "correct horse");
}

TEST_CASE("clone makes an independent copy and equals compares exactly", "[core][unit]") {
    const SecretBuffer a = SecretBuffer::copy_of("1234");
    SecretBuffer b = a.clone();
    CHECK(b.data() != a.data());
    CHECK(b.equals(signet::as_bytes("1234")));
    b.data()[0] = '9';
    CHECK(text_of(a) == "1234");

    CHECK(a.equals(signet::as_bytes("1234")));
    CHECK_FALSE(a.equals(signet::as_bytes("1235")));
    CHECK_FALSE(a.equals(signet::as_bytes("123")));
    CHECK_FALSE(a.equals(signet::as_bytes("12345")));
    CHECK(SecretBuffer().equals({}));
    CHECK(SecretBuffer(0).empty());
    const SecretBuffer zeroed(8);
    CHECK(zeroed.size() == 8);
    CHECK(zeroed.equals(signet::Bytes(8, 0)));
}

TEST_CASE("truncate shrinks a SecretBuffer and wipes the bytes it drops", "[core][unit]") {
    SecretBuffer b = SecretBuffer::copy_of("secret\n");
    const std::uint8_t* p = b.data();
    b.truncate(3);
    CHECK(b.size() == 3);
    CHECK(text_of(b) == "sec");
    // The dropped tail is still inside the allocation: it must be zero now.
    for (std::size_t i = 3; i < 7; ++i) {
        INFO("byte " << i);
        CHECK(p[i] == 0);
    }
    b.truncate(10);  // growing is not truncating: no change
    CHECK(text_of(b) == "sec");
    b.truncate(0);
    CHECK(b.empty());
    CHECK(p[0] == 0);
}

TEST_CASE("read_secret_file refuses a file readable by group or others and names its mode",
          "[core][unit]") {
    const signet::test::TempDir dir;
    const auto path = dir.write_file("pin", "123456\n", kWorldReadable);
    const auto r = signet::read_secret_file(path);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().is(Errc::permission_denied));
    CHECK_THAT(r.error().message(), Catch::Contains("mode 0644"));
    CHECK_THAT(r.error().message(), Catch::Contains(path.string()));
    CHECK_THAT(r.error().message(), Catch::Contains("chmod 0600"));

    fs::permissions(path, kOwnerOnly | fs::perms::group_read, fs::perm_options::replace);
    const auto group = signet::read_secret_file(path);
    REQUIRE_FALSE(group.has_value());
    CHECK_THAT(group.error().message(), Catch::Contains("mode 0640"));

    fs::permissions(path, kOwnerOnly, fs::perm_options::replace);
    const auto fixed = signet::read_secret_file(path);
    REQUIRE_OK(fixed);
    CHECK(text_of(*fixed) == "123456");
}

TEST_CASE("read_secret_file refuses a file owned by another user and names the owner",
          "[core][unit]") {
    const signet::test::TempDir dir;
    const auto path = dir.write_file("pin", "123456\n", kOwnerOnly);
    constexpr uid_t kNobody = 65534;
    if (::chown(path.c_str(), kNobody, static_cast<gid_t>(-1)) != 0) {
        WARN("cannot chown (not root?): ownership check not exercised");
        return;
    }
    const auto r = signet::read_secret_file(path);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().is(Errc::permission_denied));
    CHECK_THAT(r.error().message(), Catch::Contains("owned by uid 65534"));
    CHECK_THAT(r.error().message(), Catch::Contains(path.string()));

    // The same file back with its reader: accepted.
    REQUIRE(::chown(path.c_str(), ::geteuid(), static_cast<gid_t>(-1)) == 0);
    const auto fixed = signet::read_secret_file(path);
    REQUIRE_OK(fixed);
    CHECK(text_of(*fixed) == "123456");
}

TEST_CASE("read_secret_file refuses symlinks, directories and missing files", "[core][unit]") {
    const signet::test::TempDir dir;
    const auto target = dir.write_file("pin", "123456", kOwnerOnly);
    fs::create_symlink(target, dir.path() / "link");

    const auto link = signet::read_secret_file(dir.path() / "link");
    REQUIRE_FALSE(link.has_value());
    CHECK(link.error().is(Errc::permission_denied));
    CHECK_THAT(link.error().message(), Catch::Contains("symlink"));

    fs::create_directory(dir.path() / "subdir");
    fs::permissions(dir.path() / "subdir", fs::perms::owner_all, fs::perm_options::replace);
    const auto directory = signet::read_secret_file(dir.path() / "subdir");
    REQUIRE_FALSE(directory.has_value());
    CHECK(directory.error().is(Errc::permission_denied));
    CHECK_THAT(directory.error().message(), Catch::Contains("not a regular file"));

    const auto missing = signet::read_secret_file(dir.path() / "absent");
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().code == boost::system::errc::no_such_file_or_directory);
    CHECK_THAT(missing.error().message(), Catch::Contains((dir.path() / "absent").string()));
}

TEST_CASE("read_secret_file strips exactly one trailing newline and refuses empty secrets",
          "[core][unit]") {
    const signet::test::TempDir dir;
    struct Case {
        const char* content;
        const char* secret;
    };
    const Case cases[] = {
        {"hunter2", "hunter2"},       {"hunter2\n", "hunter2"},       {"hunter2\r\n", "hunter2"},
        {"hunter2\n\n", "hunter2\n"}, {"two words \n", "two words "}, {"\nlead", "\nlead"},
    };
    for (const Case& c : cases) {
        INFO("content '" << c.content << "'");
        const auto r = signet::read_secret_file(dir.write_file("pin", c.content, kOwnerOnly));
        REQUIRE_OK(r);
        CHECK(text_of(*r) == c.secret);
    }
    for (const char* empty : {"", "\n", "\r\n"}) {
        INFO("content '" << empty << "'");
        const auto r = signet::read_secret_file(dir.write_file("pin", empty, kOwnerOnly));
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().is(Errc::invalid_argument));
        CHECK_THAT(r.error().message(), Catch::Contains("is empty"));
    }
    const auto big =
        signet::read_secret_file(dir.write_file("pin", std::string(4097, 'x'), kOwnerOnly));
    REQUIRE_FALSE(big.has_value());
    CHECK(big.error().is(Errc::invalid_argument));
    CHECK_THAT(big.error().message(), Catch::Contains("larger than 4096 bytes"));
}
