#include "multilora/batch/config.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <set>

#include "multilora/compose/registry.h"
#include "multilora/io/atomic_file.h"
#include "multilora/sampling/scheduler.h"
#include "multilora/util/error.h"
#include "multilora/util/strings.h"

namespace fs = std::filesystem;

namespace multilora::batch {
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
    static const std::vector<std::string> m = compose::registry().names();
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
        "out",            "threads",         "dtype",       "device",    "long_prompt",     "max_batch_rows",
        "method_args",    "quick",           "allow_nan",   "max_memory_gb",   "prompt_syntax",   "embedding_dir", "vae_tile"};
    return keys;
}

namespace {

// Reads one config object, collecting every problem as "key.path: message" instead of stopping at the first.
class ConfigReader {
public:
    explicit ConfigReader(const ojson& j) : j_(j) {}

    Errors errors;

    const ojson* get(const std::string& key) const {
        auto it = j_.find(key);
        return it == j_.end() ? nullptr : &*it;
    }
    void unknown_keys(const std::vector<std::string>& keys);
    void string_key(const std::string& key, std::string& out, bool required, bool allow_empty);
    void int_key(const std::string& key, int& out, int lo, int hi, bool required, const std::string& what = "");
    void number_key(const std::string& key, double& out, double lo, double hi, bool required);
    void choice_key(const std::string& key, std::string& out, const std::vector<std::string>& choices);
    void bool_key(const std::string& key, bool& out);

private:
    const ojson& j_;
};

void ConfigReader::unknown_keys(const std::vector<std::string>& keys) {
    for (const auto& [key, value] : j_.items()) {
        (void)value;
        if (!key.empty() && key[0] == '_') continue;  // comments: "_comment", "_about", ...
        if (std::find(keys.begin(), keys.end(), key) != keys.end()) continue;
        std::string hint = closest(key, keys);
        errors.add(key, "unknown key" + (hint.empty() ? std::string(" (keys starting with '_' are comments)")
                                                      : " (did you mean " + json_quote(hint) + "?)"));
    }
}

void ConfigReader::string_key(const std::string& key, std::string& out, bool required, bool allow_empty) {
    const ojson* v = get(key);
    if (!v) {
        if (required) errors.add(key, "missing (required)");
        return;
    }
    if (v->is_null() && !required) return;
    if (!v->is_string()) return errors.add(key, "expected a string, got " + type_name(*v));
    out = v->get<std::string>();
    if (!allow_empty && out.empty()) errors.add(key, "must not be empty");
}

void ConfigReader::int_key(const std::string& key, int& out, int lo, int hi, bool required, const std::string& what) {
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
        return errors.add(key, "must be " +
                                   (what.empty() ? "between " + std::to_string(lo) + " and " + std::to_string(hi) : what) +
                                   " (got " + std::to_string(x) + ")");
    out = static_cast<int>(x);
}

void ConfigReader::number_key(const std::string& key, double& out, double lo, double hi, bool required) {
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
}

void ConfigReader::bool_key(const std::string& key, bool& out) {
    const ojson* v = get(key);
    if (!v) return;
    if (!v->is_boolean()) return errors.add(key, "expected true or false, got " + type_name(*v));
    out = v->get<bool>();
}

void ConfigReader::choice_key(const std::string& key, std::string& out, const std::vector<std::string>& choices) {
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
}

// The paths as written (resolved later against the config's folder).
struct RawPaths {
    std::string model, vae, lora_dir, lora_info, out, embedding_dir;
};

RawPaths read_names_and_paths(ConfigReader& r, BatchConfig& c) {
    RawPaths p;
    r.string_key("style", c.style, true, false);
    if (!c.style.empty() && !safe_name(c.style))
        r.errors.add("style", json_quote(c.style) + " must be usable as a folder name (letters, digits, '_', '-', '.')");
    r.string_key("model", p.model, true, false);
    r.string_key("vae", p.vae, false, true);
    r.string_key("embedding_dir", p.embedding_dir, false, true);
    r.string_key("lora_dir", p.lora_dir, true, false);
    r.string_key("lora_info", p.lora_info, true, false);
    r.string_key("out", p.out, true, false);
    r.string_key("prompt", c.prompt, true, true);
    r.string_key("negative_prompt", c.negative_prompt, false, true);
    for (auto [key, text] : {std::pair{"prompt", &c.prompt}, std::pair{"negative_prompt", &c.negative_prompt}})
        if (text->size() > 64 * 1024)
            r.errors.add(key, "is " + std::to_string(text->size()) + " bytes long; at most 65536 are accepted (CLIP reads 77 tokens of it)");
    return p;
}

// methods: non-empty array of distinct registered names.
void read_methods(ConfigReader& r, BatchConfig& c) {
    const ojson* v = r.get("methods");
    if (!v) return r.errors.add("methods", "missing (required; e.g. [\"merge\", \"switch\", \"composite\"])");
    if (!v->is_array() || v->empty())
        return r.errors.add("methods", "expected a non-empty array of method names, got " + type_name(*v));
    for (size_t i = 0; i < v->size(); ++i) {
        const std::string at = "methods[" + std::to_string(i) + "]";
        const ojson& m = (*v)[i];
        if (!m.is_string()) {
            r.errors.add(at, "expected a method name, got " + type_name(m));
            continue;
        }
        std::string name = m.get<std::string>();
        if (std::find(method_choices().begin(), method_choices().end(), name) == method_choices().end()) {
            std::string hint = closest(name, method_choices());
            r.errors.add(at, "unknown method " + json_quote(name) + " (choose " + one_of(method_choices()) + ")" +
                                 (hint.empty() ? "" : "; did you mean " + json_quote(hint) + "?"));
        } else if (std::find(c.methods.begin(), c.methods.end(), name) != c.methods.end()) {
            r.errors.add(at, "method " + json_quote(name) + " is listed twice");
        } else {
            c.methods.push_back(name);
        }
    }
}

// k: non-empty array of distinct integers >= 1 (the upper bound needs lora_info). Returns (position, k).
std::vector<std::pair<size_t, int>> read_ks(ConfigReader& r, BatchConfig& c) {
    std::vector<std::pair<size_t, int>> positions;
    const ojson* v = r.get("k");
    if (!v) {
        r.errors.add("k", "missing (required; e.g. [2, 3, 4, 5])");
        return positions;
    }
    if (!v->is_array() || v->empty()) {
        r.errors.add("k", "expected a non-empty array of set sizes, got " + type_name(*v));
        return positions;
    }
    for (size_t i = 0; i < v->size(); ++i) {
        const std::string at = "k[" + std::to_string(i) + "]";
        const ojson& x = (*v)[i];
        if (!x.is_number_integer() && !x.is_number_unsigned()) {
            r.errors.add(at, "expected an integer, got " + type_name(x));
            continue;
        }
        int64_t k = x.is_number_unsigned() ? int64_t(std::min<uint64_t>(x.get<uint64_t>(), 1000)) : x.get<int64_t>();
        if (k < 1) r.errors.add(at, "a set has at least 1 LoRA (got " + std::to_string(k) + ")");
        else if (std::find(c.ks.begin(), c.ks.end(), int(k)) != c.ks.end())
            r.errors.add(at, std::to_string(k) + " is listed twice");
        else {
            c.ks.push_back(static_cast<int>(std::min<int64_t>(k, 1000)));
            positions.emplace_back(i, c.ks.back());
        }
    }
    return positions;
}

// seeds: non-empty array of distinct non-negative integers; default [111], the paper's.
void read_seeds(ConfigReader& r, BatchConfig& c) {
    const ojson* v = r.get("seeds");
    if (!v) {
        c.seeds = {111};
        return;
    }
    if (!v->is_array() || v->empty()) return r.errors.add("seeds", "expected a non-empty array of seeds, got " + type_name(*v));
    for (size_t i = 0; i < v->size(); ++i) {
        const std::string at = "seeds[" + std::to_string(i) + "]";
        const ojson& x = (*v)[i];
        if (x.is_number_unsigned() || (x.is_number_integer() && x.get<int64_t>() >= 0)) {
            uint64_t s = x.get<uint64_t>();
            if (std::find(c.seeds.begin(), c.seeds.end(), s) != c.seeds.end())
                r.errors.add(at, std::to_string(s) + " is listed twice");
            else c.seeds.push_back(s);
        } else if (x.is_number_integer()) {
            r.errors.add(at, "seeds are non-negative (got " + x.dump() + ")");
        } else {
            r.errors.add(at, "expected an integer, got " + type_name(x));
        }
    }
}

void read_device(ConfigReader& r, BatchConfig& c) {
    const ojson* v = r.get("device");
    if (!v) return;
    if (!v->is_string()) return r.errors.add("device", "expected a string, got " + type_name(*v));
    c.device = v->get<std::string>();
    bool ok = c.device == "cpu" || c.device == "cuda" ||
              (c.device.rfind("cuda:", 0) == 0 && c.device.size() > 5 &&
               std::all_of(c.device.begin() + 5, c.device.end(), [](char ch) { return ch >= '0' && ch <= '9'; }));
    if (!ok) r.errors.add("device", "unknown device " + json_quote(c.device) + " (choose cpu, cuda or cuda:N)");
}

void read_generation_settings(ConfigReader& r, BatchConfig& c) {
    r.int_key("steps", c.steps, 1, 1000, false);
    r.number_key("guidance_scale", c.guidance_scale, 0.0, 100.0, false);
    r.int_key("width", c.width, 8, 8192, false);
    r.int_key("height", c.height, 8, 8192, false);
    if (r.get("width") && c.width % 8 != 0) r.errors.add("width", "must be a multiple of 8 (got " + std::to_string(c.width) + ")");
    if (r.get("height") && c.height % 8 != 0)
        r.errors.add("height", "must be a multiple of 8 (got " + std::to_string(c.height) + ")");
    r.choice_key("scheduler", c.scheduler, sampling::scheduler_names());
    r.number_key("lora_scale", c.lora_scale, -100.0, 100.0, false);
    r.int_key("switch_interval", c.switch_interval, 1, 1000, false);
    r.choice_key("switch_schedule", c.switch_schedule, {"paper", "reference"});
    r.int_key("threads", c.threads, 0, 4096, false, "0 (all cores) or a positive thread count");
    r.choice_key("dtype", c.dtype, {"fp32", "bf16", "fp16"});
    read_device(r, c);
    r.choice_key("long_prompt", c.long_prompt, {"truncate", "chunk"});
    r.choice_key("prompt_syntax", c.prompt_syntax, {"plain", "a1111"});
    r.int_key("max_batch_rows", c.max_batch_rows, 0, 1 << 20, false);
    r.bool_key("allow_nan", c.allow_nan);
    r.int_key("vae_tile", c.vae_tile, 0, 8192, false);
    r.number_key("max_memory_gb", c.max_memory_gb, 0.001, 1e6, false);
}

// A method that composes none of the config's k values (K-LoRA takes exactly 2) would make no image. One
// that takes some of them runs on those sets only (the plan skips the rest).
void check_method_bounds(ConfigReader& r, const BatchConfig& c) {
    for (size_t i = 0; i < c.methods.size(); ++i) {
        const compose::MethodInfo* info = compose::registry().find(c.methods[i]);
        if (!info || c.ks.empty() || std::any_of(c.ks.begin(), c.ks.end(), [&](int k) { return info->takes(k); }))
            continue;
        const std::string lo = std::to_string(info->min_loras), hi = std::to_string(info->max_loras);
        const std::string range = info->max_loras == info->min_loras ? "exactly " + lo
                                  : info->max_loras == 0             ? "at least " + lo
                                                                     : lo + ".." + hi;
        r.errors.add("methods[" + std::to_string(i) + "]", "method " + json_quote(info->name) + " composes " + range +
                                                               " LoRAs, and no k in \"k\" is in that range");
    }
}

// Each listed method's parameters: its defaults, then the top-level keys that set them (switch_interval,
// ...), then "method_args": {"METHOD": {"PARAM": value}}.
void read_method_args(ConfigReader& r, BatchConfig& c) {
    for (const auto& name : c.methods) {
        const compose::MethodInfo& info = compose::registry().get(name);
        compose::MethodArgs args(info.params);
        for (const auto& p : info.params)
            if (const ojson* v = p.config_key.empty() ? nullptr : r.get(p.config_key)) {
                try {
                    args.set_json(p.name, nlohmann::json::parse(v->dump()), p.config_key);
                } catch (const UsageError&) {
                    // Reported by read_generation_settings with the key's own rules.
                }
            }
        c.method_args[name] = args;
    }
    const ojson* v = r.get("method_args");
    if (!v) return;
    if (!v->is_object()) return r.errors.add("method_args", "expected an object {method: {parameter: value}}, got " + type_name(*v));
    for (const auto& [method, params] : v->items()) {
        const std::string at = "method_args." + method;
        auto it = c.method_args.find(method);
        if (it == c.method_args.end()) {
            r.errors.add(at, "method " + json_quote(method) + " is not in \"methods\"");
            continue;
        }
        if (!params.is_object()) {
            r.errors.add(at, "expected an object {parameter: value}, got " + type_name(params));
            continue;
        }
        for (const auto& [param, value] : params.items()) {
            try {
                it->second.set_json(param, nlohmann::json::parse(value.dump()), at + "." + param);
            } catch (const UsageError& e) {
                r.errors.lines.push_back(e.what());
            }
        }
    }
}

// Reads lora_info now, so that the set sizes can be checked against its categories.
void read_lora_info(ConfigReader& r, BatchConfig& c, const std::vector<std::pair<size_t, int>>& k_positions) {
    try {
        c.lora_info = parse_lora_info(c.lora_info_path);
        const int categories = static_cast<int>(c.lora_info.categories.size());
        for (const auto& [i, k] : k_positions)
            if (k > categories)
                r.errors.add("k[" + std::to_string(i) + "]", std::to_string(k) + " is more than the " +
                                                                std::to_string(categories) + " categories of " +
                                                                c.lora_info_path);
    } catch (const UsageError& e) {
        std::string msg = e.what();
        if (msg.rfind("lora_info: ", 0) == 0) return r.errors.lines.push_back(msg);
        size_t start = 0;
        while (start <= msg.size()) {
            size_t end = msg.find('\n', start);
            r.errors.add("lora_info", msg.substr(start, end == std::string::npos ? std::string::npos : end - start));
            if (end == std::string::npos) break;
            start = end + 1;
        }
    }
}

}  // namespace

namespace {

// The config with its "quick" object's keys laid over the top level (`use` true), or only checked (false):
// "quick" must be an object of batch keys other than "quick".
ojson with_quick_subset(const ojson& j, const std::string& config_path, bool use) {
    auto q = j.is_object() ? j.find("quick") : j.end();
    if (q == j.end()) {
        if (use) throw UsageError(config_path + ": --quick asks for the config's \"quick\" subset, and it has none");
        return j;
    }
    if (!q->is_object())
        throw UsageError(config_path + ": quick: expected an object of batch keys (the --quick subset), got " + type_name(*q));
    ojson merged = j;
    merged.erase("quick");
    for (const auto& [key, value] : q->items()) {
        if (key == "quick") throw UsageError(config_path + ": quick.quick: a quick subset cannot hold another");
        if (!key.empty() && key[0] == '_') continue;
        if (use) merged[key] = value;
    }
    return merged;
}

}  // namespace

BatchConfig parse_batch_config(const ojson& source, const std::string& config_path, bool quick) {
    const ojson j = with_quick_subset(source, config_path, quick);
    BatchConfig c;
    c.config_path = config_path;
    c.config_dir = fs::path(config_path).parent_path().string();
    if (!j.is_object()) throw UsageError(config_path + ": expected a JSON object at the top level, got " + type_name(j));
    ConfigReader r(j);
    r.unknown_keys(batch_config_keys());
    const RawPaths raw = read_names_and_paths(r, c);
    read_methods(r, c);
    const auto k_positions = read_ks(r, c);
    read_seeds(r, c);
    read_generation_settings(r, c);
    read_method_args(r, c);
    check_method_bounds(r, c);

    c.model = resolve_against(c.config_dir, raw.model);
    c.vae = resolve_against(c.config_dir, raw.vae);
    c.embedding_dir = resolve_against(c.config_dir, raw.embedding_dir);
    c.lora_dir = resolve_against(c.config_dir, raw.lora_dir);
    c.lora_info_path = resolve_against(c.config_dir, raw.lora_info);
    c.out = resolve_against(c.config_dir, raw.out);
    if (!raw.lora_info.empty()) read_lora_info(r, c, k_positions);

    if (!r.errors.lines.empty()) {
        std::string msg;
        for (const auto& l : r.errors.lines) msg += (msg.empty() ? "" : "\n") + config_path + ": " + l;
        throw UsageError(msg);
    }
    return c;
}

BatchConfig load_batch_config(const std::string& path, bool quick) {
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
    return parse_batch_config(j, path, quick);
}

std::vector<std::string> missing_input_files(const BatchConfig& c, const std::vector<std::string>& lora_ids) {
    std::vector<std::string> missing;
    std::error_code ec;
    if (!fs::exists(c.model, ec)) missing.push_back("model: " + c.model);
    if (!c.vae.empty() && !fs::exists(c.vae, ec)) missing.push_back("vae: " + c.vae);
    if (!c.embedding_dir.empty() && !fs::is_directory(c.embedding_dir, ec)) missing.push_back("embedding_dir: " + c.embedding_dir);
    if (!fs::is_directory(c.lora_dir, ec)) {
        missing.push_back("lora_dir: " + c.lora_dir);
        return missing;
    }
    for (const auto& id : lora_ids)
        if (!fs::is_regular_file(c.lora_file(id), ec)) missing.push_back("lora_dir: " + c.lora_file(id));
    return missing;
}

}  // namespace multilora::batch
