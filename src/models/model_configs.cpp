#include "multilora/models/model_configs.h"

#include <nlohmann/json.hpp>

#include "multilora/models/config_fields.h"

#include "multilora/util/error.h"

namespace multilora::models {
namespace {

using nlohmann::json;

bool has(const ShapeMap& shapes, const std::string& name) { return shapes.count(name) > 0; }

void reject_unsupported(const json& j, const char* key, const char* what) {
    auto it = j.find(key);
    if (it != j.end() && !it->is_null())
        throw RuntimeError(std::string("unsupported UNet config: '") + key + "' is set (" + what +
                           "); multilora supports SD1.x UNets");
}

}  // namespace

std::vector<int64_t> shape_of(const ShapeMap& shapes, const std::string& name) {
    auto it = shapes.find(name);
    if (it == shapes.end()) throw RuntimeError("cannot detect the model config: tensor '" + name + "' is missing");
    return it->second;
}

// ---------------------------------------------------------------- UNet

UNetConfig UNetConfig::v1_5() { return UNetConfig{}; }

UNetConfig UNetConfig::from_json(const json& j) {
    UNetConfig c;
    read_if(j, "in_channels", c.in_channels);
    read_if(j, "out_channels", c.out_channels);
    read_if(j, "block_out_channels", c.block_out_channels);
    read_if(j, "down_block_types", c.down_block_types);
    read_if(j, "up_block_types", c.up_block_types);
    read_if(j, "layers_per_block", c.layers_per_block);
    read_if(j, "cross_attention_dim", c.cross_attention_dim);
    read_if(j, "norm_num_groups", c.norm_num_groups);
    read_if(j, "norm_eps", c.norm_eps);
    read_if(j, "flip_sin_to_cos", c.flip_sin_to_cos);
    read_if(j, "freq_shift", c.freq_shift);
    read_if(j, "use_linear_projection", c.use_linear_projection);
    read_if(j, "sample_size", c.sample_size);
    if (j.contains("transformer_layers_per_block") && j["transformer_layers_per_block"].is_number_integer())
        c.transformer_layers_per_block = j["transformer_layers_per_block"].get<int>();
    // diffusers: num_attention_heads = num_attention_heads or attention_head_dim (the SD1.x naming quirk).
    json heads = j.value("num_attention_heads", json());
    if (heads.is_null()) heads = j.value("attention_head_dim", json(8));
    if (heads.is_number_integer())
        c.num_attention_heads.assign(c.block_out_channels.size(), heads.get<int>());
    else
        c.num_attention_heads = heads.get<std::vector<int>>();
    reject_unsupported(j, "class_embed_type", "class embeddings");
    reject_unsupported(j, "addition_embed_type", "SDXL-style added embeddings");
    reject_unsupported(j, "time_cond_proj_dim", "LCM time conditioning");
    reject_unsupported(j, "encoder_hid_dim", "encoder projection");
    if (c.down_block_types.size() != c.block_out_channels.size() ||
        c.up_block_types.size() != c.block_out_channels.size() ||
        c.num_attention_heads.size() != c.block_out_channels.size())
        throw RuntimeError("UNet config: block_out_channels, down/up_block_types and attention heads differ in length");
    return c;
}

UNetConfig UNetConfig::detect_from_weights(const ShapeMap& shapes) {
    UNetConfig c;
    c.block_out_channels.clear();
    c.down_block_types.clear();
    for (int level = 0;; ++level) {
        std::string prefix = "down_blocks." + std::to_string(level) + ".";
        std::string conv = prefix + "resnets.0.conv1.weight";
        if (!has(shapes, conv)) break;
        c.block_out_channels.push_back(static_cast<int>(shape_of(shapes, conv)[0]));
        bool attn = has(shapes, prefix + "attentions.0.proj_in.weight");
        c.down_block_types.push_back(attn ? "CrossAttnDownBlock2D" : "DownBlock2D");
    }
    if (c.block_out_channels.empty()) throw RuntimeError("cannot detect the UNet config: no down_blocks found");
    size_t levels = c.block_out_channels.size();
    c.up_block_types.clear();
    for (size_t i = 0; i < levels; ++i) {
        bool attn = has(shapes, "up_blocks." + std::to_string(i) + ".attentions.0.proj_in.weight");
        c.up_block_types.push_back(attn ? "CrossAttnUpBlock2D" : "UpBlock2D");
    }
    int layers = 0;
    while (has(shapes, "down_blocks.0.resnets." + std::to_string(layers) + ".conv1.weight")) ++layers;
    c.layers_per_block = layers;
    auto conv_in = shape_of(shapes, "conv_in.weight");
    c.in_channels = static_cast<int>(conv_in[1]);
    c.out_channels = static_cast<int>(shape_of(shapes, "conv_out.weight")[0]);
    for (size_t level = 0; level < levels; ++level) {
        if (c.down_block_types[level] != "CrossAttnDownBlock2D") continue;
        std::string prefix = "down_blocks." + std::to_string(level) + ".attentions.0.";
        auto to_k = shape_of(shapes, prefix + "transformer_blocks.0.attn2.to_k.weight");
        c.cross_attention_dim = static_cast<int>(to_k[1]);
        c.use_linear_projection = shape_of(shapes, prefix + "proj_in.weight").size() == 2;
        break;
    }
    c.num_attention_heads.assign(levels, 8);
    // GroupNorm groups are invisible in shapes; 32 unless the narrowest width does not allow it.
    c.norm_num_groups = 32;
    for (int ch : c.block_out_channels)
        while (ch % c.norm_num_groups != 0) c.norm_num_groups /= 2;
    return c;
}

json UNetConfig::to_json() const {
    return json{{"_class_name", "UNet2DConditionModel"},
                {"in_channels", in_channels},
                {"out_channels", out_channels},
                {"block_out_channels", block_out_channels},
                {"down_block_types", down_block_types},
                {"up_block_types", up_block_types},
                {"layers_per_block", layers_per_block},
                {"attention_head_dim", num_attention_heads},
                {"cross_attention_dim", cross_attention_dim},
                {"norm_num_groups", norm_num_groups},
                {"norm_eps", norm_eps},
                {"flip_sin_to_cos", flip_sin_to_cos},
                {"freq_shift", freq_shift},
                {"use_linear_projection", use_linear_projection},
                {"transformer_layers_per_block", transformer_layers_per_block},
                {"sample_size", sample_size},
                {"act_fn", "silu"},
                {"center_input_sample", false},
                {"downsample_padding", 1},
                {"mid_block_scale_factor", 1}};
}

// ---------------------------------------------------------------- VAE

VaeConfig VaeConfig::v1_5() { return VaeConfig{}; }

VaeConfig VaeConfig::from_json(const json& j) {
    VaeConfig c;
    read_if(j, "in_channels", c.in_channels);
    read_if(j, "out_channels", c.out_channels);
    read_if(j, "latent_channels", c.latent_channels);
    read_if(j, "block_out_channels", c.block_out_channels);
    read_if(j, "layers_per_block", c.layers_per_block);
    read_if(j, "norm_num_groups", c.norm_num_groups);
    read_if(j, "scaling_factor", c.scaling_factor);
    read_if(j, "mid_block_add_attention", c.mid_block_add_attention);
    read_if(j, "sample_size", c.sample_size);
    return c;
}

VaeConfig VaeConfig::detect_from_weights(const ShapeMap& shapes) {
    VaeConfig c;
    c.block_out_channels.clear();
    for (int level = 0;; ++level) {
        std::string name = "encoder.down_blocks." + std::to_string(level) + ".resnets.0.conv1.weight";
        if (!has(shapes, name)) break;
        c.block_out_channels.push_back(static_cast<int>(shape_of(shapes, name)[0]));
    }
    if (c.block_out_channels.empty()) {
        // A decoder-only VAE: read the widths from the decoder's up blocks (reversed order).
        for (int level = 0;; ++level) {
            std::string name = "decoder.up_blocks." + std::to_string(level) + ".resnets.0.conv1.weight";
            if (!has(shapes, name)) break;
            c.block_out_channels.insert(c.block_out_channels.begin(), static_cast<int>(shape_of(shapes, name)[0]));
        }
    }
    if (c.block_out_channels.empty()) throw RuntimeError("cannot detect the VAE config: no encoder or decoder blocks found");
    int layers = 0;
    while (has(shapes, "decoder.up_blocks.0.resnets." + std::to_string(layers) + ".conv1.weight")) ++layers;
    c.layers_per_block = layers - 1;
    auto post_quant = shape_of(shapes, "post_quant_conv.weight");
    c.latent_channels = static_cast<int>(post_quant[0]);
    c.out_channels = static_cast<int>(shape_of(shapes, "decoder.conv_out.weight")[0]);
    if (has(shapes, "encoder.conv_in.weight")) c.in_channels = static_cast<int>(shape_of(shapes, "encoder.conv_in.weight")[1]);
    c.mid_block_add_attention = has(shapes, "decoder.mid_block.attentions.0.to_q.weight");
    c.norm_num_groups = 32;
    for (int ch : c.block_out_channels)
        while (ch % c.norm_num_groups != 0) c.norm_num_groups /= 2;
    return c;
}

json VaeConfig::to_json() const {
    std::vector<std::string> down(block_out_channels.size(), "DownEncoderBlock2D");
    std::vector<std::string> up(block_out_channels.size(), "UpDecoderBlock2D");
    return json{{"_class_name", "AutoencoderKL"},
                {"in_channels", in_channels},
                {"out_channels", out_channels},
                {"latent_channels", latent_channels},
                {"block_out_channels", block_out_channels},
                {"down_block_types", down},
                {"up_block_types", up},
                {"layers_per_block", layers_per_block},
                {"norm_num_groups", norm_num_groups},
                {"scaling_factor", scaling_factor},
                {"mid_block_add_attention", mid_block_add_attention},
                {"sample_size", sample_size},
                {"act_fn", "silu"}};
}

// ---------------------------------------------------------------- CLIP text

}  // namespace multilora::models
