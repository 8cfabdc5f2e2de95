#include "signet/core/secret_buffer.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace signet {

SecretBuffer::SecretBuffer(std::size_t size)
    : data_(size ? std::make_unique<std::uint8_t[]>(size) : nullptr), size_(size), capacity_(size) {
    // Best effort: keep secrets out of swap. Failure (RLIMIT_MEMLOCK) is not fatal.
    if (data_) (void)::mlock(data_.get(), size_);
}

SecretBuffer SecretBuffer::copy_of(std::span<const std::uint8_t> bytes) {
    SecretBuffer b(bytes.size());
    if (!bytes.empty()) std::memcpy(b.data(), bytes.data(), bytes.size());
    return b;
}

SecretBuffer SecretBuffer::copy_of(std::string_view text) {
    return copy_of(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(text.data()),
                                                 text.size()));
}

SecretBuffer::SecretBuffer(SecretBuffer&& other) noexcept
    : data_(std::move(other.data_)), size_(other.size_), capacity_(other.capacity_) {
    other.size_ = 0;
    other.capacity_ = 0;
}

SecretBuffer& SecretBuffer::operator=(SecretBuffer&& other) noexcept {
    if (this != &other) {
        wipe();
        data_ = std::move(other.data_);
        size_ = other.size_;
        capacity_ = other.capacity_;
        other.size_ = 0;
        other.capacity_ = 0;
    }
    return *this;
}

SecretBuffer::~SecretBuffer() { wipe(); }

SecretBuffer SecretBuffer::clone() const { return copy_of(bytes()); }

void SecretBuffer::truncate(std::size_t new_size) noexcept {
    if (new_size >= size_) return;
    OPENSSL_cleanse(data_.get() + new_size, size_ - new_size);
    size_ = new_size;
}

bool SecretBuffer::equals(std::span<const std::uint8_t> other) const noexcept {
    if (other.size() != size_) return false;
    if (size_ == 0) return true;
    return CRYPTO_memcmp(data_.get(), other.data(), size_) == 0;
}

void SecretBuffer::wipe() noexcept {
    if (!data_) return;
    OPENSSL_cleanse(data_.get(), capacity_);
    (void)::munlock(data_.get(), capacity_);
    data_.reset();
    size_ = 0;
    capacity_ = 0;
}

namespace {

struct FdCloser {
    int fd;
    ~FdCloser() {
        if (fd >= 0) ::close(fd);
    }
};

Error io_error(std::string context, int err) {
    return Error{boost::system::error_code(err, boost::system::system_category()),
                 std::move(context)};
}

}  // namespace

Result<SecretBuffer> read_secret_file(const std::filesystem::path& path) {
    const std::string name = path.string();
    const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ELOOP) {
            return make_error(Errc::permission_denied,
                              "secret file '" + name + "' is a symlink; refusing to follow it");
        }
        return io_error("open secret file '" + name + "'", errno);
    }
    FdCloser closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) return io_error("stat secret file '" + name + "'", errno);
    if (!S_ISREG(st.st_mode)) {
        return make_error(Errc::permission_denied,
                          "secret file '" + name + "' is not a regular file");
    }
    if (st.st_uid != ::geteuid() && st.st_uid != 0) {
        return make_error(Errc::permission_denied,
                          "secret file '" + name + "' is owned by uid " +
                              std::to_string(st.st_uid) +
                              "; it must belong to the user reading it (uid " +
                              std::to_string(::geteuid()) + ") or to root");
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        return make_error(Errc::permission_denied,
                          "secret file '" + name + "' has mode " + mode +
                              "; it must not be accessible by group or others (chmod 0600)");
    }
    constexpr off_t kMaxSecret = 4096;
    if (st.st_size > kMaxSecret) {
        return make_error(Errc::invalid_argument,
                          "secret file '" + name + "' is larger than 4096 bytes");
    }
    SecretBuffer buf(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    while (got < buf.size()) {
        const ssize_t n = ::read(fd, buf.data() + got, buf.size() - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            return io_error("read secret file '" + name + "'", errno);
        }
        if (n == 0) break;
        got += static_cast<std::size_t>(n);
    }
    buf.truncate(got);
    if (buf.size() > 0 && buf.data()[buf.size() - 1] == '\n') buf.truncate(buf.size() - 1);
    if (buf.size() > 0 && buf.data()[buf.size() - 1] == '\r') buf.truncate(buf.size() - 1);
    if (buf.empty()) {
        return make_error(Errc::invalid_argument, "secret file '" + name + "' is empty");
    }
    return buf;
}

}  // namespace signet
