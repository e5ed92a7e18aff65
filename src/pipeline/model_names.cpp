#include "multilora/pipeline/model_names.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>

#include "multilora/util/error.h"
#include "multilora/util/strings.h"

namespace fs = std::filesystem;

namespace multilora::pipeline {
namespace {

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? std::string(v) : std::string();
}

// The commit a revision names in one repo folder: refs/REVISION's content, or REVISION when it is a snapshot.
std::string snapshot_of(const fs::path& repo, const std::string& revision) {
    std::ifstream ref(repo / "refs" / revision);
    std::string commit;
    if (ref && std::getline(ref, commit)) commit = trim(commit);
    else commit = revision;
    const fs::path snap = repo / "snapshots" / commit;
    std::error_code ec;
    return !commit.empty() && fs::is_directory(snap, ec) ? snap.string() : std::string();
}

}  // namespace

std::vector<std::string> hub_cache_dirs() {
    std::vector<std::string> dirs;
    auto add = [&](const std::string& d) {
        if (!d.empty() && std::find(dirs.begin(), dirs.end(), d) == dirs.end()) dirs.push_back(d);
    };
    add(env("HF_HUB_CACHE"));
    if (!env("HF_HOME").empty()) add((fs::path(env("HF_HOME")) / "hub").string());
    if (!env("XDG_CACHE_HOME").empty()) add((fs::path(env("XDG_CACHE_HOME")) / "huggingface" / "hub").string());
    if (!env("HOME").empty()) add((fs::path(env("HOME")) / ".cache" / "huggingface" / "hub").string());
    return dirs;
}

std::string resolve_model_reference(const std::string& ref, const std::string& what) {
    std::error_code ec;
    if (ref.empty() || fs::exists(ref, ec)) return ref;
    static const std::regex hub_name(R"(([A-Za-z0-9][\w.-]*)/([\w][\w.-]*)(@(\w[\w.-]*))?)");
    std::smatch m;
    if (!std::regex_match(ref, m, hub_name) || ref.find("..") != std::string::npos)
        throw RuntimeError(what + " not found: '" + ref + "' (neither a file nor a folder)");
    const std::string repo = "models--" + m[1].str() + "--" + m[2].str();
    const std::string revision = m[4].matched ? m[4].str() : "main";
    std::vector<std::string> looked;
    for (const auto& cache : hub_cache_dirs()) {
        const fs::path dir = fs::path(cache) / repo;
        looked.push_back(dir.string());
        if (!fs::is_directory(dir, ec)) continue;
        const std::string snap = snapshot_of(dir, revision);
        if (!snap.empty()) return snap;
        looked.back() += " (there, but no snapshot for revision '" + revision + "')";
    }
    throw RuntimeError(what + " not found: '" + ref + "' is not a file or folder, and as a Hugging Face name it is not in the "
                       "local hub cache (nothing is downloaded); looked in " + (looked.empty() ? std::string("no cache: HOME is not set") : join(looked, ", ")));
}

std::string resolve_lora_reference(const std::string& ref, const std::vector<std::string>& dirs) {
    std::error_code ec;
    if (fs::is_regular_file(ref, ec) || ref.find('/') != std::string::npos) return ref;
    std::vector<std::string> folders = dirs;
    for (const auto& d : split(env("MULTILORA_LORA_DIR"), ':'))
        if (!d.empty()) folders.push_back(d);
    const std::string file = ends_with(ref, ".safetensors") ? ref : ref + ".safetensors";
    for (const auto& d : folders) {
        const fs::path p = fs::path(d) / file;
        if (fs::is_regular_file(p, ec)) return p.string();
    }
    if (folders.empty()) return ref;  // the caller reports the missing file as given
    throw RuntimeError("LoRA not found: '" + ref + "' is not a file, and " + file + " is in none of the LoRA folders (" +
                       join(folders, ", ") + "; --lora-dir and $MULTILORA_LORA_DIR)");
}

}  // namespace multilora::pipeline
