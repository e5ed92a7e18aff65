// The LoRAs of one run, attached to a loaded model. Each LoRA gets a slot (its index in the --lora
// order); every targeted Linear/Conv2d layer carries that slot's factors in its LayerAdapters. The base
// weights are never written, so activating, switching and clearing adapters costs no reload and no drift.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "multilora/lora/lora_file.h"
#include "multilora/lora/weight_schedule.h"

namespace torch::nn {
class Module;
}
namespace multilora::models {
class WeightAdapter;
}

namespace multilora::lora {

class LayerAdapters;

struct LoraSpec {
    std::string path;
    double weight = 1.0;  // the user's strength for this LoRA (PATH:WEIGHT)
    // PATH:W@F,W@F[:linear]: the weight follows these keyframes over the run (weight stays 1; the
    // composition method applies the schedule's value at each step).
    WeightSchedule schedule;
};

// "path.safetensors:0.7" -> {path, 0.7}; "path.safetensors:1@0,0@0.5" -> a weight schedule (step
// interpolation; ":linear" after it for linear); a suffix that is neither stays part of the path. Throws
// UsageError for a malformed keyframe list.
LoraSpec parse_lora_spec(const std::string& text);

// What one LoRA matched in the model (for logs, manifests and `inspect`).
struct LoraSummary {
    std::string path;
    std::string format;
    double weight = 1.0;
    std::vector<int64_t> ranks;   // distinct ranks, ascending
    std::vector<double> alphas;   // distinct alphas (empty: none in the file)
    int matched_unet = 0;
    int matched_text = 0;
    int unmatched = 0;   // modules the model does not have
    int misfit = 0;      // modules it has, with other shapes (inspect only; loading refuses them)
    std::map<std::string, int> by_kind;
    std::map<std::string, int> forms;  // matched modules by adapter form: "lora", "loha", "lokr+dora", ...
    struct Module {
        std::string key, target, form;  // the file's key stem, the model's module path, the adapter form
    };
    std::vector<Module> modules;  // every matched module, in file order
    std::vector<std::string> ignored_keys;  // keys that belong to no adapter (norm-layer training, stray tensors)  // "unet/attention", "unet/ff", "unet/proj", "unet/conv", "text/attention", "text/mlp", ...
    int unet_layers = 0, text_layers = 0;  // targetable layers of the model (inspect's coverage)
    WeightSchedule schedule;  // the spec's weight schedule (empty: constant `weight`)
    BaseModel base_model;     // what the file's metadata says it was trained for
    std::map<std::string, std::string> training;  // the file's kohya ss_* metadata (ss_tag_frequency and the like)
    nlohmann::json to_json() const;  // with "base_model" (null when the metadata does not say); not `training`
    nlohmann::json coverage_json() const;
};

// A targetable layer of a model, by diffusers path.
struct TargetLayer {
    torch::nn::Module* module = nullptr;
    bool is_conv = false;
    std::string path;
};

// Every Linear / Conv2d of a module tree, keyed by dotted path and by kohya's flattened path ('.' -> '_').
class TargetIndex {
public:
    TargetIndex(torch::nn::Module& root, bool unet, const nlohmann::json& unet_config = nullptr);
    const TargetLayer* find(const LoraGroup& g) const;
    size_t size() const { return by_path_.size(); }

private:
    std::map<std::string, TargetLayer> by_path_;
    std::map<std::string, std::string> flat_to_path_;
};

// The kind of module a path names: "attention", "ff", "proj", "conv", "mlp", "time".
std::string layer_kind(const std::string& path);

// One layer the set attached adapters to, with its diffusers path ("down_blocks.0.attentions.0...to_q").
struct AdaptedLayer {
    std::string path;
    std::shared_ptr<LayerAdapters> adapters;
};

class AdapterSet {
public:
    // Reads every LoRA, resolves it against `unet` and `text_encoder`, checks shapes and attaches the
    // deltas with scale = (alpha/rank) · weight · lora_scale. Throws RuntimeError naming the file and keys.
    AdapterSet(torch::nn::Module& unet, torch::nn::Module& text_encoder, const nlohmann::json& unet_config,
               const std::vector<LoraSpec>& specs, double lora_scale, c10::ScalarType dtype, c10::Device device);
    ~AdapterSet();

    int count() const { return static_cast<int>(summaries_.size()); }
    const std::vector<LoraSummary>& summaries() const { return summaries_; }

    // Text encoder: fuse the given slots (empty: base weights).
    void activate_text(const std::vector<int>& slots);
    // UNet, whole batch: the given slots (empty: base weights), for about `amortize_steps` forwards (each
    // layer fuses them into its weight when that pays off over those forwards; see LayerAdapters::set_fused).
    void activate_unet(const std::vector<int>& slots, int64_t amortize_steps = int64_t{1} << 30);
    // UNet, per batch row: row_slots[b] lists the slots active for row b. `image_rows` > 0: the rows one image
    // brings to each group (images of different methods in one forward, without an image map), so that each
    // group decides fused or low-rank as its image alone would; 0: a group's rows / images_per_forward().
    void activate_unet_rows(const std::vector<std::vector<int>>& row_slots, int64_t image_rows = 0);
    // Back to base weights everywhere, every gain back to 1, no image map.
    void clear();
    // Several images in one UNet forward, each composing its own LoRAs (batch --batch-images across sets):
    // image b's composition slot i is the attached slot image_slots[b][i]. While an image map is set, the
    // activate_* calls take composition slots (0..k-1): activate_text for the image set_text_image chose, the
    // UNet calls for every image, on rows laid out as blocks of the n images (row r belongs to image r % n).
    // `rows_per_image` is what one image brings to a whole-batch activation (2 with classifier-free guidance,
    // 1 without). Weight schedules are not mapped. An empty map turns it off.
    void map_images(std::vector<std::vector<int>> image_slots, int rows_per_image);
    void set_text_image(size_t image) { text_image_ = image; }
    // Multiplies each slot's deltas by gains[slot] (1: as attached) in every layer, for weight schedules.
    // Layers drop their fused weights when a gain they hold changes; call activate_* after it.
    void set_gains(const std::vector<double>& gains);
    // The layers with adapters, in the order the LoRA files named them, for methods that decide per layer.
    const std::vector<AdaptedLayer>& unet_layers() const { return unet_layers_; }
    const std::vector<AdaptedLayer>& text_layers() const { return text_layers_; }
    // The slot's weight schedule (empty: constant weight).
    const WeightSchedule& schedule(int slot) const {
        return summaries_.at(image_slots_.empty() ? slot : image_slots_.front().at(slot)).schedule;
    }

private:
    // The layer's adapters, created and attached on first use (throws if another set attached its own).
    std::shared_ptr<LayerAdapters> layer_adapters(const TargetLayer& target);

    // The attached slots of composition slots `composition` for `image` of the image map.
    std::vector<int> attached_slots(const std::vector<int>& composition, size_t image) const;

    std::vector<LoraSummary> summaries_;
    std::vector<std::vector<int>> image_slots_;  // the image map (empty: off)
    int rows_per_image_ = 1;
    size_t text_image_ = 0;
    std::set<std::shared_ptr<models::WeightAdapter>*> owned_;  // the model's adapter slots this set filled
    std::vector<AdaptedLayer> unet_layers_, text_layers_;
};

// Reads a LoRA and matches it against `unet` / `text_encoder`, or, when they are null, against the SD1.5
// architecture built without weights (for `inspect`).
LoraSummary inspect_lora(const std::string& path, torch::nn::Module* unet = nullptr,
                         torch::nn::Module* text_encoder = nullptr, const nlohmann::json& unet_config = nullptr);

}  // namespace multilora::lora
