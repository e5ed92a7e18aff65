// LoRA factors that autograd trains: one adapter per targeted UNet layer, set behind the layer's
// models::WeightAdapter pointer, and written out as a kohya-format LoRA (lora_unet_* keys with '.' as '_',
// lora_down / lora_up / alpha) that A1111, ComfyUI, diffusers and multilora itself load.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace torch::nn {
class Module;
}
namespace at {
class Generator;
}

namespace multilora::train {

// Which UNet layers a LoRA trains: `attn` every attention projection (to_q, to_k, to_v, to_out.0 of attn1
// and attn2); `attn+ff` also the feed-forward (ff.net.0.proj, ff.net.2); `all` also proj_in/proj_out and
// the resnets' convolutions and time projections.
enum class LoraTargets { Attn, AttnFF, All };
LoraTargets parse_lora_targets(const std::string& text);  // UsageError naming the choices
const char* lora_targets_name(LoraTargets t);
bool lora_targets_layer(LoraTargets t, const std::string& diffusers_path);

class TrainableLora {
public:
    // Attaches rank-`rank` factors to every targeted Linear / Conv2d of `unet`: down ~ kaiming-uniform (as
    // kohya and PEFT initialise lora_down / lora_A), up = 0, so training starts from the base model.
    TrainableLora(torch::nn::Module& unet, LoraTargets targets, int64_t rank, double alpha, at::Generator& generator);
    ~TrainableLora();  // detaches the adapters
    TrainableLora(const TrainableLora&) = delete;
    TrainableLora& operator=(const TrainableLora&) = delete;

    std::vector<at::Tensor> parameters() const;  // every down and up factor, in layer order
    // name -> factor ("<path>.lora_down.weight" ...), sharing the factors' storage: a checkpoint saves
    // them and copies values back into them (train::TrainingCheckpoint::restore).
    std::map<std::string, at::Tensor> named_factors() const;
    size_t layer_count() const { return layers_.size(); }

    // Writes the kohya file (float32, or float16 with `half`), with `metadata` added to the ss_* keys.
    void save_kohya(const std::string& path, const std::map<std::string, std::string>& metadata, bool half = false) const;

private:
    struct Layer;
    std::vector<std::shared_ptr<Layer>> layers_;
    int64_t rank_;
    double alpha_;
};

}  // namespace multilora::train
