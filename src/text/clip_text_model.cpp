#include "multilora/text/clip_text_model.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

namespace multilora::text {

using models::LayerNorm;
using models::Linear;

ClipAttentionImpl::ClipAttentionImpl(int64_t dim, int64_t heads_)
    : heads(heads_), scale(std::pow(static_cast<double>(dim / heads_), -0.5)) {
    k_proj = register_module("k_proj", Linear(dim, dim, true));
    v_proj = register_module("v_proj", Linear(dim, dim, true));
    q_proj = register_module("q_proj", Linear(dim, dim, true));
    out_proj = register_module("out_proj", Linear(dim, dim, true));
}

at::Tensor ClipAttentionImpl::forward(const at::Tensor& x, const at::Tensor& causal_mask) {
    // transformers scales the queries before the product; the causal mask is added to the scores.
    at::Tensor q = q_proj->forward(x).mul_(scale);
    at::Tensor k = k_proj->forward(x);
    at::Tensor v = v_proj->forward(x);
    return out_proj->forward(models::scaled_dot_product_attention(q, k, v, heads, 1.0, &causal_mask));
}

ClipEncoderLayerImpl::ClipEncoderLayerImpl(const text::ClipTextConfig& cfg)
    : quick_gelu(cfg.hidden_act == "quick_gelu") {
    self_attn = register_module("self_attn", ClipAttention(cfg.hidden_size, cfg.num_attention_heads));
    layer_norm1 = register_module("layer_norm1", LayerNorm(cfg.hidden_size, cfg.layer_norm_eps));
    auto mlp = register_module("mlp", std::make_shared<torch::nn::Module>());
    fc1 = mlp->register_module("fc1", Linear(cfg.hidden_size, cfg.intermediate_size, true));
    fc2 = mlp->register_module("fc2", Linear(cfg.intermediate_size, cfg.hidden_size, true));
    layer_norm2 = register_module("layer_norm2", LayerNorm(cfg.hidden_size, cfg.layer_norm_eps));
}

at::Tensor ClipEncoderLayerImpl::forward(const at::Tensor& x, const at::Tensor& causal_mask) {
    at::Tensor h = self_attn->forward(layer_norm1->forward(x), causal_mask).add_(x);
    at::Tensor m = fc1->forward(layer_norm2->forward(h));
    m = quick_gelu ? m * at::sigmoid(m * 1.702) : at::gelu(m);
    return fc2->forward(m).add_(h);
}

ClipTextModelImpl::ClipTextModelImpl(const text::ClipTextConfig& cfg) : cfg_(cfg) {
    auto text_model = register_module("text_model", std::make_shared<torch::nn::Module>());
    auto embeddings = text_model->register_module("embeddings", std::make_shared<torch::nn::Module>());
    token_embedding = embeddings->register_module(
        "token_embedding", torch::nn::Embedding(cfg.vocab_size, cfg.hidden_size));
    position_embedding = embeddings->register_module(
        "position_embedding", torch::nn::Embedding(cfg.max_position_embeddings, cfg.hidden_size));
    auto encoder = text_model->register_module("encoder", std::make_shared<torch::nn::Module>());
    layers = encoder->register_module("layers", torch::nn::ModuleList());
    for (int i = 0; i < cfg.num_hidden_layers; ++i) layers->push_back(ClipEncoderLayer(cfg));
    final_layer_norm = text_model->register_module("final_layer_norm", LayerNorm(cfg.hidden_size, cfg.layer_norm_eps));
}

at::Tensor ClipTextModelImpl::forward(const at::Tensor& ids) {
    const int64_t t = ids.size(1);
    at::Tensor positions = at::arange(t, ids.options().dtype(at::kLong)).unsqueeze(0);
    at::Tensor h = token_embedding->forward(ids) + position_embedding->forward(positions);
    // Causal mask. transformers fills with the dtype's lowest value; after softmax that is exactly the
    // same as -inf, since no row is fully masked (each token sees itself).
    at::Tensor mask = at::full({t, t}, -std::numeric_limits<double>::infinity(), h.options()).triu_(1);
    for (const auto& layer : *layers) h = layer->as<ClipEncoderLayerImpl>()->forward(h, mask);
    return final_layer_norm->forward(h);
}

}  // namespace multilora::text
