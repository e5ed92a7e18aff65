// Reading LoRA safetensors files in the formats SD1.5 LoRAs are shared in, into one neutral form:
// per target module, the down (A) and up (B) factors and the optional alpha.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace multilora::lora {

enum class LoraPart { Unet, TextEncoder };

// The form of one adapted module (LyCORIS names): plain LoRA/LoCon factors, LoHa (Hadamard product of two
// low-rank pairs), LoKr (Kronecker product), IA3 (a per-channel scale of the base weight), a full-weight diff.
// DoRA is not a form: any LoRA, LoHa or LoKr group may carry a DoRA magnitude (dora_scale).
enum class AdapterForm { Lora, LoHa, LoKr, IA3, Full };

// One adapted module as the file names it.
struct LoraGroup {
    LoraPart part = LoraPart::Unet;
    std::string stem;  // the file's key prefix, e.g. "lora_unet_down_blocks_0_..._to_q" or "unet.down_blocks.0...."
    // The target, written as the file names it: kohya's flattened name ("down_blocks_0_attentions_0_...") or a
    // dotted diffusers path ("down_blocks.0.attentions.0....to_q"). Resolved against a model later.
    std::string target;
    bool flattened = false;  // kohya: '.' replaced by '_'
    AdapterForm form = AdapterForm::Lora;
    at::Tensor down;         // LoRA: [r, in] or [r, in, kh, kw]
    at::Tensor up;           // LoRA: [out, r] or [out, r, 1, 1]
    // The other forms' tensors by their key suffix: hada_w1_a ... hada_t2, lokr_w1 ... lokr_t2, lora_mid
    // (LoCon's Tucker core), diff and diff_b (full), weight (IA3).
    std::map<std::string, at::Tensor> factors;
    bool on_input = false;   // IA3: the scale applies to input channels
    at::Tensor dora_scale;   // DoRA magnitude: [out, 1(, 1, 1)], [1, in(, 1, 1)] or PEFT's [out]; undefined if none
    std::optional<double> alpha;
    // A factor by name, undefined when the file has none.
    at::Tensor factor(const std::string& name) const;
    // LoRA: down's rows; LoHa: hada_w1_b's rows; LoKr: the rank of its low-rank factor (0 when both are
    // full); IA3 and full: 0.
    int64_t rank() const;
    // The form's own scale: LoRA alpha / rank, or 1 without alpha; LoHa and LoKr alpha / rank, or 1
    // without alpha, with alpha 0 or (LoKr) without a low-rank factor, as LyCORIS reads them; IA3 and full 1.
    double scale() const;
};

// What a LoRA's safetensors metadata says it was trained for: kohya's ss_base_model_version ("sd_v1",
// "sd_v2", "sd_v2_v", "sdxl_base_v1-0", "flux1", ...) or ss_v2, else the modelspec.architecture key
// ("stable-diffusion-v1/lora", "stable-diffusion-xl-v1-base/lora", "flux-1-dev/lora", ...).
struct BaseModel {
    std::string family;  // "sd1", "sd2", "sdxl", "sd3", "flux", or "" when the metadata does not say
    std::string key, value;  // the metadata entry that said so
    bool supported() const { return family.empty() || family == "sd1"; }
};
BaseModel base_model_of(const std::map<std::string, std::string>& metadata);

struct LoraFile {
    std::string path;
    std::string format;  // "kohya", "peft", "diffusers"
    std::map<std::string, std::string> metadata;  // the file's __metadata__
    BaseModel base_model;
    std::vector<LoraGroup> groups;
    std::vector<std::string> ignored_keys;  // keys that belong to no group (metadata-like tensors)
};

// Reads and checks the file's own structure: first its metadata (a LoRA for SDXL, SD2, SD3 or Flux is refused
// with the entry that says so, before any key is read), then known format, supported kind (LoHa, LoKr, DoRA and LoCon's
// Tucker mid weights are refused by name), every down with its up and matching ranks.
// Throws RuntimeError naming the file and a few offending keys.
LoraFile read_lora_file(const std::string& path);

}  // namespace multilora::lora
