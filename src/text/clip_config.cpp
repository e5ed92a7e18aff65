#include "multilora/text/clip_config.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "multilora/models/config_fields.h"
#include "multilora/util/error.h"

namespace multilora::text {

using models::read_if;
using models::shape_of;
using nlohmann::json;

ClipTextConfig ClipTextConfig::v1_5() { return ClipTextConfig{}; }

ClipTextConfig ClipTextConfig::from_json(const json& j) {
    ClipTextConfig c;
    read_if(j, "vocab_size", c.vocab_size);
    read_if(j, "hidden_size", c.hidden_size);
    read_if(j, "intermediate_size", c.intermediate_size);
    read_if(j, "num_hidden_layers", c.num_hidden_layers);
    read_if(j, "num_attention_heads", c.num_attention_heads);
    read_if(j, "max_position_embeddings", c.max_position_embeddings);
    read_if(j, "layer_norm_eps", c.layer_norm_eps);
    read_if(j, "hidden_act", c.hidden_act);
    if (c.hidden_act != "quick_gelu" && c.hidden_act != "gelu")
        throw RuntimeError("unsupported CLIP hidden_act '" + c.hidden_act + "' (expected quick_gelu or gelu)");
    return c;
}

ClipTextConfig ClipTextConfig::detect_from_weights(const ShapeMap& shapes) {
    ClipTextConfig c;
    auto tok = shape_of(shapes, "text_model.embeddings.token_embedding.weight");
    c.vocab_size = static_cast<int>(tok[0]);
    c.hidden_size = static_cast<int>(tok[1]);
    c.max_position_embeddings =
        static_cast<int>(shape_of(shapes, "text_model.embeddings.position_embedding.weight")[0]);
    c.intermediate_size = static_cast<int>(shape_of(shapes, "text_model.encoder.layers.0.mlp.fc1.weight")[0]);
    int layers = 0;
    while (shapes.count("text_model.encoder.layers." + std::to_string(layers) + ".mlp.fc1.weight")) ++layers;
    c.num_hidden_layers = layers;
    c.num_attention_heads = std::max(1, c.hidden_size / 64);
    return c;
}

json ClipTextConfig::to_json() const {
    return json{{"architectures", {"CLIPTextModel"}},
                {"model_type", "clip_text_model"},
                {"vocab_size", vocab_size},
                {"hidden_size", hidden_size},
                {"intermediate_size", intermediate_size},
                {"num_hidden_layers", num_hidden_layers},
                {"num_attention_heads", num_attention_heads},
                {"max_position_embeddings", max_position_embeddings},
                {"layer_norm_eps", layer_norm_eps},
                {"hidden_act", hidden_act},
                {"bos_token_id", 49406},
                {"eos_token_id", 49407},
                {"pad_token_id", 1}};
}

}  // namespace multilora::text
