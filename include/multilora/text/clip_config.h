// The CLIP text encoder's architecture config, with transformers' CLIPTextConfig field names: a v1_5()
// preset (openai/clip-vit-large-patch14's text tower), a reader for config.json, and detection from shapes.
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

#include "multilora/models/model_configs.h"

namespace multilora::text {

using models::ShapeMap;

struct ClipTextConfig {
    int vocab_size = 49408;
    int hidden_size = 768;
    int intermediate_size = 3072;
    int num_hidden_layers = 12;
    int num_attention_heads = 12;
    int max_position_embeddings = 77;
    double layer_norm_eps = 1e-5;
    std::string hidden_act = "quick_gelu";  // or "gelu"

    static ClipTextConfig v1_5();
    static ClipTextConfig from_json(const nlohmann::json& j);
    // Heads cannot be seen in shapes: hidden/64 is assumed (true of every CLIP text tower SD uses).
    static ClipTextConfig detect_from_weights(const ShapeMap& shapes);
    nlohmann::json to_json() const;
};

}  // namespace multilora::text
