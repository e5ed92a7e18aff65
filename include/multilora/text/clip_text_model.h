// CLIPTextModel (transformers) with its parameter names under `text_model.`; returns last_hidden_state
// (after final_layer_norm), which is what Stable Diffusion v1.x conditions on.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include "multilora/models/layers.h"
#include "multilora/text/clip_config.h"

namespace multilora::text {

class ClipAttentionImpl : public torch::nn::Module {
public:
    ClipAttentionImpl(int64_t dim, int64_t heads);
    at::Tensor forward(const at::Tensor& x, const at::Tensor& causal_mask);
    models::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
    int64_t heads;
    double scale;
};
TORCH_MODULE(ClipAttention);

class ClipEncoderLayerImpl : public torch::nn::Module {
public:
    explicit ClipEncoderLayerImpl(const text::ClipTextConfig& cfg);
    at::Tensor forward(const at::Tensor& x, const at::Tensor& causal_mask);
    models::LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
    ClipAttention self_attn{nullptr};
    models::Linear fc1{nullptr}, fc2{nullptr};
    bool quick_gelu;
};
TORCH_MODULE(ClipEncoderLayer);

class ClipTextModelImpl : public torch::nn::Module {
public:
    explicit ClipTextModelImpl(const text::ClipTextConfig& cfg);
    // ids: int64 [B, T] with T <= max_position_embeddings. Returns [B, T, hidden].
    at::Tensor forward(const at::Tensor& ids);
    const text::ClipTextConfig& config() const { return cfg_; }

    torch::nn::Embedding token_embedding{nullptr}, position_embedding{nullptr};
    torch::nn::ModuleList layers;
    models::LayerNorm final_layer_norm{nullptr};

private:
    text::ClipTextConfig cfg_;
};
TORCH_MODULE(ClipTextModel);

}  // namespace multilora::text
