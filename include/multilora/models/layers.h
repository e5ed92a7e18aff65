// Building blocks shared by the UNet, the VAE and the CLIP text model. Every module registers its
// parameters under diffusers' names (e.g. `to_out.0.weight`, `ff.net.2.bias`), so that a model's
// named_parameters() are exactly the keys of a diffusers checkpoint.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include "multilora/models/weight_adapter.h"

namespace multilora::models {

// True when autograd records operations on `t` (it requires grad and grad mode is on). Layers then take
// differentiable routes: no in-place activations, no in-place softmax or out= products (training).
bool records_grad(const at::Tensor& t);

// y = x Wᵀ + b, with an optional adapter beside the base weight (models/weight_adapter.h).
class LinearImpl : public torch::nn::Module {
public:
    LinearImpl(int64_t in_features, int64_t out_features, bool bias = true);
    at::Tensor forward(const at::Tensor& x);

    at::Tensor weight;
    at::Tensor bias;  // undefined when the layer has none
    std::shared_ptr<WeightAdapter> adapter;
};
TORCH_MODULE(Linear);

// 2-D convolution (square kernel), with the same optional adapter as Linear.
class Conv2dImpl : public torch::nn::Module {
public:
    Conv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride = 1, int64_t padding = 0);
    at::Tensor forward(const at::Tensor& x);

    at::Tensor weight;
    at::Tensor bias;
    int64_t stride;
    int64_t padding;
    std::shared_ptr<WeightAdapter> adapter;
};
TORCH_MODULE(Conv2d);

class GroupNormImpl : public torch::nn::Module {
public:
    GroupNormImpl(int64_t groups, int64_t channels, double eps);
    at::Tensor forward(const at::Tensor& x);
    at::Tensor weight, bias;
    int64_t groups;
    double eps;
};
TORCH_MODULE(GroupNorm);

class LayerNormImpl : public torch::nn::Module {
public:
    LayerNormImpl(int64_t dim, double eps);
    at::Tensor forward(const at::Tensor& x);
    at::Tensor weight, bias;
    int64_t dim;
    double eps;
};
TORCH_MODULE(LayerNorm);

// A module without parameters, holding a list slot (diffusers' Dropout at ff.net.1).
class IdentityImpl : public torch::nn::Module {
public:
    at::Tensor forward(const at::Tensor& x) { return x; }
};
TORCH_MODULE(Identity);

// Softmax attention over [batch, tokens, heads*dim] inputs. Queries are processed in chunks so that no
// score matrix larger than `max_score_elements` exists at once; each query row is normalised on its own,
// so chunking does not change the result. On the CPU in fp32 without a mask (and without autograd) it takes
// the fused kernel of models/fused_attention.h where the CPU has AVX-512, else the products run as grouped
// 1x1 convolutions (models/matmul_kernels.h), one batch element at a time; otherwise through at::bmm.
at::Tensor scaled_dot_product_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                        int64_t heads, double scale,
                                        const at::Tensor* additive_mask = nullptr);
void set_attention_chunk_elements(int64_t max_score_elements);
int64_t attention_chunk_elements();

// diffusers' Attention (the processor path used by SD1.x): to_q/to_k/to_v, to_out.0.
class AttentionImpl : public torch::nn::Module {
public:
    AttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads, int64_t head_dim, bool qkv_bias = false);
    // `context` null means self-attention.
    at::Tensor forward(const at::Tensor& x, const at::Tensor* context = nullptr);

    Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
    torch::nn::ModuleList to_out;
    int64_t heads;
    double scale;
};
TORCH_MODULE(Attention);

// GEGLU feed-forward: net.0.proj (dim -> 2·inner), x·gelu(gate), net.2 (inner -> dim).
class FeedForwardImpl : public torch::nn::Module {
public:
    FeedForwardImpl(int64_t dim, int64_t inner_dim);
    at::Tensor forward(const at::Tensor& x);
    torch::nn::ModuleList net;
    Linear proj{nullptr};
    Linear out{nullptr};
};
TORCH_MODULE(FeedForward);

class BasicTransformerBlockImpl : public torch::nn::Module {
public:
    BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim, int64_t context_dim);
    at::Tensor forward(const at::Tensor& x, const at::Tensor& context);
    LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
    Attention attn1{nullptr}, attn2{nullptr};
    FeedForward ff{nullptr};
};
TORCH_MODULE(BasicTransformerBlock);

// diffusers' Transformer2DModel for continuous inputs (SD1.x: 1x1-conv proj_in/proj_out).
class Transformer2DImpl : public torch::nn::Module {
public:
    Transformer2DImpl(int64_t channels, int64_t heads, int64_t context_dim, int64_t groups, int64_t depth,
                      bool use_linear_projection);
    at::Tensor forward(const at::Tensor& x, const at::Tensor& context);
    GroupNorm norm{nullptr};
    std::shared_ptr<torch::nn::Module> proj_in, proj_out;  // Conv2d or Linear
    torch::nn::ModuleList transformer_blocks;
    bool linear_projection;
};
TORCH_MODULE(Transformer2D);

// diffusers' ResnetBlock2D; temb_channels 0 means no time embedding (the VAE).
class ResnetBlock2DImpl : public torch::nn::Module {
public:
    ResnetBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t temb_channels, int64_t groups, double eps);
    // `temb_silu` is silu(time embedding), shared by all blocks of one forward; null without one.
    at::Tensor forward(const at::Tensor& x, const at::Tensor* temb_silu);
    GroupNorm norm1{nullptr}, norm2{nullptr};
    Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
    Linear time_emb_proj{nullptr};
};
TORCH_MODULE(ResnetBlock2D);

// Stride-2 3x3 conv. padding 1 (UNet) or 0 with an asymmetric (0,1,0,1) pad first (VAE encoder).
class Downsample2DImpl : public torch::nn::Module {
public:
    Downsample2DImpl(int64_t channels, int64_t padding);
    at::Tensor forward(const at::Tensor& x);
    Conv2d conv{nullptr};
    int64_t padding;
};
TORCH_MODULE(Downsample2D);

// Nearest-neighbour 2x (or to an explicit size), then 3x3 conv.
class Upsample2DImpl : public torch::nn::Module {
public:
    explicit Upsample2DImpl(int64_t channels);
    at::Tensor forward(const at::Tensor& x, const std::vector<int64_t>* size = nullptr);
    Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample2D);

// Sinusoidal timestep embedding as diffusers' get_timestep_embedding (float32 result).
at::Tensor timestep_embedding(const at::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos, double freq_shift);

}  // namespace multilora::models
