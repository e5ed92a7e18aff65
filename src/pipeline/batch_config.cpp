#include "multilora/pipeline/batch_config.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <set>

#include "multilora/io/atomic_file.h"
#include "multilora/sampling/scheduler.h"
#include "multilora/util/error.h"

namespace fs = std::filesystem;

namespace multilora::pipeline {
namespace {

using ojson = nlohmann::ordered_json;

std::string json_quote(const std::string& s) { return ojson(s).dump(); }

std::string type_name(const ojson& j) {
    if (j.is_null()) return "null";
    if (j.is_boolean()) return j.get<bool>() ? "true" : "false";
    if (j.is_number_integer() || j.is_number_unsigned()) return "the number " + j.dump();
    if (j.is_number_float()) return "the number " + j.dump();
    if (j.is_string()) return "the string " + j.dump();
    if (j.is_array()) return "an array";
    return "an object";
}

size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (size_t j = 1; j <= b.size(); ++j)
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

std::string closest(const std::string& word, const std::vector<std::string>& choices) {
    std::string best;
    size_t best_d = std::numeric_limits<size_t>::max();
    for (const auto& c : choices) {
        size_t d = edit_distance(word, c);
        if (d < best_d) best_d = d, best = c;
    }
    return best_d <= std::max<size_t>(2, word.size() / 3) ? best : std::string();
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
    std::string out;
    for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
    return out;
}

// "a, b or c"
std::string one_of(const std::vector<std::string>& v) {
    if (v.size() == 1) return v[0];
    std::vector<std::string> head(v.begin(), v.end() - 1);
    return join(head, ", ") + " or " + v.back();
}

bool safe_name(const std::string& s) {
    if (s.empty() || s[0] == '.' || s.size() > 120) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
               c == '.';
    });
}

// Collects "path: message" lines.
struct Errors {
    std::vector<std::string> lines;
    void add(const std::string& path, const std::string& msg) { lines.push_back(path + ": " + msg); }
};

const std::vector<std::string>& method_choices() {
    static const std::vector<std::string> m{"merge", "switch", "composite", "none"};
    return m;
}

}  // namespace

const LoraEntry* LoraInfo::find(const std::string& id) const {
    for (const auto& c : categories)
        for (const auto& e : c.entries)
            if (e.id == id) return &e;
    return nullptr;
}

std::vector<const LoraEntry*> LoraInfo::all() const {
    std::vector<const LoraEntry*> out;
    for (const auto& c : categories)
        for (const auto& e : c.entries) out.push_back(&e);
    return out;
}

std::string BatchConfig::lora_file(const std::string& id) const {
    return (fs::path(lora_dir) / (id + ".safetensors")).string();
}

std::string resolve_against(const std::string& dir, const std::string& path) {
    if (path.empty()) return path;
    fs::path p(path);
    if (path == "~" || path.rfind("~/", 0) == 0) {
        const char* home = std::getenv("HOME");
        if (home && *home) p = fs::path(home) / path.substr(path.size() > 1 ? 2 : 1);
    }
    if (!p.is_absolute()) {
        std::error_code ec;
        fs::path base = fs::absolute(dir.empty() ? fs::path(".") : fs::path(dir), ec);
        p = base / p;
    }
    std::string out = p.lexically_normal().string();
    if (out.size() > 1 && out.back() == '/') out.pop_back();
    return out.empty() ? std::string(".") : out;
}

LoraInfo parse_lora_info_json(const ojson& j, const std::string& label) {
    Errors errors;
    LoraInfo info;
    if (!j.is_object()) {
        throw UsageError(label + ": expected an object {category: [{id, name, trigger, url}, ...]}, got " +
                         type_name(j));
    }
    std::set<std::string> ids;
    for (const auto& [category, list] : j.items()) {
        LoraCategory cat;
        cat.name = category;
        if (!list.is_array()) {
            errors.add(category, "expected an array of LoRA entries, got " + type_name(list));
            continue;
        }
        for (size_t i = 0; i < list.size(); ++i) {
            const ojson& e = list[i];
            const std::string at = category + "[" + std::to_string(i) + "]";
            if (!e.is_object()) {
                errors.add(at, "expected an object {id, name, trigger, url}, got " + type_name(e));
                continue;
            }
            LoraEntry entry;
            entry.category = category;
            auto id = e.find("id");
            if (id == e.end()) errors.add(at, "missing \"id\"");
            else if (!id->is_string()) errors.add(at + ".id", "expected a string, got " + type_name(*id));
            else if (!safe_name(id->get<std::string>()))
                errors.add(at + ".id", json_quote(id->get<std::string>()) +
                                           " is not a usable file stem (letters, digits, '_', '-', '.'; no leading '.')");
            else if (!ids.insert(id->get<std::string>()).second)
                errors.add(at + ".id", "duplicate id " + json_quote(id->get<std::string>()));
            else entry.id = id->get<std::string>();
            auto trig = e.find("trigger");
            if (trig == e.end()) errors.add(at, "missing \"trigger\"");
            else if (!trig->is_array() || !std::all_of(trig->begin(), trig->end(), [](const ojson& t) { return t.is_string(); }))
                errors.add(at + ".trigger", "expected an array of strings, got " + type_name(*trig));
            else entry.trigger = trig->get<std::vector<std::string>>();
            auto name = e.find("name");
            if (name != e.end() && !name->is_string()) errors.add(at + ".name", "expected a string, got " + type_name(*name));
            entry.name = name != e.end() && name->is_string() ? name->get<std::string>() : entry.id;
            auto url = e.find("url");
            if (url != e.end() && !url->is_string()) errors.add(at + ".url", "expected a string, got " + type_name(*url));
            if (url != e.end() && url->is_string()) entry.url = url->get<std::string>();
            cat.entries.push_back(std::move(entry));
        }
        info.categories.push_back(std::move(cat));
    }
    if (errors.lines.empty() &&
        std::none_of(info.categories.begin(), info.categories.end(), [](const LoraCategory& c) { return c.name == "character"; }))
        errors.lines.push_back("no \"character\" category (every ComposLoRA set starts with a character)");
    if (!errors.lines.empty()) {
        std::string msg;
        for (const auto& l : errors.lines) msg += (msg.empty() ? "" : "\n") + label + ": " + l;
        throw UsageError(msg);
    }
    return info;
}

LoraInfo parse_lora_info(const std::string& path) {
    std::string text;
    try {
        text = io::read_file(path);
    } catch (const std::exception& e) {
        throw UsageError(std::string("lora_info: ") + e.what());
    }
    ojson j;
    try {
        j = ojson::parse(text);
    } catch (const std::exception& e) {
        throw UsageError(path + ": not valid JSON: " + e.what());
    }
    return parse_lora_info_json(j, path);
}

const std::vector<std::string>& batch_config_keys() {
    static const std::vector<std::string> keys{
        "style",          "model",           "vae",         "lora_dir",  "lora_info",       "prompt",
        "negative_prompt", "methods",        "k",           "seeds",     "steps",           "guidance_scale",
        "width",          "height",          "scheduler",   "lora_scale", "switch_interval", "switch_schedule",
        "out",            "threads",         "dtype",       "device",    "long_prompt",     "max_batch_rows"};
    return keys;
}

BatchConfig parse_batch_config(const ojson& j, const std::string& config_path) {
    BatchConfig c;
    c.config_path = config_path;
    c.config_dir = fs::path(config_path).parent_path().string();
    Errors errors;
    if (!j.is_object()) throw UsageError(config_path + ": expected a JSON object at the top level, got " + type_name(j));

    const auto& keys = batch_config_keys();
    for (const auto& [key, value] : j.items()) {
        (void)value;
        if (!key.empty() && key[0] == '_') continue;  // comments: "_comment", "_about", ...
        if (std::find(keys.begin(), keys.end(), key) != keys.end()) continue;
        std::string hint = closest(key, keys);
        errors.add(key, "unknown key" + (hint.empty() ? std::string(" (keys starting with '_' are comments)")
                                                      : " (did you mean " + json_quote(hint) + "?)"));
    }

    auto get = [&](const std::string& key) -> const ojson* {
        auto it = j.find(key);
        return it == j.end() ? nullptr : &*it;
    };
    auto string_key = [&](const std::string& key, std::string& out, bool required, bool allow_empty) {
        const ojson* v = get(key);
        if (!v) {
            if (required) errors.add(key, "missing (required)");
            return;
        }
        if (v->is_null() && !required) return;
        if (!v->is_string()) return errors.add(key, "expected a string, got " + type_name(*v));
        out = v->get<std::string>();
        if (!allow_empty && out.empty()) errors.add(key, "must not be empty");
    };
    auto int_key = [&](const std::string& key, int& out, int lo, int hi, bool required, const std::string& what = "") {
        const ojson* v = get(key);
        if (!v) {
            if (required) errors.add(key, "missing (required)");
            return;
        }
        if (!v->is_number_integer() && !v->is_number_unsigned())
            return errors.add(key, "expected an integer, got " + type_name(*v));
        int64_t x = v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())
                        ? std::numeric_limits<int64_t>::max()
                        : v->get<int64_t>();
        if (x < lo || x > hi)
            return errors.add(key, "must be " + (what.empty() ? "between " + std::to_string(lo) + " and " + std::to_string(hi) : what) +
                                       " (got " + std::to_string(x) + ")");
        out = static_cast<int>(x);
    };
    auto number_key = [&](const std::string& key, double& out, double lo, double hi, bool required) {
        const ojson* v = get(key);
        if (!v) {
            if (required) errors.add(key, "missing (required)");
            return;
        }
        if (!v->is_number()) return errors.add(key, "expected a number, got " + type_name(*v));
        double x = v->get<double>();
        if (!(x >= lo && x <= hi))
            return errors.add(key, "must be between " + ojson(lo).dump() + " and " + ojson(hi).dump() + " (got " + v->dump() + ")");
        out = x;
    };
    auto choice_key = [&](const std::string& key, std::string& out, const std::vector<std::string>& choices) {
        const ojson* v = get(key);
        if (!v) return;
        if (!v->is_string()) return errors.add(key, "expected a string, got " + type_name(*v));
        std::string s = v->get<std::string>();
        if (std::find(choices.begin(), choices.end(), s) == choices.end()) {
            std::string hint = closest(s, choices);
            return errors.add(key, "unknown value " + json_quote(s) + " (choose " + one_of(choices) + ")" +
                                       (hint.empty() ? "" : "; did you mean " + json_quote(hint) + "?"));
        }
        out = s;
    };

    string_key("style", c.style, true, false);
    if (!c.style.empty() && !safe_name(c.style))
        errors.add("style", json_quote(c.style) + " must be usable as a folder name (letters, digits, '_', '-', '.')");
    std::string model, vae, lora_dir, lora_info, out;
    string_key("model", model, true, false);
    string_key("vae", vae, false, true);
    string_key("lora_dir", lora_dir, true, false);
    string_key("lora_info", lora_info, true, false);
    string_key("out", out, true, false);
    string_key("prompt", c.prompt, true, true);
    string_key("negative_prompt", c.negative_prompt, false, true);

    // methods: non-empty array of distinct known names.
    if (const ojson* v = get("methods"); !v) {
        errors.add("methods", "missing (required; e.g. [\"merge\", \"switch\", \"composite\"])");
    } else if (!v->is_array() || v->empty()) {
        errors.add("methods", "expected a non-empty array of method names, got " + type_name(*v));
    } else {
        for (size_t i = 0; i < v->size(); ++i) {
            const std::string at = "methods[" + std::to_string(i) + "]";
            const ojson& m = (*v)[i];
            if (!m.is_string()) {
                errors.add(at, "expected a method name, got " + type_name(m));
                continue;
            }
            std::string name = m.get<std::string>();
            if (std::find(method_choices().begin(), method_choices().end(), name) == method_choices().end()) {
                std::string hint = closest(name, method_choices());
                errors.add(at, "unknown method " + json_quote(name) + " (choose " + one_of(method_choices()) + ")" +
                                   (hint.empty() ? "" : "; did you mean " + json_quote(hint) + "?"));
            } else if (std::find(c.methods.begin(), c.methods.end(), name) != c.methods.end()) {
                errors.add(at, "method " + json_quote(name) + " is listed twice");
            } else {
                c.methods.push_back(name);
            }
        }
    }

    // k: non-empty array of distinct integers >= 1 (the upper bound needs lora_info).
    std::vector<std::pair<size_t, int>> k_positions;
    if (const ojson* v = get("k"); !v) {
        errors.add("k", "missing (required; e.g. [2, 3, 4, 5])");
    } else if (!v->is_array() || v->empty()) {
        errors.add("k", "expected a non-empty array of set sizes, got " + type_name(*v));
    } else {
        for (size_t i = 0; i < v->size(); ++i) {
            const std::string at = "k[" + std::to_string(i) + "]";
            const ojson& x = (*v)[i];
            if (!x.is_number_integer() && !x.is_number_unsigned()) {
                errors.add(at, "expected an integer, got " + type_name(x));
                continue;
            }
            int64_t k = x.is_number_unsigned() ? int64_t(std::min<uint64_t>(x.get<uint64_t>(), 1000)) : x.get<int64_t>();
            if (k < 1) errors.add(at, "a set has at least 1 LoRA (got " + std::to_string(k) + ")");
            else if (std::find(c.ks.begin(), c.ks.end(), int(k)) != c.ks.end())
                errors.add(at, std::to_string(k) + " is listed twice");
            else {
                c.ks.push_back(static_cast<int>(std::min<int64_t>(k, 1000)));
                k_positions.emplace_back(i, c.ks.back());
            }
        }
    }

    // seeds: non-empty array of distinct non-negative integers; default [111], the paper's.
    if (const ojson* v = get("seeds"); !v) {
        c.seeds = {111};
    } else if (!v->is_array() || v->empty()) {
        errors.add("seeds", "expected a non-empty array of seeds, got " + type_name(*v));
    } else {
        for (size_t i = 0; i < v->size(); ++i) {
            const std::string at = "seeds[" + std::to_string(i) + "]";
            const ojson& x = (*v)[i];
            if (x.is_number_unsigned() || (x.is_number_integer() && x.get<int64_t>() >= 0)) {
                uint64_t s = x.get<uint64_t>();
                if (std::find(c.seeds.begin(), c.seeds.end(), s) != c.seeds.end())
                    errors.add(at, std::to_string(s) + " is listed twice");
                else c.seeds.push_back(s);
            } else if (x.is_number_integer()) {
                errors.add(at, "seeds are non-negative (got " + x.dump() + ")");
            } else {
                errors.add(at, "expected an integer, got " + type_name(x));
            }
        }
    }

    int_key("steps", c.steps, 1, 1000, false);
    number_key("guidance_scale", c.guidance_scale, 0.0, 100.0, false);
    int_key("width", c.width, 8, 8192, false);
    int_key("height", c.height, 8, 8192, false);
    if (get("width") && c.width % 8 != 0) errors.add("width", "must be a multiple of 8 (got " + std::to_string(c.width) + ")");
    if (get("height") && c.height % 8 != 0) errors.add("height", "must be a multiple of 8 (got " + std::to_string(c.height) + ")");
    choice_key("scheduler", c.scheduler, sampling::scheduler_names());
    number_key("lora_scale", c.lora_scale, -100.0, 100.0, false);
    int_key("switch_interval", c.switch_interval, 1, 1000, false);
    choice_key("switch_schedule", c.switch_schedule, {"paper", "reference"});
    int_key("threads", c.threads, 0, 4096, false, "0 (all cores) or a positive thread count");
    choice_key("dtype", c.dtype, {"fp32", "bf16", "fp16"});
    if (const ojson* v = get("device"); v) {
        if (!v->is_string()) errors.add("device", "expected a string, got " + type_name(*v));
        else {
            c.device = v->get<std::string>();
            bool ok = c.device == "cpu" || c.device == "cuda" ||
                      (c.device.rfind("cuda:", 0) == 0 && c.device.size() > 5 &&
                       std::all_of(c.device.begin() + 5, c.device.end(), [](char ch) { return ch >= '0' && ch <= '9'; }));
            if (!ok) errors.add("device", "unknown device " + json_quote(c.device) + " (choose cpu, cuda or cuda:N)");
        }
    }
    choice_key("long_prompt", c.long_prompt, {"truncate", "chunk"});
    int_key("max_batch_rows", c.max_batch_rows, 0, 1 << 20, false);

    c.model = resolve_against(c.config_dir, model);
    c.vae = resolve_against(c.config_dir, vae);
    c.lora_dir = resolve_against(c.config_dir, lora_dir);
    c.lora_info_path = resolve_against(c.config_dir, lora_info);
    c.out = resolve_against(c.config_dir, out);

    // lora_info: read it now, so the set sizes can be checked against its categories.
    if (!lora_info.empty()) {
        try {
            c.lora_info = parse_lora_info(c.lora_info_path);
            const int categories = static_cast<int>(c.lora_info.categories.size());
            for (const auto& [i, k] : k_positions)
                if (k > categories)
                    errors.add("k[" + std::to_string(i) + "]", std::to_string(k) + " is more than the " +
                                                                   std::to_string(categories) + " categories of " +
                                                                   c.lora_info_path);
        } catch (const UsageError& e) {
            std::string msg = e.what();
            if (msg.rfind("lora_info: ", 0) == 0) errors.lines.push_back(msg);
            else {
                size_t start = 0;
                while (start <= msg.size()) {
                    size_t end = msg.find('\n', start);
                    errors.add("lora_info", msg.substr(start, end == std::string::npos ? std::string::npos : end - start));
                    if (end == std::string::npos) break;
                    start = end + 1;
                }
            }
        }
    }

    if (!errors.lines.empty()) {
        std::string msg;
        for (const auto& l : errors.lines) msg += (msg.empty() ? "" : "\n") + config_path + ": " + l;
        throw UsageError(msg);
    }
    return c;
}

BatchConfig load_batch_config(const std::string& path) {
    std::error_code ec;
    if (!fs::exists(path, ec)) throw UsageError("config file not found: '" + path + "'");
    if (fs::is_directory(path, ec)) throw UsageError("'" + path + "' is a folder; pass a config .json file");
    std::string text;
    try {
        text = io::read_file(path);
    } catch (const std::exception& e) {
        throw UsageError(e.what());
    }
    ojson j;
    try {
        j = ojson::parse(text);
    } catch (const std::exception& e) {
        throw UsageError(path + ": not valid JSON: " + e.what());
    }
    return parse_batch_config(j, path);
}

std::vector<std::string> missing_input_files(const BatchConfig& c, const std::vector<std::string>& lora_ids) {
    std::vector<std::string> missing;
    std::error_code ec;
    if (!fs::exists(c.model, ec)) missing.push_back("model: " + c.model);
    if (!c.vae.empty() && !fs::exists(c.vae, ec)) missing.push_back("vae: " + c.vae);
    if (!fs::is_directory(c.lora_dir, ec)) {
        missing.push_back("lora_dir: " + c.lora_dir);
        return missing;
    }
    for (const auto& id : lora_ids)
        if (!fs::is_regular_file(c.lora_file(id), ec)) missing.push_back("lora_dir: " + c.lora_file(id));
    return missing;
}

}  // namespace multilora::pipeline
