// AutoencoderKL (SD1.x VAE) with diffusers' parameter names: encoder, decoder, quant convs.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include "multilora/models/layers.h"
#include "multilora/models/model_configs.h"

namespace multilora::models {

// The VAE's single-head self-attention over pixels (diffusers' Attention with group_norm, biased q/k/v).
class VaeAttentionImpl : public torch::nn::Module {
public:
    VaeAttentionImpl(int64_t channels, int64_t groups);
    at::Tensor forward(const at::Tensor& x);
    GroupNorm group_norm{nullptr};
    Attention attention{nullptr};  // registers to_q, to_k, to_v, to_out on this module
};
TORCH_MODULE(VaeAttention);

// UNetMidBlock2D without time embedding: resnet, attention, resnet.
class VaeMidBlockImpl : public torch::nn::Module {
public:
    VaeMidBlockImpl(int64_t channels, int64_t groups, bool add_attention);
    at::Tensor forward(const at::Tensor& x);
    torch::nn::ModuleList resnets, attentions;
};
TORCH_MODULE(VaeMidBlock);

class VaeEncoderImpl : public torch::nn::Module {
public:
    explicit VaeEncoderImpl(const VaeConfig& cfg);
    at::Tensor forward(const at::Tensor& x);
    Conv2d conv_in{nullptr}, conv_out{nullptr};
    torch::nn::ModuleList down_blocks;
    VaeMidBlock mid_block{nullptr};
    GroupNorm conv_norm_out{nullptr};
};
TORCH_MODULE(VaeEncoder);

class VaeDecoderImpl : public torch::nn::Module {
public:
    explicit VaeDecoderImpl(const VaeConfig& cfg);
    at::Tensor forward(const at::Tensor& z);
    Conv2d conv_in{nullptr}, conv_out{nullptr};
    torch::nn::ModuleList up_blocks;
    VaeMidBlock mid_block{nullptr};
    GroupNorm conv_norm_out{nullptr};
};
TORCH_MODULE(VaeDecoder);

class AutoencoderKLImpl : public torch::nn::Module {
public:
    explicit AutoencoderKLImpl(const VaeConfig& cfg);
    // Latents (already divided by scaling_factor) -> image in [-1, 1].
    at::Tensor decode(const at::Tensor& latents);
    // The same in tiles of `tile_pixels` (a multiple of the downscale factor), as diffusers' tiled_decode
    // (AutoencoderKL.enable_tiling): latent tiles overlap by `overlap` of a tile, each decoded alone, and
    // neighbours are blended linearly over that many pixels (top, then left) before each tile is cropped
    // to its stride. Latents that fit one tile decode untiled. Memory is one tile's decoder, whatever the size.
    at::Tensor decode_tiled(const at::Tensor& latents, int64_t tile_pixels, double overlap = 0.25);
    // Image in [-1, 1] -> the latent distribution's mean (not yet multiplied by scaling_factor).
    at::Tensor encode_mean(const at::Tensor& image);
    const VaeConfig& config() const { return cfg_; }
    // Set after training a VAE: 1 / std of its latents (SD1.5's is 0.18215).
    void set_scaling_factor(double factor) { cfg_.scaling_factor = factor; }

    VaeEncoder encoder{nullptr};
    VaeDecoder decoder{nullptr};
    Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};

private:
    VaeConfig cfg_;
};
TORCH_MODULE(AutoencoderKL);

}  // namespace multilora::models
