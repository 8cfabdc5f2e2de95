// A private temporary directory that is removed with everything in it when the object dies. Needs
// no HSM, so unit tests may use it (test::make_temp_dir lives under the test HSM's directory).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace signet::test {

class TempDir {
public:
    explicit TempDir(const std::string& prefix = "signet-unit");
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

    // Writes `content` to `name` inside the directory with permissions `mode`; returns its path.
    std::filesystem::path write_file(const std::string& name, std::string_view content,
                                     std::filesystem::perms mode) const;

private:
    std::filesystem::path path_;
};

}  // namespace signet::test
