#include "multilora/pipeline/file_hashes.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <filesystem>

#include "multilora/io/atomic_file.h"
#include "multilora/io/sha256.h"

namespace fs = std::filesystem;

namespace multilora::pipeline {
namespace {

fs::path cache_file() {
    if (const char* d = std::getenv("MULTILORA_CACHE_DIR"); d && *d) return fs::path(d) / "sha256-cache.json";
    if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "multilora" / "sha256-cache.json";
    if (const char* h = std::getenv("HOME"); h && *h) return fs::path(h) / ".cache" / "multilora" / "sha256-cache.json";
    return {};
}

}  // namespace

std::string file_sha256(const std::string& path) {
    std::error_code ec;
    std::string canonical = fs::weakly_canonical(path, ec).string();
    auto size = fs::file_size(path, ec);
    auto mtime = fs::last_write_time(path, ec).time_since_epoch().count();
    std::string stamp = std::to_string(size) + ":" + std::to_string(mtime);
    fs::path cache = cache_file();
    nlohmann::json entries = nlohmann::json::object();
    if (!cache.empty() && fs::exists(cache)) {
        try {
            entries = nlohmann::json::parse(io::read_file(cache.string()));
            auto it = entries.find(canonical);
            if (it != entries.end() && it->value("stamp", "") == stamp) return it->value("sha256", "");
        } catch (const std::exception&) {
            entries = nlohmann::json::object();
        }
    }
    if (size > (64u << 20)) spdlog::info("hashing {} (once; the result is cached)", path);
    std::string hash = io::sha256_file_hex(path);
    if (!cache.empty()) {
        try {
            fs::create_directories(cache.parent_path());
            entries[canonical] = {{"stamp", stamp}, {"sha256", hash}};
            io::write_file_atomic(cache.string(), entries.dump(1));
        } catch (const std::exception& e) {
            spdlog::debug("hash cache not written: {}", e.what());
        }
    }
    return hash;
}

nlohmann::json hashed_files(const std::vector<std::string>& paths) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& p : paths) out.push_back({{"path", p}, {"sha256", file_sha256(p)}});
    return out;
}

}  // namespace multilora::pipeline
