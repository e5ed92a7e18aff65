#include "multilora/batch/state.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <map>
#include <set>

#include "multilora/io/atomic_file.h"
#include "multilora/io/sha256.h"

namespace fs = std::filesystem;

namespace multilora::batch {
namespace {

std::string base_name(const std::string& path) {
    if (path.empty()) return path;
    fs::path p = fs::path(path).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    return p.filename().string();
}

std::string short_value(const nlohmann::json& v) {
    std::string s = v.dump();
    return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

}  // namespace

nlohmann::ordered_json expected_settings(const BatchConfig& c, const PlanImage& im) {
    nlohmann::ordered_json s;
    s["style"] = c.style;
    s["k"] = im.k;
    s["set_index"] = im.set_index;
    s["lora_ids"] = im.lora_ids;
    s["method"] = im.method;
    s["prompt"] = im.prompt;
    s["negative_prompt"] = c.negative_prompt;
    s["seed"] = im.seed;
    s["noise_draw"] = im.noise_draw;
    s["steps"] = c.steps;
    s["guidance_scale"] = c.guidance_scale;
    s["width"] = c.width;
    s["height"] = c.height;
    s["scheduler"] = c.scheduler;
    s["long_prompt"] = c.long_prompt;
    if (c.prompt_syntax != "plain") s["prompt_syntax"] = c.prompt_syntax;
    if (!c.embedding_dir.empty()) s["embedding_dir"] = c.embedding_dir;  // absent: none  // absent: plain (older runs stay current)
    if (c.vae_tile > 0) s["vae_tile"] = c.vae_tile;  // absent: untiled (older runs stay current)
    s["dtype"] = c.dtype;
    s["lora_scale"] = im.method == "none" ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(c.lora_scale);
    // The method's parameters that change the image, under their config key (switch_interval, ...) or
    // METHOD_PARAM.
    auto args = c.method_args.find(im.method);
    if (args != c.method_args.end())
        for (const auto& p : args->second.params())
            if (p.affects_output)
                s[p.config_key.empty() ? im.method + "_" + p.name : p.config_key] =
                    nlohmann::ordered_json::parse(args->second.values().at(p.name).dump());
    s["model"] = base_name(c.model);
    s["vae"] = c.vae.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(base_name(c.vae));
    return s;
}

ImageCheck check_image(const BatchConfig& c, const PlanImage& im) {
    ImageCheck r;
    std::error_code ec;
    const bool has_png = fs::is_regular_file(im.png_path, ec);
    const bool has_manifest = fs::is_regular_file(im.manifest_path, ec);
    if (!has_manifest) {
        r.reason = has_png ? "PNG without manifest (interrupted)" : "not started";
        return r;
    }
    if (!has_png) {
        r.reason = "manifest without PNG";
        return r;
    }
    nlohmann::json m;
    try {
        m = nlohmann::json::parse(io::read_file(im.manifest_path));
    } catch (const std::exception&) {
        r.reason = "unreadable manifest";
        return r;
    }
    std::string recorded;
    try {
        recorded = m.at("outputs").at(0).at("sha256").get<std::string>();
    } catch (const std::exception&) {
        r.reason = "manifest records no PNG hash";
        return r;
    }
    std::string actual;
    try {
        actual = io::sha256_file_hex(im.png_path);
    } catch (const std::exception&) {
        r.reason = "unreadable PNG";
        return r;
    }
    if (actual != recorded) {
        r.reason = "PNG does not match the hash its manifest records";
        return r;
    }
    r.png_sha256 = actual;
    const nlohmann::json want = nlohmann::json::parse(expected_settings(c, im).dump());
    const nlohmann::ordered_json want_order = expected_settings(c, im);
    const nlohmann::json have = m.contains("settings") && m["settings"].is_object() ? m["settings"] : nlohmann::json::object();
    std::set<std::string> keys;
    for (const auto& [k, v] : want.items()) keys.insert(k);
    for (const auto& [k, v] : have.items()) keys.insert(k);
    // Report in the expected order first, then keys only the old manifest has.
    std::vector<std::string> ordered;
    for (const auto& [k, v] : want_order.items()) ordered.push_back(k);
    for (const auto& k : keys)
        if (!want.contains(k)) ordered.push_back(k);
    for (const auto& k : ordered) {
        const bool in_want = want.contains(k), in_have = have.contains(k);
        nlohmann::json a = in_have ? have[k] : nlohmann::json(), b = in_want ? want[k] : nlohmann::json();
        if (in_have && in_want && a == b) continue;
        r.differences.push_back(k + ": " + (in_have ? short_value(a) : std::string("(none)")) + " -> " +
                                (in_want ? short_value(b) : std::string("(none)")));
    }
    r.state = r.differences.empty() ? ImageState::Finished : ImageState::Stale;
    return r;
}

int remove_leftover_temp_files(const std::vector<std::string>& final_paths) {
    std::map<std::string, std::set<std::string>> by_dir;
    for (const auto& p : final_paths) by_dir[fs::path(p).parent_path().string()].insert(fs::path(p).filename().string() + ".tmp-");
    int removed = 0;
    for (const auto& [dir, prefixes] : by_dir) {
        std::error_code ec;
        if (!fs::is_directory(dir, ec)) continue;
        for (const auto& entry : fs::directory_iterator(dir, ec)) {
            const std::string name = entry.path().filename().string();
            auto pos = name.find(".tmp-");
            if (pos == std::string::npos) continue;
            if (!prefixes.count(name.substr(0, pos + 5))) continue;
            std::error_code rm;
            if (fs::remove(entry.path(), rm)) ++removed;
        }
    }
    return removed;
}

namespace {

// "NAME.tmp-PID-N" or ".multilora-write-probe-PID-N" -> PID (0 when the name has none).
long pid_in_name(const std::string& tail) {
    auto dash = tail.find('-');
    if (dash == std::string::npos || dash == 0) return 0;
    try {
        return std::stol(tail.substr(0, dash));
    } catch (const std::exception&) {
        return 0;
    }
}

// Whether `pid` is a live multilora process on this host. A zombie, or a process of another program that
// reused the id, does not count; neither does this process (it has no shared write in flight when it
// cleans up).
bool live_writer(long pid) {
    if (pid <= 0) return true;  // unknown: rely on the age
    if (pid == static_cast<long>(::getpid())) return false;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return false;
    const std::string proc = "/proc/" + std::to_string(pid);
    try {
        std::string stat = io::read_file(proc + "/stat");
        auto close = stat.rfind(')');
        if (close != std::string::npos && close + 2 < stat.size() && (stat[close + 2] == 'Z' || stat[close + 2] == 'X'))
            return false;
        std::string comm = io::read_file(proc + "/comm");
        if (comm.find("multilora") == std::string::npos) return false;
    } catch (const std::exception&) {
        // No /proc: keep the answer of kill(2).
    }
    return true;
}

bool abandoned(const fs::path& p, long pid, double min_age_seconds) {
    if (pid > 0 && !live_writer(pid)) return true;
    std::error_code ec;
    auto when = fs::last_write_time(p, ec);
    if (ec) return false;
    return std::chrono::duration<double>(fs::file_time_type::clock::now() - when).count() >= min_age_seconds;
}

}  // namespace

int remove_abandoned_temp_files(const std::vector<std::string>& shared_paths, const std::vector<std::string>& probe_dirs,
                                double min_age_seconds) {
    int removed = 0;
    std::error_code ec;
    for (const auto& path : shared_paths) {
        const fs::path dir = fs::path(path).parent_path();
        const std::string prefix = fs::path(path).filename().string() + ".tmp-";
        if (!fs::is_directory(dir, ec)) continue;
        for (const auto& entry : fs::directory_iterator(dir, ec)) {
            const std::string name = entry.path().filename().string();
            if (name.rfind(prefix, 0) != 0) continue;
            if (abandoned(entry.path(), pid_in_name(name.substr(prefix.size())), min_age_seconds) &&
                fs::remove(entry.path(), ec))
                ++removed;
        }
    }
    const std::string probe = ".multilora-write-probe-";
    for (const auto& dir : probe_dirs) {
        if (!fs::is_directory(dir, ec)) continue;
        for (const auto& entry : fs::directory_iterator(dir, ec)) {
            const std::string name = entry.path().filename().string();
            if (name.rfind(probe, 0) != 0) continue;
            if (abandoned(entry.path(), pid_in_name(name.substr(probe.size())), min_age_seconds) &&
                fs::remove(entry.path(), ec))
                ++removed;
        }
    }
    return removed;
}

}  // namespace multilora::batch
