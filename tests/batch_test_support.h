// Helpers for the `multilora batch` tests: a copy of configs/tiny-smoke.json beside the tiny model, running
// the binary with environment variables or a SIGKILL deadline, and snapshots of an output tree.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace multilora::test {

struct BatchDir {
    std::filesystem::path root;    // ROOT/configs/tiny-smoke.json, ROOT/models -> the tiny model folder
    std::filesystem::path config;
    std::filesystem::path out;     // ROOT/out/tiny-smoke (the config's "out")
};

// The shipped tiny-smoke config, optionally edited, in a fresh folder whose models/ is the tiny model. Its
// methods are pinned to the paper's three (the batch tests count their images); as_shipped keeps all.
inline BatchDir tiny_batch(const std::string& tag, const std::function<void(nlohmann::ordered_json&)>& edit = {},
                           bool as_shipped = false) {
    namespace fs = std::filesystem;
    BatchDir d;
    d.root = make_temp_dir("batch-" + tag);
    fs::create_directories(d.root / "configs");
    fs::create_directory_symlink(tiny_model_dir(), d.root / "models");
    auto j = nlohmann::ordered_json::parse(read_bytes(fs::path(ML_SOURCE_DIR) / "configs" / "tiny-smoke.json"));
    if (!as_shipped) {
        j["methods"] = {"merge", "switch", "composite"};
        j.erase("method_args");
    }
    if (edit) edit(j);
    d.config = d.root / "configs" / "tiny-smoke.json";
    std::ofstream(d.config) << j.dump(2);
    d.out = d.root / "out" / "tiny-smoke";
    return d;
}

inline std::string batch_args(const BatchDir& d, const std::string& extra = "") {
    return "batch " + d.config.string() + " --threads 1 --no-progress" + (extra.empty() ? "" : " " + extra);
}

// Every file under `dir` (relative path -> bytes), batch.jsonl left out (it holds clock times).
inline std::map<std::string, std::string> snapshot(const std::filesystem::path& dir) {
    std::map<std::string, std::string> files;
    if (!std::filesystem::exists(dir)) return files;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
        if (!e.is_regular_file()) continue;
        std::string rel = std::filesystem::relative(e.path(), dir).string();
        if (rel == "batch.jsonl") continue;
        files[rel] = read_bytes(e.path());
    }
    return files;
}

inline std::vector<std::string> temporary_files(const std::filesystem::path& dir) {
    std::vector<std::string> out;
    if (!std::filesystem::exists(dir)) return out;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
        std::string name = e.path().filename().string();
        if (name.find(".tmp-") != std::string::npos || name.rfind(".multilora-write-probe", 0) == 0)
            out.push_back(e.path().string());
    }
    return out;
}

// The "png" of every batch.jsonl line.
inline std::multiset<std::string> logged_pngs(const std::filesystem::path& out) {
    std::multiset<std::string> pngs;
    std::istringstream in(read_bytes(out / "batch.jsonl"));
    std::string line;
    while (std::getline(in, line))
        if (!line.empty()) pngs.insert(nlohmann::json::parse(line).at("png").get<std::string>());
    return pngs;
}

inline void expect_same_files(const std::map<std::string, std::string>& want, const std::map<std::string, std::string>& got,
                              const std::string& what) {
    std::set<std::string> names;
    for (const auto& [k, v] : want) names.insert(k);
    for (const auto& [k, v] : got) names.insert(k);
    for (const auto& n : names) {
        auto a = want.find(n), b = got.find(n);
        if (a == want.end()) ADD_FAILURE() << what << ": extra file " << n;
        else if (b == got.end()) ADD_FAILURE() << what << ": missing file " << n;
        else EXPECT_TRUE(a->second == b->second) << what << ": " << n << " differs";
    }
}

}  // namespace multilora::test
