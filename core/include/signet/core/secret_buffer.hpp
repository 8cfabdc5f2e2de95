// SecretBuffer: owns PINs, passwords and key components. Wiped with OPENSSL_cleanse on destruction
// and on move-from; deliberately has no stream operator, no formatter and no implicit conversion to
// a string, so it cannot reach a log by accident.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string_view>

#include "signet/core/result.hpp"

namespace signet {

class SecretBuffer {
public:
    SecretBuffer() = default;
    explicit SecretBuffer(std::size_t size);
    // Copies `bytes` in; the caller remains responsible for wiping its own copy.
    static SecretBuffer copy_of(std::span<const std::uint8_t> bytes);
    static SecretBuffer copy_of(std::string_view text);

    SecretBuffer(SecretBuffer&& other) noexcept;
    SecretBuffer& operator=(SecretBuffer&& other) noexcept;
    SecretBuffer(const SecretBuffer&) = delete;
    SecretBuffer& operator=(const SecretBuffer&) = delete;
    ~SecretBuffer();

    // Explicit duplicate (for the rare owner that must keep a second copy, e.g. re-login).
    [[nodiscard]] SecretBuffer clone() const;

    [[nodiscard]] std::uint8_t* data() noexcept { return data_.get(); }
    [[nodiscard]] const std::uint8_t* data() const noexcept { return data_.get(); }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    [[nodiscard]] std::span<const std::uint8_t> bytes() const noexcept {
        return {data_.get(), size_};
    }

    // Shrinks the visible size (e.g. to drop a trailing newline); the tail is wiped.
    void truncate(std::size_t new_size) noexcept;

    // Constant-time comparison.
    [[nodiscard]] bool equals(std::span<const std::uint8_t> other) const noexcept;

private:
    void wipe() noexcept;

    std::unique_ptr<std::uint8_t[]> data_;
    std::size_t size_ = 0;      // visible bytes
    std::size_t capacity_ = 0;  // allocated (and mlocked) bytes; size_ <= capacity_
};

// Reads a secret (PIN, password) from a file. Refuses a file that is a symlink, not a regular
// file, owned by another user than the reader (root excepted), or readable/writable by group or
// others (errc permission_denied, naming the owner or the mode). One
// trailing "\n" or "\r\n" is dropped. An empty secret is an error.
[[nodiscard]] Result<SecretBuffer> read_secret_file(const std::filesystem::path& path);

}  // namespace signet
