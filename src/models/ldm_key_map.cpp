#include "multilora/models/ldm_key_map.h"
#include "multilora/util/strings.h"

#include <array>
#include <cstdlib>
#include <utility>
#include <vector>

namespace multilora::models {
namespace {


std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0;
    for (size_t i = 0; i <= s.size(); ++i)
        if (i == s.size() || s[i] == '.') {
            out.push_back(s.substr(start, i - start));
            start = i + 1;
        }
    return out;
}

std::string dotted_from(const std::vector<std::string>& parts, size_t from) {
    std::string out;
    for (size_t i = from; i < parts.size(); ++i) out += (out.empty() ? "" : ".") + parts[i];
    return out;
}

bool is_number(const std::string& s) {
    return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

// Inner names of a resnet: diffusers -> LDM UNet / LDM VAE.
const std::array<std::pair<const char*, const char*>, 6> kUnetResnet{{{"norm1", "in_layers.0"},
                                                                      {"conv1", "in_layers.2"},
                                                                      {"time_emb_proj", "emb_layers.1"},
                                                                      {"norm2", "out_layers.0"},
                                                                      {"conv2", "out_layers.3"},
                                                                      {"conv_shortcut", "skip_connection"}}};

std::string rename_first(const std::string& rest, const char* from, const char* to) {
    std::string f = std::string(from) + ".";
    if (starts_with(rest, f)) return std::string(to) + "." + rest.substr(f.size());
    return rest;
}

std::string unet_resnet_to_ldm(const std::string& rest) {
    for (const auto& [d, l] : kUnetResnet)
        if (starts_with(rest, std::string(d) + ".")) return rename_first(rest, d, l);
    return rest;
}

std::string unet_resnet_from_ldm(const std::string& rest) {
    for (const auto& [d, l] : kUnetResnet)
        if (starts_with(rest, std::string(l) + ".")) return rename_first(rest, l, d);
    return "";
}

int upsampler_slot(const UNetConfig& cfg, size_t up_level) {
    return cfg.up_block_types.at(up_level).find("CrossAttn") != std::string::npos ? 2 : 1;
}

}  // namespace

std::string unet_key_to_ldm(const std::string& name, const UNetConfig& cfg) {
    const std::string p = kLdmUnetPrefix;
    const int per_level = cfg.layers_per_block + 1;
    auto parts = split(name);
    if (starts_with(name, "conv_in.")) return p + "input_blocks.0.0." + dotted_from(parts, 1);
    if (starts_with(name, "time_embedding.linear_1.")) return p + "time_embed.0." + dotted_from(parts, 2);
    if (starts_with(name, "time_embedding.linear_2.")) return p + "time_embed.2." + dotted_from(parts, 2);
    if (starts_with(name, "conv_norm_out.")) return p + "out.0." + dotted_from(parts, 1);
    if (starts_with(name, "conv_out.")) return p + "out.2." + dotted_from(parts, 1);
    if (starts_with(name, "down_blocks.") && parts.size() > 4) {
        int level = std::atoi(parts[1].c_str());
        const std::string& kind = parts[2];
        int j = std::atoi(parts[3].c_str());
        std::string rest = dotted_from(parts, 4);
        if (kind == "resnets")
            return p + "input_blocks." + std::to_string(1 + level * per_level + j) + ".0." + unet_resnet_to_ldm(rest);
        if (kind == "attentions")
            return p + "input_blocks." + std::to_string(1 + level * per_level + j) + ".1." + rest;
        if (kind == "downsamplers")  // rest = "conv.weight"
            return p + "input_blocks." + std::to_string((level + 1) * per_level) + ".0.op." + dotted_from(parts, 5);
    }
    if (starts_with(name, "mid_block.") && parts.size() > 3) {
        int j = std::atoi(parts[2].c_str());
        std::string rest = dotted_from(parts, 3);
        if (parts[1] == "resnets") return p + "middle_block." + std::to_string(j == 0 ? 0 : 2) + "." + unet_resnet_to_ldm(rest);
        if (parts[1] == "attentions") return p + "middle_block.1." + rest;
    }
    if (starts_with(name, "up_blocks.") && parts.size() > 4) {
        int level = std::atoi(parts[1].c_str());
        const std::string& kind = parts[2];
        int j = std::atoi(parts[3].c_str());
        std::string rest = dotted_from(parts, 4);
        if (kind == "resnets")
            return p + "output_blocks." + std::to_string(level * per_level + j) + ".0." + unet_resnet_to_ldm(rest);
        if (kind == "attentions")
            return p + "output_blocks." + std::to_string(level * per_level + j) + ".1." + rest;
        if (kind == "upsamplers")
            return p + "output_blocks." + std::to_string(level * per_level + per_level - 1) + "." +
                   std::to_string(upsampler_slot(cfg, level)) + "." + rest;
    }
    return "";
}

std::string unet_key_from_ldm(const std::string& key, const UNetConfig& cfg) {
    std::string k = starts_with(key, kLdmUnetPrefix) ? key.substr(std::string(kLdmUnetPrefix).size()) : key;
    const int per_level = cfg.layers_per_block + 1;
    const int levels = static_cast<int>(cfg.block_out_channels.size());
    auto parts = split(k);
    if (parts.size() < 3) return "";
    if (parts[0] == "time_embed" && (parts[1] == "0" || parts[1] == "2"))
        return std::string("time_embedding.linear_") + (parts[1] == "0" ? "1" : "2") + "." + dotted_from(parts, 2);
    if (parts[0] == "out" && (parts[1] == "0" || parts[1] == "2"))
        return std::string(parts[1] == "0" ? "conv_norm_out." : "conv_out.") + dotted_from(parts, 2);
    if (parts[0] == "input_blocks" && is_number(parts[1]) && is_number(parts[2])) {
        int idx = std::atoi(parts[1].c_str());
        int slot = std::atoi(parts[2].c_str());
        std::string rest = dotted_from(parts, 3);
        if (idx == 0) return slot == 0 ? "conv_in." + rest : "";
        int level = (idx - 1) / per_level;
        int j = (idx - 1) % per_level;
        if (level >= levels) return "";
        if (j == per_level - 1) {  // the level's downsampler: input_blocks.N.0.op.*
            if (slot != 0 || !starts_with(rest, "op.")) return "";
            return "down_blocks." + std::to_string(level) + ".downsamplers.0.conv." + rest.substr(3);
        }
        if (slot == 0) {
            std::string r = unet_resnet_from_ldm(rest);
            return r.empty() ? "" : "down_blocks." + std::to_string(level) + ".resnets." + std::to_string(j) + "." + r;
        }
        if (slot == 1) return "down_blocks." + std::to_string(level) + ".attentions." + std::to_string(j) + "." + rest;
        return "";
    }
    if (parts[0] == "middle_block" && is_number(parts[1])) {
        int idx = std::atoi(parts[1].c_str());
        std::string rest = dotted_from(parts, 2);
        if (idx == 1) return "mid_block.attentions.0." + rest;
        std::string r = unet_resnet_from_ldm(rest);
        if (r.empty() || (idx != 0 && idx != 2)) return "";
        return "mid_block.resnets." + std::to_string(idx == 0 ? 0 : 1) + "." + r;
    }
    if (parts[0] == "output_blocks" && is_number(parts[1]) && is_number(parts[2])) {
        int idx = std::atoi(parts[1].c_str());
        int slot = std::atoi(parts[2].c_str());
        int level = idx / per_level;
        int j = idx % per_level;
        if (level >= levels) return "";
        std::string rest = dotted_from(parts, 3);
        if (slot == 0) {
            std::string r = unet_resnet_from_ldm(rest);
            return r.empty() ? "" : "up_blocks." + std::to_string(level) + ".resnets." + std::to_string(j) + "." + r;
        }
        if (j == per_level - 1 && slot == upsampler_slot(cfg, level) && starts_with(rest, "conv."))
            return "up_blocks." + std::to_string(level) + ".upsamplers.0." + rest;
        if (slot == 1) return "up_blocks." + std::to_string(level) + ".attentions." + std::to_string(j) + "." + rest;
    }
    return "";
}

// ---------------------------------------------------------------- VAE

namespace {

const std::array<std::pair<const char*, const char*>, 4> kVaeMidAttention{
    {{"group_norm", "norm"}, {"to_q", "q"}, {"to_k", "k"}, {"to_v", "v"}}};

std::string vae_resnet_to_ldm(const std::string& rest) { return rename_first(rest, "conv_shortcut", "nin_shortcut"); }
std::string vae_resnet_from_ldm(const std::string& rest) { return rename_first(rest, "nin_shortcut", "conv_shortcut"); }

}  // namespace

std::string vae_key_to_ldm(const std::string& name, const VaeConfig& cfg) {
    const std::string p = kLdmVaePrefix;
    const int levels = static_cast<int>(cfg.block_out_channels.size());
    auto parts = split(name);
    if (parts.size() < 2) return "";
    if (parts[0] == "quant_conv" || parts[0] == "post_quant_conv") return p + name;
    const std::string& part = parts[0];  // encoder / decoder
    if (part != "encoder" && part != "decoder") return "";
    const std::string& sub = parts[1];
    if (sub == "conv_in" || sub == "conv_out") return p + name;
    if (sub == "conv_norm_out") return p + part + ".norm_out." + dotted_from(parts, 2);
    if (sub == "mid_block" && parts.size() > 4) {
        int j = std::atoi(parts[3].c_str());
        std::string rest = dotted_from(parts, 4);
        if (parts[2] == "resnets") return p + part + ".mid.block_" + std::to_string(j + 1) + "." + vae_resnet_to_ldm(rest);
        if (parts[2] == "attentions") {
            for (const auto& [d, l] : kVaeMidAttention)
                if (starts_with(rest, std::string(d) + ".")) return p + part + ".mid.attn_1." + rename_first(rest, d, l);
            if (starts_with(rest, "to_out.0.")) return p + part + ".mid.attn_1.proj_out." + rest.substr(9);
        }
        return "";
    }
    if ((sub == "down_blocks" || sub == "up_blocks") && parts.size() > 4) {
        int level = std::atoi(parts[2].c_str());
        int ldm_level = sub == "down_blocks" ? level : levels - 1 - level;
        std::string base = p + part + (sub == "down_blocks" ? ".down." : ".up.") + std::to_string(ldm_level) + ".";
        if (parts[3] == "resnets") return base + "block." + parts[4] + "." + vae_resnet_to_ldm(dotted_from(parts, 5));
        if (parts[3] == "downsamplers") return base + "downsample." + dotted_from(parts, 5);
        if (parts[3] == "upsamplers") return base + "upsample." + dotted_from(parts, 5);
    }
    return "";
}

std::string vae_key_from_ldm(const std::string& key, const VaeConfig& cfg) {
    std::string k = starts_with(key, kLdmVaePrefix) ? key.substr(std::string(kLdmVaePrefix).size()) : key;
    const int levels = static_cast<int>(cfg.block_out_channels.size());
    auto parts = split(k);
    if (parts.size() < 2) return "";
    if (parts[0] == "quant_conv" || parts[0] == "post_quant_conv") return k;
    const std::string& part = parts[0];
    if (part != "encoder" && part != "decoder") return "";
    const std::string& sub = parts[1];
    if (sub == "conv_in" || sub == "conv_out") return k;
    if (sub == "norm_out") return part + ".conv_norm_out." + dotted_from(parts, 2);
    if (sub == "mid" && parts.size() > 3) {
        std::string rest = dotted_from(parts, 3);
        if (parts[2] == "block_1" || parts[2] == "block_2")
            return part + ".mid_block.resnets." + (parts[2] == "block_1" ? "0." : "1.") + vae_resnet_from_ldm(rest);
        if (parts[2] == "attn_1") {
            for (const auto& [d, l] : kVaeMidAttention)
                if (starts_with(rest, std::string(l) + ".")) return part + ".mid_block.attentions.0." + rename_first(rest, l, d);
            if (starts_with(rest, "proj_out.")) return part + ".mid_block.attentions.0.to_out.0." + rest.substr(9);
        }
        return "";
    }
    if ((sub == "down" || sub == "up") && parts.size() > 4 && is_number(parts[2])) {
        int ldm_level = std::atoi(parts[2].c_str());
        if (ldm_level >= levels) return "";
        int level = sub == "down" ? ldm_level : levels - 1 - ldm_level;
        std::string base = part + (sub == "down" ? ".down_blocks." : ".up_blocks.") + std::to_string(level) + ".";
        if (parts[3] == "block" && is_number(parts[4])) return base + "resnets." + parts[4] + "." + vae_resnet_from_ldm(dotted_from(parts, 5));
        if (parts[3] == "downsample") return base + "downsamplers.0." + dotted_from(parts, 4);
        if (parts[3] == "upsample") return base + "upsamplers.0." + dotted_from(parts, 4);
    }
    return "";
}

// ---------------------------------------------------------------- CLIP text

std::string text_key_to_ldm(const std::string& name) { return std::string(kLdmTextPrefix) + name; }

std::string text_key_from_ldm(const std::string& key) {
    std::string k = starts_with(key, kLdmTextPrefix) ? key.substr(std::string(kLdmTextPrefix).size()) : key;
    if (starts_with(k, "text_model.")) return k;
    if (starts_with(k, "embeddings.") || starts_with(k, "encoder.") || starts_with(k, "final_layer_norm."))
        return "text_model." + k;
    return "";
}

}  // namespace multilora::models
