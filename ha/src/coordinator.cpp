#include "signet/ha/coordinator.hpp"

namespace signet::ha {
namespace {

class HaCategory final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "ha"; }
    std::string message(int ev) const override { return ha_errc_name(static_cast<HaErrc>(ev)); }
};

}  // namespace

const boost::system::error_category& ha_category() noexcept {
    static const HaCategory category;
    return category;
}

boost::system::error_code make_error_code(HaErrc e) noexcept {
    return {static_cast<int>(e), ha_category()};
}

const char* ha_errc_name(HaErrc e) noexcept {
    switch (e) {
        case HaErrc::outcome_unknown: return "outcome_unknown";
        case HaErrc::lease_not_found: return "lease_not_found";
        case HaErrc::compacted: return "compacted";
        case HaErrc::not_active: return "not_active";
        case HaErrc::fenced: return "fenced";
        case HaErrc::allocation_stopped: return "allocation_stopped";
        case HaErrc::conflict: return "conflict";
    }
    return "unknown";
}

Compare Compare::value_equals(std::string key, std::string value) {
    return {std::move(key), Target::value, Op::equal, std::move(value), 0};
}
Compare Compare::mod_revision_equals(std::string key, std::int64_t rev) {
    return {std::move(key), Target::mod_revision, Op::equal, {}, rev};
}
Compare Compare::create_revision_equals(std::string key, std::int64_t rev) {
    return {std::move(key), Target::create_revision, Op::equal, {}, rev};
}
Compare Compare::absent(std::string key) { return create_revision_equals(std::move(key), 0); }

Op Op::get(std::string key, std::string range_end) {
    return {Kind::get, std::move(key), std::move(range_end), {}, 0};
}
Op Op::put(std::string key, std::string value, std::int64_t lease) {
    return {Kind::put, std::move(key), {}, std::move(value), lease};
}
Op Op::del(std::string key, std::string range_end) {
    return {Kind::del, std::move(key), std::move(range_end), {}, 0};
}

std::string prefix_end(const std::string& prefix) {
    std::string end = prefix;
    while (!end.empty()) {
        auto& c = reinterpret_cast<unsigned char&>(end.back());
        if (c < 0xff) {
            ++c;
            return end;
        }
        end.pop_back();
    }
    return std::string(1, '\0');  // every key (etcd's "\0" range_end)
}

}  // namespace signet::ha
