// CLIP's vision tower and projections in transformers' CLIPModel layout (vision_model.*, visual_projection,
// text_projection), used by eval's CLIPScore. The encoder blocks are the text model's ClipEncoderLayer,
// unmasked.
#pragma once

#include <string>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include "multilora/models/layers.h"
#include "multilora/text/clip_config.h"

namespace multilora::text {

struct ClipVisionConfig {
    int hidden_size = 1024;
    int intermediate_size = 4096;
    int num_hidden_layers = 24;
    int num_attention_heads = 16;
    int image_size = 224;
    int patch_size = 14;
    int num_channels = 3;
    double layer_norm_eps = 1e-5;
    std::string hidden_act = "quick_gelu";
    text::ClipTextConfig encoder_config() const;  // the same encoder block settings, for ClipEncoderLayer
};

class ClipVisionModelImpl : public torch::nn::Module {
public:
    ClipVisionModelImpl(const ClipVisionConfig& cfg, int64_t projection_dim);
    // pixel_values [B, C, image_size, image_size] -> image_embeds [B, projection_dim] (not normalised).
    at::Tensor forward(const at::Tensor& pixel_values);

    at::Tensor patch_weight, class_embedding, position_embedding;
    models::LayerNorm pre_layrnorm{nullptr}, post_layernorm{nullptr};
    torch::nn::ModuleList layers;
    models::Linear visual_projection{nullptr};
    ClipVisionConfig cfg;
};
TORCH_MODULE(ClipVisionModel);

// text_projection.weight
class ClipTextProjectionImpl : public torch::nn::Module {
public:
    ClipTextProjectionImpl(int64_t hidden, int64_t projection_dim);
    models::Linear text_projection{nullptr};
};
TORCH_MODULE(ClipTextProjection);

}  // namespace multilora::text
