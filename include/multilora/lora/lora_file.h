// Reading LoRA safetensors files in the formats SD1.5 LoRAs are shared in, into one neutral form:
// per target module, the down (A) and up (B) factors and the optional alpha.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace multilora::lora {

enum class LoraPart { Unet, TextEncoder };

// One adapted module as the file names it.
struct LoraGroup {
    LoraPart part = LoraPart::Unet;
    std::string stem;  // the file's key prefix, e.g. "lora_unet_down_blocks_0_..._to_q" or "unet.down_blocks.0...."
    // The target, written as the file names it: kohya's flattened name ("down_blocks_0_attentions_0_...") or a
    // dotted diffusers path ("down_blocks.0.attentions.0....to_q"). Resolved against a model later.
    std::string target;
    bool flattened = false;  // kohya: '.' replaced by '_'
    at::Tensor down;         // [r, in] or [r, in, kh, kw]
    at::Tensor up;           // [out, r] or [out, r, 1, 1]
    std::optional<double> alpha;
    int64_t rank() const { return down.size(0); }
    // alpha / rank, or 1 when the file carries no alpha.
    double scale() const { return alpha ? *alpha / static_cast<double>(rank()) : 1.0; }
};

struct LoraFile {
    std::string path;
    std::string format;  // "kohya", "peft", "diffusers"
    std::vector<LoraGroup> groups;
    std::vector<std::string> ignored_keys;  // keys that belong to no group (metadata-like tensors)
};

// Reads and checks the file's own structure: known format, supported kind (LoHa, LoKr, DoRA and LoCon's
// Tucker mid weights are refused by name), every down with its up and matching ranks.
// Throws RuntimeError naming the file and a few offending keys.
LoraFile read_lora_file(const std::string& path);

}  // namespace multilora::lora
