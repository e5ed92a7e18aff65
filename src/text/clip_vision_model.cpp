#include "multilora/text/clip_vision_model.h"

#include <torch/torch.h>

#include "multilora/text/clip_text_model.h"
#include "multilora/util/error.h"

namespace multilora::text {

ClipTextConfig ClipVisionConfig::encoder_config() const {
    ClipTextConfig c;
    c.hidden_size = hidden_size;
    c.intermediate_size = intermediate_size;
    c.num_hidden_layers = num_hidden_layers;
    c.num_attention_heads = num_attention_heads;
    c.layer_norm_eps = layer_norm_eps;
    c.hidden_act = hidden_act;
    return c;
}

ClipVisionModelImpl::ClipVisionModelImpl(const ClipVisionConfig& c, int64_t projection_dim) : cfg(c) {
    const int64_t grid = cfg.image_size / cfg.patch_size;
    auto vision = register_module("vision_model", std::make_shared<torch::nn::Module>());
    auto emb = vision->register_module("embeddings", std::make_shared<torch::nn::Module>());
    auto patch = emb->register_module("patch_embedding", std::make_shared<torch::nn::Module>());
    patch_weight = patch->register_parameter(
        "weight", torch::zeros({cfg.hidden_size, cfg.num_channels, cfg.patch_size, cfg.patch_size}), false);
    class_embedding = emb->register_parameter("class_embedding", torch::zeros({cfg.hidden_size}), false);
    auto pos = emb->register_module("position_embedding", std::make_shared<torch::nn::Module>());
    position_embedding = pos->register_parameter("weight", torch::zeros({grid * grid + 1, cfg.hidden_size}), false);
    pre_layrnorm = vision->register_module("pre_layrnorm", models::LayerNorm(cfg.hidden_size, cfg.layer_norm_eps));
    auto encoder = vision->register_module("encoder", std::make_shared<torch::nn::Module>());
    layers = encoder->register_module("layers", torch::nn::ModuleList());
    const ClipTextConfig block = cfg.encoder_config();
    for (int i = 0; i < cfg.num_hidden_layers; ++i) layers->push_back(ClipEncoderLayer(block));
    post_layernorm = vision->register_module("post_layernorm", models::LayerNorm(cfg.hidden_size, cfg.layer_norm_eps));
    visual_projection = register_module("visual_projection", models::Linear(cfg.hidden_size, projection_dim, false));
}

at::Tensor ClipVisionModelImpl::forward(const at::Tensor& pixel_values) {
    if (pixel_values.dim() != 4 || pixel_values.size(1) != cfg.num_channels ||
        pixel_values.size(2) != cfg.image_size || pixel_values.size(3) != cfg.image_size)
        throw RuntimeError("CLIP vision model: expected pixel values [B, " + std::to_string(cfg.num_channels) + ", " +
                           std::to_string(cfg.image_size) + ", " + std::to_string(cfg.image_size) + "]");
    const int64_t b = pixel_values.size(0);
    at::Tensor x = at::conv2d(pixel_values, patch_weight, {}, {cfg.patch_size, cfg.patch_size});
    x = x.flatten(2).transpose(1, 2);  // [B, N, hidden]
    at::Tensor cls = class_embedding.view({1, 1, -1}).expand({b, 1, class_embedding.size(0)});
    x = at::cat({cls, x}, 1) + position_embedding.unsqueeze(0);
    x = pre_layrnorm->forward(x);
    const int64_t t = x.size(1);
    at::Tensor no_mask = at::zeros({t, t}, x.options());
    for (const auto& layer : *layers) x = layer->as<ClipEncoderLayerImpl>()->forward(x, no_mask);
    at::Tensor pooled = post_layernorm->forward(x.select(1, 0));
    return visual_projection->forward(pooled);
}

ClipTextProjectionImpl::ClipTextProjectionImpl(int64_t hidden, int64_t projection_dim) {
    text_projection = register_module("text_projection", models::Linear(hidden, projection_dim, false));
}

}  // namespace multilora::text
