// The LDM `.yaml` config beside a single-file checkpoint (NAME.yaml next to NAME.safetensors, as A1111 and
// ComfyUI look for it) or given with --model-config. LDM weights do not record head counts, the noise schedule
// or the parameterization; the config does. Read with yaml-cpp.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace multilora::models {
struct UNetConfig;
struct VaeConfig;
}  // namespace multilora::models

namespace multilora::pipeline {

// What multilora reads from model.params (every field optional: absent keeps SD1.x's rules).
struct LdmConfig {
    std::string path;
    std::optional<int> num_heads, num_head_channels, context_dim, model_channels, transformer_depth, in_channels;
    std::optional<bool> use_linear_in_transformer;
    std::optional<double> linear_start, linear_end, scale_factor;
    std::optional<int> timesteps;
    std::string parameterization = "eps";  // "eps", "v" or "x0"
    std::string cond_stage_target;         // e.g. ldm.modules.encoders.modules.FrozenCLIPEmbedder
    std::string model_target;
};

// Reads and type-checks the file. Throws RuntimeError naming the file: not YAML (with the line), no
// model.params, a key of the wrong type, a parameterization or beta schedule multilora does not run.
LdmConfig read_ldm_config(const std::string& path);

// NAME.yaml (or .yml) beside the checkpoint NAME.safetensors / NAME.ckpt; "" when there is none.
std::string config_beside(const std::string& checkpoint);

// Applies the config to the configs read off the weights: head counts, the noise schedule, the
// parameterization (scheduler prediction_type) and the VAE's scale factor. What the weights already fix
// (context_dim, linear projections, channel widths, transformer depth) must agree with them; a config for
// another model (an SD2 OpenCLIP text encoder, SDXL) or one the weights cannot serve throws RuntimeError.
void apply_ldm_config(const LdmConfig& config, models::UNetConfig& unet, models::VaeConfig& vae,
                      nlohmann::json& scheduler_config);

}  // namespace multilora::pipeline
