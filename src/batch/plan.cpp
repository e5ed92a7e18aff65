#include "multilora/batch/plan.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "multilora/compose/registry.h"
#include "multilora/util/error.h"

namespace fs = std::filesystem;

namespace multilora::batch {
namespace {

// itertools.combinations(range(n), r): lexicographic index tuples.
std::vector<std::vector<int>> combinations(int n, int r) {
    std::vector<std::vector<int>> out;
    if (r < 0 || r > n) return out;
    std::vector<int> idx(r);
    for (int i = 0; i < r; ++i) idx[i] = i;
    for (;;) {
        out.push_back(idx);
        int i = r - 1;
        while (i >= 0 && idx[i] == i + n - r) --i;
        if (i < 0) break;
        ++idx[i];
        for (int j = i + 1; j < r; ++j) idx[j] = idx[j - 1] + 1;
    }
    return out;
}

bool parse_int(const std::string& s, long long& out) {
    if (s.empty() || s.size() > 12) return false;
    size_t i = 0;
    if (s[0] == '-') i = 1;
    if (i == s.size()) return false;
    for (size_t j = i; j < s.size(); ++j)
        if (s[j] < '0' || s[j] > '9') return false;
    out = std::stoll(s);
    return true;
}

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? std::string(v) : std::string();
}

}  // namespace

std::vector<std::vector<const LoraEntry*>> enumerate_sets(const LoraInfo& info, int k) {
    std::vector<std::vector<const LoraEntry*>> sets;
    const LoraCategory* character = nullptr;
    std::vector<const LoraCategory*> others;
    for (const auto& c : info.categories) {
        if (c.name == "character") character = &c;
        else others.push_back(&c);
    }
    if (!character || k < 1) return sets;
    for (const auto& combo : combinations(static_cast<int>(others.size()), k - 1)) {
        std::vector<const LoraCategory*> types{character};
        for (int i : combo) types.push_back(others[i]);
        // itertools.product: an odometer whose last wheel turns fastest; empty if any category is empty.
        if (std::any_of(types.begin(), types.end(), [](const LoraCategory* t) { return t->entries.empty(); })) continue;
        std::vector<size_t> pick(types.size(), 0);
        for (;;) {
            std::vector<const LoraEntry*> set;
            for (size_t t = 0; t < types.size(); ++t) set.push_back(&types[t]->entries[pick[t]]);
            sets.push_back(std::move(set));
            int t = static_cast<int>(types.size()) - 1;
            while (t >= 0 && ++pick[t] == types[t]->entries.size()) pick[t--] = 0;
            if (t < 0) break;
        }
    }
    return sets;
}

std::string compose_prompt(const std::string& style_prompt, const std::vector<const LoraEntry*>& set) {
    std::string triggers;
    bool first = true;
    for (const LoraEntry* e : set)
        for (const auto& t : e->trigger) {
            triggers += (first ? "" : ", ") + t;
            first = false;
        }
    return style_prompt + ", " + triggers;
}

BatchPlan make_plan(const BatchConfig& c) {
    BatchPlan plan;
    const bool many_seeds = c.seeds.size() > 1;
    int unit = 0;
    for (int k : c.ks) {
        auto sets = enumerate_sets(c.lora_info, k);
        const std::string rel_dir = (fs::path(c.style) / (std::to_string(k) + "_elements")).string();
        const std::string dir = (fs::path(c.out) / rel_dir).string();
        for (size_t i = 0; i < sets.size(); ++i) {
            PlanSet s;
            s.k = k;
            s.set_index = static_cast<int>(i);
            s.unit = unit++;
            s.loras = sets[i];
            std::string joined;
            for (const LoraEntry* e : s.loras) {
                s.lora_ids.push_back(e->id);
                joined += "_" + e->id;
            }
            s.prompt = compose_prompt(c.prompt, s.loras);
            s.dir = dir;
            s.sheet_path = (fs::path(dir) / ("sheet" + joined + ".png")).string();
            const size_t set_pos = plan.sets.size();
            for (uint64_t seed : c.seeds)
                for (const auto& method : c.methods) {
                    const compose::MethodInfo* info = compose::registry().find(method);
                    if (info && !info->takes(k)) continue;  // e.g. K-LoRA, defined for k = 2 only
                    PlanImage im;
                    im.set = set_pos;
                    im.k = k;
                    im.set_index = s.set_index;
                    im.lora_ids = s.lora_ids;
                    im.method = method;
                    im.seed = seed;
                    im.noise_draw = s.set_index;
                    im.prompt = s.prompt;
                    im.stem = method + joined + (many_seeds ? "_seed" + std::to_string(seed) : "");
                    im.png_path = (fs::path(dir) / (im.stem + ".png")).string();
                    im.manifest_path = (fs::path(dir) / (im.stem + ".json")).string();
                    im.rel_png = (fs::path(rel_dir) / (im.stem + ".png")).string();
                    im.rel_manifest = (fs::path(rel_dir) / (im.stem + ".json")).string();
                    s.images.push_back(plan.images.size());
                    plan.images.push_back(std::move(im));
                }
            plan.sets.push_back(std::move(s));
        }
    }
    return plan;
}

Shard parse_shard(const std::string& text) {
    const std::string usage = "--shard expects I/N with 0 <= I < N (0-based shard I of N), got '" + text + "'";
    auto slash = text.find('/');
    if (slash == std::string::npos) throw UsageError(usage);
    long long i = 0, n = 0;
    if (!parse_int(text.substr(0, slash), i) || !parse_int(text.substr(slash + 1), n)) throw UsageError(usage);
    if (n < 1 || n > 1000000 || i < 0 || i >= n) throw UsageError(usage);
    return {static_cast<int>(i), static_cast<int>(n)};
}

Shard shard_from_environment() {
    const std::string id = env("SLURM_ARRAY_TASK_ID");
    if (id.empty()) return {};
    const std::string count = env("SLURM_ARRAY_TASK_COUNT");
    const std::string min = env("SLURM_ARRAY_TASK_MIN");
    const std::string step = env("SLURM_ARRAY_TASK_STEP");
    long long task = 0, n = 0, lo = 0, st = 1;
    if (!parse_int(id, task)) throw UsageError("SLURM_ARRAY_TASK_ID is not an integer: '" + id + "'");
    if (count.empty())
        throw UsageError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass --shard I/N");
    if (!parse_int(count, n) || n < 1) throw UsageError("SLURM_ARRAY_TASK_COUNT is not a positive integer: '" + count + "'");
    if (!min.empty() && !parse_int(min, lo)) throw UsageError("SLURM_ARRAY_TASK_MIN is not an integer: '" + min + "'");
    if (!step.empty() && (!parse_int(step, st) || st < 1))
        throw UsageError("SLURM_ARRAY_TASK_STEP is not a positive integer: '" + step + "'");
    long long index = (task - lo) / st;
    if (task < lo || (task - lo) % st != 0 || index >= n)
        throw UsageError("SLURM array task " + id + " does not map to a shard of " + count +
                         " (SLURM_ARRAY_TASK_MIN=" + (min.empty() ? "unset" : min) + ", SLURM_ARRAY_TASK_STEP=" +
                         (step.empty() ? "unset" : step) + "); pass --shard I/N");
    return {static_cast<int>(index), static_cast<int>(n)};
}

nlohmann::ordered_json plan_line(const BatchConfig& c, const PlanImage& im) {
    nlohmann::ordered_json j;
    j["style"] = c.style;
    j["k"] = im.k;
    j["method"] = im.method;
    j["lora_ids"] = im.lora_ids;
    j["prompt"] = im.prompt;
    j["negative_prompt"] = c.negative_prompt;
    j["seed"] = im.seed;
    j["output"] = im.png_path;
    j["set_index"] = im.set_index;
    return j;
}

std::vector<std::string> lora_ids_used(const BatchConfig& c, const BatchPlan& plan, const Shard& shard) {
    std::set<std::string> used;
    for (const auto& s : plan.sets)
        if (shard.contains(s)) used.insert(s.lora_ids.begin(), s.lora_ids.end());
    std::vector<std::string> out;
    for (const LoraEntry* e : c.lora_info.all())
        if (used.count(e->id)) out.push_back(e->id);
    return out;
}

}  // namespace multilora::batch
