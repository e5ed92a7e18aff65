// `multilora batch` configuration: one JSON file per run of the ComposLoRA testbed (one style), and the
// lora_info file it names ({category: [{id, name, trigger[], url}]}, read as the paper's code ships it).
// Validation happens here, before any model is loaded; every error names its key path.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <map>

#include <nlohmann/json.hpp>

#include "multilora/compose/method_args.h"

namespace multilora::batch {

struct LoraEntry {
    std::string id;        // file stem in lora_dir: {lora_dir}/{id}.safetensors
    std::string name;      // display name (the id when the file has none)
    std::vector<std::string> trigger;
    std::string url;
    std::string category;
};

struct LoraCategory {
    std::string name;
    std::vector<LoraEntry> entries;
};

// Categories in the file's order (which is what the set enumeration follows).
struct LoraInfo {
    std::vector<LoraCategory> categories;
    const LoraEntry* find(const std::string& id) const;
    std::vector<const LoraEntry*> all() const;  // file order
};

// Parses a lora_info file; errors (UsageError) name the file and the key path, e.g.
// "anime_lora_info.json: character[1].trigger: expected an array of strings".
LoraInfo parse_lora_info(const std::string& path);
LoraInfo parse_lora_info_json(const nlohmann::ordered_json& j, const std::string& label);

struct BatchConfig {
    std::string config_path;  // as given
    std::string config_dir;   // relative paths in the file resolve against this folder

    std::string style;  // output sub-folder and label ("anime", "reality", ...)
    std::string model;  // absolute, resolved against config_dir
    std::string vae;    // empty: the model's own
    std::string lora_dir;
    std::string lora_info_path;
    std::string out;

    std::string prompt;
    std::string negative_prompt;
    std::vector<std::string> methods;  // merge, switch, composite, none (config order)
    std::vector<int> ks;               // config order
    std::vector<uint64_t> seeds;       // config order
    int steps = 50;
    double guidance_scale = 7.5;
    int width = 512;
    int height = 512;
    std::string scheduler = "dpmpp-2m";
    double lora_scale = 0.8;
    int switch_interval = 5;
    std::string switch_schedule = "paper";
    int threads = 0;
    std::string dtype = "fp32";
    std::string device = "cpu";
    std::string long_prompt = "truncate";
    std::string prompt_syntax = "plain";
    std::string embedding_dir;  // textual-inversion embeddings loaded for every image (empty: none)  // "a1111": emphasis, BREAK and A1111's chunks (see text/a1111_prompt.h)
    int max_batch_rows = 0;
    bool allow_nan = false;
    int vae_tile = 0;  // decode in tiles of this many pixels (0: in one piece)
    double max_memory_gb = 0;  // refuse sizes whose estimated peak is above (0: this machine's RAM)  // write images whose latents went NaN/Inf (default: stop with an error)
    // Each listed method's validated parameters (defaults, the top-level keys above that set them, then
    // "method_args": {"METHOD": {"PARAM": value}}).
    std::map<std::string, compose::MethodArgs> method_args;

    LoraInfo lora_info;

    // {lora_dir}/{id}.safetensors
    std::string lora_file(const std::string& id) const;
};

// The keys a config may hold, in documentation order.
const std::vector<std::string>& batch_config_keys();

// Reads and validates CONFIG.json and its lora_info file. Throws UsageError listing every problem, one per
// line, each as "CONFIG: key.path: message". Checks no model or LoRA file (see missing_input_files).
// `quick`: the config's "quick" object (batch keys, e.g. fewer LoRAs, seeds or methods, and another "out")
// replaces those keys: `batch --quick`. A config without one is then refused.
BatchConfig load_batch_config(const std::string& path, bool quick = false);
// The same from parsed JSON (tests); `config_path` only labels errors and anchors relative paths.
BatchConfig parse_batch_config(const nlohmann::ordered_json& j, const std::string& config_path, bool quick = false);

// Model, VAE and LoRA files (of `lora_ids`) that do not exist, as "key: path" lines.
std::vector<std::string> missing_input_files(const BatchConfig& config, const std::vector<std::string>& lora_ids);

// A config path made absolute: relative to the config's folder (not the working directory), normalised
// ("a/b/../c" -> "a/c"); "~/" expands to $HOME.
std::string resolve_against(const std::string& dir, const std::string& path);

}  // namespace multilora::batch
