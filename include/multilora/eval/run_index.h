// What `multilora evaluate` reads from a batch output folder (the layout `multilora batch` writes):
//
//   DIR/batch.jsonl                                   one JSON line per finished image, with at least
//                                                     {style, k, method, lora_ids, prompt, output}
//   DIR/{style}/{k}_elements/{method}_{id1}_{id2}….png  + the same-stem .json manifest
//   DIR/{style}/{k}_elements/sheet_{id1}_{id2}….png     the set's comparison sheet
//
// Images are taken from batch.jsonl first (the image path is its `output` or `png` field, absolute, relative
// to DIR or to the working directory; when none of these exists the documented layout path is used). Images
// that are in the folder tree with their manifest but missing from batch.jsonl (another shard's log, a lost
// log) are added by scanning; a `_seed<N>` stem suffix (runs with several seeds) is understood. The
// generation prompt comes from the log line's `prompt`, else the manifest's `prompt` or `settings.prompt`;
// the seed from the line's `seed`, else the manifest's `batch.noise.seed` or `seed`; LoRA names and trigger
// words from the line's `loras` or the manifest's `batch.lora_set` ([{id, name, category, trigger}]).
// Images are grouped into composition sets: (style, k, LoRA ids in set order, seed).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace multilora::eval {

// One LoRA of a composition, as the judge prompt describes it: "category (name): trigger, trigger".
struct LoraElement {
    std::string id;
    std::string category;
    std::string name;
    std::vector<std::string> triggers;
    bool described = true;  // false when nothing but the id was known
};

struct RunImage {
    std::string method;
    std::string png;       // path of the image
    std::string manifest;  // same-stem .json, empty when absent
    std::string prompt;    // generation prompt, empty when unknown
};

struct CompositionSet {
    std::string style;
    int k = 0;
    std::vector<std::string> lora_ids;   // set order (character first in ComposLoRA)
    std::string key;                     // ids joined with '_'
    std::optional<uint64_t> seed;        // the images' seed when known (runs with several seeds have one set each)
    std::map<std::string, RunImage> images;  // by method
    std::string sheet;                   // comparison sheet path, empty when absent
    std::vector<LoraElement> elements;   // filled by LoraCatalog::describe
    std::string prompt() const;          // the first known generation prompt among the images
    std::string id() const;              // key, plus "#seed<N>" when the seed is known
};

struct RunIndex {
    std::string run_dir;
    bool has_batch_log = false;
    size_t images = 0;
    size_t skipped_log_lines = 0;  // malformed lines or lines whose image is missing
    std::vector<CompositionSet> sets;  // first-appearance order
    std::vector<std::string> methods;  // every method seen, first-appearance order
    // LoRA descriptions carried by batch.jsonl lines (`loras: [{id, name, trigger}]`), by style.
    std::vector<std::pair<std::string, LoraElement>> logged_loras;
};

// Reads DIR. Throws UsageError when DIR does not exist or holds no batch output (no usable batch.jsonl
// line and no {method}_{ids}.png with its manifest under DIR/{style}/{k}_elements/).
RunIndex index_run(const std::string& run_dir);

// "merge_character_1_clothing_2" -> method "merge", ids {"character_1", "clothing_2"}: the first '_'
// separates the method; ids end at each all-digit part; a final "_seed<N>" sets `seed` (else it is reset).
// False when the stem does not have that form.
bool parse_image_stem(const std::string& stem, std::string& method, std::vector<std::string>& ids,
                      std::optional<uint64_t>* seed = nullptr);

// LoRA descriptions, from lora_info files ({category: [{id, name, trigger[], url}]}), from batch.jsonl
// lines that carry them, and the built-in ComposLoRA list as the last resort.
class LoraCatalog {
public:
    // `style` empty: applies to every style. Throws UsageError naming the file when unreadable or not
    // in lora_info form.
    void add_file(const std::string& style, const std::string& path);
    void add_json(const std::string& style, const nlohmann::json& info, const std::string& source);
    // Files found next to the run: DIR/{style}_lora_info.json, DIR/{style}/lora_info.json, DIR/lora_info.json.
    void discover(const std::string& run_dir, const std::vector<std::string>& styles);
    void add_logged(const RunIndex& index);  // the descriptions batch.jsonl carried, where not known yet
    void use_builtin_composlora(bool on) { builtin_ = on; }

    std::optional<LoraElement> find(const std::string& style, const std::string& id) const;
    // Fills set.elements; ids nothing describes get category from the id ("clothing_2" -> "clothing"),
    // name = id, no triggers, described = false. Returns the number of such ids.
    int describe(CompositionSet& set) const;
    std::vector<std::string> sources() const { return sources_; }

private:
    std::map<std::string, std::map<std::string, LoraElement>> by_style_;  // "" = any style
    std::vector<std::string> sources_;
    bool builtin_ = true;
};

}  // namespace multilora::eval
