// The plan of a batch: the ComposLoRA sets, enumerated exactly as the paper's code does, and one image per
// (k, set, seed, method), with its prompt, its initial-noise draw and its output paths; shards of it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "multilora/batch/config.h"

namespace multilora::batch {

// The sets of k LoRAs: "character" first; then each choice of k-1 of the other categories in the file's
// order (itertools.combinations order); for each, every pick of one instance per chosen category
// (itertools.product order: the last category varies fastest). 24/72/96/48 sets per ComposLoRA style
// for k = 2..5.
std::vector<std::vector<const LoraEntry*>> enumerate_sets(const LoraInfo& info, int k);

// style prompt + ", " + every trigger of every LoRA of the set, joined with ", ", in set order.
std::string compose_prompt(const std::string& style_prompt, const std::vector<const LoraEntry*>& set);

struct PlanSet {
    int k = 0;
    int set_index = 0;  // 0-based position in enumerate_sets(info, k); also its initial-noise draw index
    int unit = 0;       // 0-based position among all sets of the plan (k in config order, then set_index)
    std::vector<const LoraEntry*> loras;
    std::vector<std::string> lora_ids;
    std::string prompt;
    std::string dir;         // {out}/{style}/{k}_elements
    std::string sheet_path;  // {dir}/sheet_{ids}.png
    std::vector<size_t> images;  // indices into BatchPlan::images, in plan order
};

struct PlanImage {
    size_t set = 0;  // index into BatchPlan::sets
    int k = 0;
    int set_index = 0;
    std::vector<std::string> lora_ids;  // the set's, in set order
    std::string method;
    uint64_t seed = 0;
    int64_t noise_draw = 0;  // the draw of the seed's generator that gives this image's initial noise
    std::string prompt;
    std::string stem;           // {method}_{id1}_{id2}... (+ _seed{N} when the config lists several seeds)
    std::string png_path;       // {dir}/{stem}.png
    std::string manifest_path;  // {dir}/{stem}.json
    std::string rel_png;        // relative to `out`: {style}/{k}_elements/{stem}.png
    std::string rel_manifest;
};

// Images are ordered by k (config order), then set, then seed, then method (config order), so all methods
// of a set are made one after another, from the same initial noise.
struct BatchPlan {
    std::vector<PlanSet> sets;
    std::vector<PlanImage> images;
};

BatchPlan make_plan(const BatchConfig& config);

// --shard I/N: 0 <= I < N. Sets (each with all its seeds and methods) are dealt round-robin in plan
// order: set unit u goes to shard u mod N, so every shard gets the same mix of k and every method.
struct Shard {
    int index = 0;
    int count = 1;
    bool contains(const PlanSet& s) const { return count <= 1 || s.unit % count == index; }
    std::string str() const { return std::to_string(index) + "/" + std::to_string(count); }
};

Shard parse_shard(const std::string& text);  // UsageError on anything but "I/N" with 0 <= I < N
// From SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT (with SLURM_ARRAY_TASK_MIN and _STEP when set);
// {0, 1} when not in a job array. UsageError when the variables are malformed.
Shard shard_from_environment();

// One --dry-run --json line: {style, k, method, lora_ids, prompt, negative_prompt, seed, output, set_index}.
nlohmann::ordered_json plan_line(const BatchConfig& config, const PlanImage& image);

// Distinct LoRA ids used by the given sets, in lora_info order.
std::vector<std::string> lora_ids_used(const BatchConfig& config, const BatchPlan& plan, const Shard& shard);

}  // namespace multilora::batch
