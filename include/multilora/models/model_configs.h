// Architecture configs for the SD1.x UNet and VAE (the CLIP text encoder's is in text/clip_config.h), with diffusers' field names and meanings.
// Each has a v1_5() preset, a reader for diffusers' config.json, and detection from tensor shapes.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace multilora::models {

// Tensor name -> shape, the input of every detect_from_weights (names in diffusers' layout).
using ShapeMap = std::map<std::string, std::vector<int64_t>>;

// The shape of tensor `name`; throws RuntimeError ("cannot detect the model config: ...") when missing.
std::vector<int64_t> shape_of(const ShapeMap& shapes, const std::string& name);

struct UNetConfig {
    int in_channels = 4;
    int out_channels = 4;
    std::vector<int> block_out_channels{320, 640, 1280, 1280};
    std::vector<std::string> down_block_types{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                              "CrossAttnDownBlock2D", "DownBlock2D"};
    std::vector<std::string> up_block_types{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                            "CrossAttnUpBlock2D"};
    int layers_per_block = 2;
    // Heads per down block. SD1.x configs store this under the misleading key `attention_head_dim`;
    // diffusers reads it as the number of heads (head width = channels / heads).
    std::vector<int> num_attention_heads{8, 8, 8, 8};
    int cross_attention_dim = 768;
    int norm_num_groups = 32;
    double norm_eps = 1e-5;
    bool flip_sin_to_cos = true;
    double freq_shift = 0.0;
    bool use_linear_projection = false;
    int transformer_layers_per_block = 1;
    int sample_size = 64;

    int time_embed_dim() const { return block_out_channels.at(0) * 4; }
    bool has_attention(size_t down_level) const {
        return down_block_types.at(down_level).find("CrossAttn") != std::string::npos;
    }
    static UNetConfig v1_5();
    static UNetConfig from_json(const nlohmann::json& j);
    // `shapes` uses diffusers names. Heads cannot be seen in shapes: SD1.x's 8 is assumed.
    static UNetConfig detect_from_weights(const ShapeMap& shapes);
    nlohmann::json to_json() const;
};

struct VaeConfig {
    int in_channels = 3;
    int out_channels = 3;
    int latent_channels = 4;
    std::vector<int> block_out_channels{128, 256, 512, 512};
    int layers_per_block = 2;
    int norm_num_groups = 32;
    double scaling_factor = 0.18215;
    bool mid_block_add_attention = true;
    int sample_size = 512;

    // Pixels per latent cell along each side: 2^(levels-1).
    int downscale_factor() const { return 1 << (static_cast<int>(block_out_channels.size()) - 1); }
    static VaeConfig v1_5();
    static VaeConfig from_json(const nlohmann::json& j);
    static VaeConfig detect_from_weights(const ShapeMap& shapes);
    nlohmann::json to_json() const;
};


}  // namespace multilora::models
