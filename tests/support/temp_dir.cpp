#include "signet_test/temp_dir.hpp"

#include <cstdlib>
#include <fstream>
#include <stdexcept>

namespace signet::test {

TempDir::TempDir(const std::string& prefix) {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/" + prefix + "-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path_ = tmpl;
}

TempDir::~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

std::filesystem::path TempDir::write_file(const std::string& name, std::string_view content,
                                          std::filesystem::perms mode) const {
    const std::filesystem::path p = path_ / name;
    {
        std::ofstream f(p, std::ios::binary | std::ios::trunc);
        f.write(content.data(), static_cast<std::streamsize>(content.size()));
        if (!f) throw std::runtime_error("cannot write " + p.string());
    }
    std::filesystem::permissions(p, mode, std::filesystem::perm_options::replace);
    return p;
}

}  // namespace signet::test
