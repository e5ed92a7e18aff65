// The one mapping between LDM single-file checkpoint keys (CompVis / A1111 layout) and diffusers
// parameter names, derived from the architecture config so that it serves SD1.5 and tiny models alike.
#pragma once

#include <string>

#include "multilora/models/model_configs.h"

namespace multilora::models {

inline constexpr const char* kLdmUnetPrefix = "model.diffusion_model.";
inline constexpr const char* kLdmVaePrefix = "first_stage_model.";
inline constexpr const char* kLdmTextPrefix = "cond_stage_model.transformer.";

// diffusers UNet name (e.g. "down_blocks.1.resnets.0.norm1.weight") -> LDM key with prefix.
std::string unet_key_to_ldm(const std::string& diffusers_name, const UNetConfig& cfg);
// LDM key (with or without prefix) -> diffusers UNet name; empty when it is not a UNet key.
std::string unet_key_from_ldm(const std::string& ldm_key, const UNetConfig& cfg);

std::string vae_key_to_ldm(const std::string& diffusers_name, const VaeConfig& cfg);
std::string vae_key_from_ldm(const std::string& ldm_key, const VaeConfig& cfg);

// CLIP: "text_model.x" <-> "cond_stage_model.transformer.text_model.x" (old files omit "text_model.").
std::string text_key_to_ldm(const std::string& diffusers_name);
std::string text_key_from_ldm(const std::string& ldm_key);

}  // namespace multilora::models
