#include "multilora/eval/run_index.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "composlora_catalog.h"
#include "multilora/eval/text_util.h"
#include "multilora/util/error.h"
#include "multilora/util/strings.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace multilora::eval {

namespace {

bool all_digits(const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> parts;
    std::string cur;
    for (char c : s) {
        if (c == sep) {
            parts.push_back(cur);
            cur.clear();
        } else {
            cur += c;
        }
    }
    parts.push_back(cur);
    return parts;
}

std::string category_of_id(const std::string& id) {
    auto pos = id.rfind('_');
    if (pos != std::string::npos && pos > 0 && all_digits(id.substr(pos + 1))) return id.substr(0, pos);
    return id;
}

// "{k}_elements" -> k, or 0.
int k_of_dir(const std::string& name) {
    const std::string suffix = "_elements";
    if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
        return 0;
    std::string num = name.substr(0, name.size() - suffix.size());
    return all_digits(num) && num.size() < 4 ? std::stoi(num) : 0;
}

struct Builder {
    RunIndex index;
    std::map<std::string, size_t> set_pos;  // style|k|key -> position in index.sets

    std::set<std::string> pngs;  // canonical paths already indexed

    CompositionSet& set_for(const std::string& style, int k, const std::vector<std::string>& ids,
                            std::optional<uint64_t> seed) {
        std::string key = join(ids, "_");
        std::string id = style + "|" + std::to_string(k) + "|" + key + "|" + (seed ? std::to_string(*seed) : "");
        auto it = set_pos.find(id);
        if (it != set_pos.end()) return index.sets[it->second];
        CompositionSet s;
        s.style = style;
        s.k = k;
        s.lora_ids = ids;
        s.key = key;
        s.seed = seed;
        set_pos[id] = index.sets.size();
        index.sets.push_back(std::move(s));
        return index.sets.back();
    }

    void add(const std::string& style, int k, const std::string& method, const std::vector<std::string>& ids,
             std::optional<uint64_t> seed, RunImage image, bool replace) {
        std::error_code ec;
        std::string canon = fs::weakly_canonical(image.png, ec).string();
        if (!replace && pngs.count(canon)) return;
        pngs.insert(canon);
        CompositionSet& s = set_for(style, k, ids, seed);
        auto it = s.images.find(method);
        if (it != s.images.end() && !replace) return;
        if (it == s.images.end()) ++index.images;
        if (std::find(index.methods.begin(), index.methods.end(), method) == index.methods.end())
            index.methods.push_back(method);
        image.method = method;
        s.images[method] = std::move(image);
    }
};

struct ManifestInfo {
    std::string prompt;
    std::optional<uint64_t> seed;
    std::vector<LoraElement> loras;
};

LoraElement element_from_json(const json& l) {
    LoraElement e;
    e.id = l["id"].get<std::string>();
    e.category = l.contains("category") && l["category"].is_string() ? l["category"].get<std::string>()
                                                                      : category_of_id(e.id);
    e.name = l.contains("name") && l["name"].is_string() ? l["name"].get<std::string>() : "";
    if (l.contains("trigger") && l["trigger"].is_array())
        for (const auto& t : l["trigger"])
            if (t.is_string()) e.triggers.push_back(t.get<std::string>());
    if (l.contains("trigger") && l["trigger"].is_string()) e.triggers.push_back(l["trigger"].get<std::string>());
    if (e.name.empty()) e.name = e.id;
    return e;
}

void read_loras(const json& arr, std::vector<LoraElement>& out) {
    if (!arr.is_array()) return;
    for (const auto& l : arr)
        if (l.is_object() && l.contains("id") && l["id"].is_string() &&
            ((l.contains("name") && l["name"].is_string()) || l.contains("trigger")))
            out.push_back(element_from_json(l));
}

std::optional<uint64_t> seed_of(const json& v) {
    if (v.is_number_unsigned()) return v.get<uint64_t>();
    if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
    return std::nullopt;
}

ManifestInfo read_manifest(const std::string& manifest) {
    ManifestInfo m;
    if (manifest.empty()) return m;
    std::ifstream in(manifest);
    json j = json::parse(in, nullptr, false);
    if (!j.is_object()) return m;
    if (j.contains("prompt") && j["prompt"].is_string()) m.prompt = j["prompt"].get<std::string>();
    else if (j.contains("settings") && j["settings"].is_object() && j["settings"].contains("prompt") &&
             j["settings"]["prompt"].is_string())
        m.prompt = j["settings"]["prompt"].get<std::string>();
    if (j.contains("batch") && j["batch"].is_object()) {
        const json& b = j["batch"];
        if (b.contains("noise") && b["noise"].is_object() && b["noise"].contains("seed")) m.seed = seed_of(b["noise"]["seed"]);
        if (b.contains("lora_set")) read_loras(b["lora_set"], m.loras);
    }
    if (!m.seed && j.contains("seed")) m.seed = seed_of(j["seed"]);
    return m;
}

std::string layout_png(const fs::path& run, const std::string& style, int k, const std::string& method,
                       const std::string& key) {
    return (run / style / (std::to_string(k) + "_elements") / (method + "_" + key + ".png")).string();
}

}  // namespace

std::string CompositionSet::prompt() const {
    for (const auto& [method, img] : images)
        if (!img.prompt.empty()) return img.prompt;
    return "";
}

std::string CompositionSet::id() const { return seed ? key + "#seed" + std::to_string(*seed) : key; }

bool parse_image_stem(const std::string& stem_in, std::string& method, std::vector<std::string>& ids,
                      std::optional<uint64_t>* seed) {
    std::string stem = stem_in;
    if (seed) seed->reset();
    auto pos = stem.rfind("_seed");
    if (pos != std::string::npos && all_digits(stem.substr(pos + 5)) && stem.size() - pos - 5 < 20) {
        if (seed) *seed = std::stoull(stem.substr(pos + 5));
        stem = stem.substr(0, pos);
    }
    auto parts = split(stem, '_');
    if (parts.size() < 3 || parts[0].empty()) return false;
    method = parts[0];
    ids.clear();
    std::string cur;
    for (size_t i = 1; i < parts.size(); ++i) {
        if (parts[i].empty()) return false;
        cur += cur.empty() ? parts[i] : "_" + parts[i];
        if (all_digits(parts[i])) {
            if (cur == parts[i]) return false;  // an id must have a name part before its number
            ids.push_back(cur);
            cur.clear();
        }
    }
    return cur.empty() && !ids.empty();
}

namespace {

// Where the image of a batch.jsonl line may be: its "output" or "png" field (relative to the run or as
// written), then the layout's path.
std::vector<std::string> png_candidates(const fs::path& run, const json& j, const std::string& style, int k,
                                        const std::string& method, const std::string& key) {
    std::vector<std::string> candidates;
    for (const char* field : {"output", "png"}) {
        if (!j.contains(field) || !j[field].is_string()) continue;
        fs::path out = j[field].get<std::string>();
        if (out.is_absolute()) {
            candidates.push_back(out.string());
        } else {
            candidates.push_back((run / out).string());
            candidates.push_back(out.string());
        }
    }
    candidates.push_back(layout_png(run, style, k, method, key));
    return candidates;
}

// Adds the image of one batch.jsonl record; returns why it was skipped, or "" when it was added.
std::string add_log_record(Builder& b, const fs::path& run, const json& j) {
    if (!j.is_object()) return "not a JSON object";
    if (j.contains("status") && j["status"].is_string() && j["status"] != "ok" && j["status"] != "done" &&
        j["status"] != "finished")
        return "status " + j["status"].get<std::string>();
    try {
        std::string style = j.at("style").get<std::string>();
        int k = j.at("k").is_string() ? std::stoi(j.at("k").get<std::string>()) : j.at("k").get<int>();
        std::string method = j.at("method").get<std::string>();
        std::vector<std::string> ids = j.at("lora_ids").get<std::vector<std::string>>();
        if (style.empty() || method.empty() || ids.empty()) return "empty style, method or lora_ids";
        const std::string key = join(ids, "_");
        RunImage img;
        std::error_code ec;
        const std::vector<std::string> candidates = png_candidates(run, j, style, k, method, key);
        for (const auto& c : candidates)
            if (img.png.empty() && fs::is_regular_file(c, ec)) img.png = c;
        if (img.png.empty()) return "image not found (" + candidates.front() + ")";
        fs::path manifest = fs::path(img.png).replace_extension(".json");
        if (fs::is_regular_file(manifest, ec)) img.manifest = manifest.string();
        ManifestInfo mi = read_manifest(img.manifest);
        if (j.contains("prompt") && j["prompt"].is_string()) img.prompt = j["prompt"].get<std::string>();
        if (img.prompt.empty()) img.prompt = mi.prompt;
        std::optional<uint64_t> seed = j.contains("seed") ? seed_of(j["seed"]) : std::nullopt;
        if (!seed) seed = mi.seed;
        std::vector<LoraElement> loras;
        if (j.contains("loras")) read_loras(j["loras"], loras);
        loras.insert(loras.end(), mi.loras.begin(), mi.loras.end());
        for (const auto& e : loras) b.index.logged_loras.emplace_back(style, e);
        b.add(style, k, method, ids, seed, std::move(img), /*replace=*/true);  // a later line wins
        return "";
    } catch (const std::exception& e) {
        return std::string("missing or mistyped field: ") + e.what();
    }
}

void index_batch_log(Builder& b, const fs::path& run) {
    fs::path log = run / "batch.jsonl";
    std::error_code ec;
    if (!fs::exists(log, ec)) return;
    b.index.has_batch_log = true;
    std::ifstream in(log);
    std::string line;
    size_t lineno = 0;
    while (std::getline(in, line)) {
        ++lineno;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        const std::string why = add_log_record(b, run, json::parse(line, nullptr, false));
        if (why.empty()) continue;
        ++b.index.skipped_log_lines;
        spdlog::debug("batch.jsonl line {}: {}", lineno, why);
    }
}

// Finished images (PNG + manifest) of one {style}/{k}_elements folder that the log does not list.
void index_k_folder(Builder& b, const fs::path& folder, const std::string& style, int k) {
    std::error_code ec;
    std::vector<fs::path> pngs;
    for (const auto& f : fs::directory_iterator(folder, ec))
        if (f.is_regular_file(ec) && f.path().extension() == ".png") pngs.push_back(f.path());
    std::sort(pngs.begin(), pngs.end());
    for (const auto& p : pngs) {
        std::string stem = p.stem().string();
        if (stem.rfind("sheet_", 0) == 0) continue;
        std::string method;
        std::vector<std::string> ids;
        std::optional<uint64_t> stem_seed;
        if (!parse_image_stem(stem, method, ids, &stem_seed)) continue;
        fs::path manifest = fs::path(p).replace_extension(".json");
        if (!fs::is_regular_file(manifest, ec)) continue;  // not finished (or not ours)
        if (b.pngs.count(fs::weakly_canonical(p, ec).string())) continue;
        RunImage img;
        img.png = p.string();
        img.manifest = manifest.string();
        ManifestInfo mi = read_manifest(img.manifest);
        img.prompt = mi.prompt;
        for (const auto& e : mi.loras) b.index.logged_loras.emplace_back(style, e);
        b.add(style, k, method, ids, mi.seed ? mi.seed : stem_seed, std::move(img), /*replace=*/false);
    }
}

void index_folder_tree(Builder& b, const fs::path& run) {
    std::error_code ec;
    for (const auto& style_entry : fs::directory_iterator(run, ec)) {
        if (!style_entry.is_directory(ec)) continue;
        std::string style = style_entry.path().filename().string();
        if (style == "eval" || style.empty() || style[0] == '.') continue;
        for (const auto& k_entry : fs::directory_iterator(style_entry.path(), ec)) {
            if (!k_entry.is_directory(ec)) continue;
            int k = k_of_dir(k_entry.path().filename().string());
            if (k > 0) index_k_folder(b, k_entry.path(), style, k);
        }
    }
}

}  // namespace

RunIndex index_run(const std::string& run_dir) {
    fs::path run(run_dir);
    std::error_code ec;
    if (!fs::is_directory(run, ec))
        throw UsageError("--run: '" + run_dir + "' is not a folder (expected the out folder of `multilora batch`)");
    Builder b;
    b.index.run_dir = run_dir;
    index_batch_log(b, run);
    index_folder_tree(b, run);
    if (b.index.images == 0) {
        std::ostringstream msg;
        msg << "no batch output in '" << run_dir << "': expected " << (run / "batch.jsonl").string()
            << " or images " << (run / "{style}" / "{k}_elements" / "{method}_{ids}.png").string()
            << " with their .json manifests (run `multilora batch` first)";
        if (b.index.skipped_log_lines)
            msg << "; batch.jsonl has " << b.index.skipped_log_lines << " line(s) whose image is missing or unreadable";
        throw UsageError(msg.str());
    }
    for (auto& s : b.index.sets) {
        fs::path sheet = run / s.style / (std::to_string(s.k) + "_elements") / ("sheet_" + s.key + ".png");
        if (fs::is_regular_file(sheet, ec)) s.sheet = sheet.string();
    }
    return std::move(b.index);
}

// ---- LoraCatalog ----

void LoraCatalog::add_json(const std::string& style, const json& info, const std::string& source) {
    if (!info.is_object())
        throw UsageError(source + ": not a lora_info file (expected {category: [{id, name, trigger}]})");
    auto& dst = by_style_[style];
    size_t added = 0;
    for (const auto& [category, items] : info.items()) {
        if (!items.is_array())
            throw UsageError(source + ": category '" + category + "' is not a list of LoRAs");
        for (size_t i = 0; i < items.size(); ++i) {
            const auto& it = items[i];
            if (!it.is_object() || !it.contains("id") || !it["id"].is_string())
                throw UsageError(source + ": " + category + "[" + std::to_string(i) + "] has no string 'id'");
            LoraElement e;
            e.id = it["id"].get<std::string>();
            e.category = category;
            e.name = it.contains("name") && it["name"].is_string() ? it["name"].get<std::string>() : e.id;
            if (it.contains("trigger")) {
                if (it["trigger"].is_array()) {
                    for (const auto& t : it["trigger"])
                        if (t.is_string()) e.triggers.push_back(t.get<std::string>());
                } else if (it["trigger"].is_string()) {
                    e.triggers.push_back(it["trigger"].get<std::string>());
                }
            }
            dst[e.id] = e;
            ++added;
        }
    }
    sources_.push_back(source + (style.empty() ? "" : " (" + style + ")") + ": " + std::to_string(added) + " LoRAs");
}

void LoraCatalog::add_file(const std::string& style, const std::string& path) {
    std::ifstream in(path);
    if (!in) throw UsageError("--lora-info: cannot read '" + path + "'");
    json j = json::parse(in, nullptr, false);
    if (j.is_discarded()) throw UsageError("--lora-info: '" + path + "' is not valid JSON");
    add_json(style, j, path);
}

void LoraCatalog::discover(const std::string& run_dir, const std::vector<std::string>& styles) {
    fs::path run(run_dir);
    std::error_code ec;
    for (const auto& style : styles) {
        if (by_style_.count(style)) continue;  // given explicitly
        for (const fs::path& p : {run / (style + "_lora_info.json"), run / style / "lora_info.json"}) {
            if (fs::is_regular_file(p, ec)) {
                add_file(style, p.string());
                break;
            }
        }
    }
    if (!by_style_.count("") && fs::is_regular_file(run / "lora_info.json", ec))
        add_file("", (run / "lora_info.json").string());
}

void LoraCatalog::add_logged(const RunIndex& index) {
    auto loaded = [&](const std::string& style, const std::string& id) {
        for (const std::string& st : {style, std::string()}) {
            auto it = by_style_.find(st);
            if (it != by_style_.end() && it->second.count(id)) return true;
        }
        return false;
    };
    for (const auto& [style, e] : index.logged_loras)
        if (!loaded(style, e.id)) {
            auto& dst = by_style_[style];
            dst[e.id] = e;
        }
}

std::optional<LoraElement> LoraCatalog::find(const std::string& style, const std::string& id) const {
    for (const std::string& s : {style, std::string()}) {
        auto st = by_style_.find(s);
        if (st == by_style_.end()) continue;
        auto it = st->second.find(id);
        if (it != st->second.end()) return it->second;
    }
    if (builtin_) {
        static const json rows = json::parse(detail::composlora_catalog_json());
        for (const auto& r : rows) {
            if (r[0] == style && r[1] == id) {
                LoraElement e;
                e.id = id;
                e.category = r[2].get<std::string>();
                e.name = r[3].get<std::string>();
                e.triggers = r[4].get<std::vector<std::string>>();
                return e;
            }
        }
    }
    return std::nullopt;
}

int LoraCatalog::describe(CompositionSet& set) const {
    set.elements.clear();
    int unknown = 0;
    for (const auto& id : set.lora_ids) {
        auto e = find(set.style, id);
        if (e) {
            set.elements.push_back(*e);
        } else {
            LoraElement f;
            f.id = id;
            f.category = category_of_id(id);
            f.name = id;
            f.described = false;
            set.elements.push_back(f);
            ++unknown;
        }
    }
    return unknown;
}

}  // namespace multilora::eval
