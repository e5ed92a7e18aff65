// Seeded random SD1.x-architecture checkpoints and LoRAs of any size, written through the same
// safetensors writer and key map that real files are read with (benchmarks use the full SD1.5 shape).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "multilora/bench/tiny_model.h"

namespace at {
class Generator;
}
namespace torch::nn {
class Module;
}

namespace multilora::bench {

// Seeded initialisation of every parameter: norms near identity, small biases, fan-in scaled weights,
// wide embeddings.
void fill_random_weights(torch::nn::Module& module, at::Generator& generator);

using TensorList = std::vector<std::pair<std::string, at::Tensor>>;

// diffusers-named tensors appended under their LDM single-file names (the VAE's attention projections as
// 1x1 convolutions, as LDM stores them).
void add_ldm_unet(TensorList& ldm, const TensorList& tensors, const models::UNetConfig& config);
void add_ldm_vae(TensorList& ldm, const TensorList& tensors, const models::VaeConfig& config);
void add_ldm_text(TensorList& ldm, const TensorList& tensors);
// The configs (and seed) an LDM file of ours carries as metadata: shapes alone cannot tell head counts.
std::map<std::string, std::string> ldm_metadata(const TinyModelConfigs& configs, uint64_t seed);

// Writes an LDM single-file checkpoint with the configs as metadata; weights drawn from a CPU generator
// seeded with `seed` (norms near identity, small biases, fan-in scaled weights).
void write_random_checkpoint(const std::string& path, const TinyModelConfigs& configs, uint64_t seed);

// One LoRA with seeded random factors over the Linear / Conv2d layers `select` picks (by diffusers path;
// is_unet tells UNet from text encoder): down ~ N(0, 1/fan_in), up ~ N(0, (up_gain/rank)^2). kohya names
// (lora_unet_*, lora_te_*, with alpha when given) or PEFT names (unet.*.lora_A/lora_B); convolutions get
// 1x1 factors, or with locon_3x3 a k x k down factor (LoCon).
struct RandomLoraSpec {
    int64_t rank = 4;
    std::optional<double> alpha;
    bool peft = false;
    double up_gain = 1.5;
    bool locon_3x3 = false;
    std::string form = "lora";  // "lora", or LyCORIS "loha" / "lokr" factors of the same rank (kohya names)
    std::function<bool(const std::string& path, bool is_unet)> select;
    std::map<std::string, std::string> metadata;
};
void write_random_lora(const std::string& path, torch::nn::Module& unet, torch::nn::Module& text_encoder,
                       const RandomLoraSpec& spec, at::Generator& generator);

// Writes `count` kohya LoRAs of `rank` (alpha = rank / 2) over every attention projection, feed-forward and
// proj_in/proj_out of the UNet and the text encoder's attention, as LoRAs shared online commonly do.
// Returns their paths: DIR/bench_lora_file(form, rank, i).
std::vector<std::string> write_random_loras(const std::string& dir, const TinyModelConfigs& configs, int count,
                                            int64_t rank, uint64_t seed, const std::string& form = "lora");
// "bench-r<rank>-<i>.safetensors" for plain LoRA, "bench-<form>-r<rank>-<i>.safetensors" otherwise.
std::string bench_lora_file(const std::string& form, int64_t rank, int index);

}  // namespace multilora::bench
