// UNet2DConditionModel for SD1.x, with diffusers' parameter names.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include "multilora/models/layers.h"
#include "multilora/models/model_configs.h"

namespace multilora::models {

class TimestepEmbeddingImpl : public torch::nn::Module {
public:
    TimestepEmbeddingImpl(int64_t in_dim, int64_t dim);
    at::Tensor forward(const at::Tensor& t_emb);
    Linear linear_1{nullptr}, linear_2{nullptr};
};
TORCH_MODULE(TimestepEmbedding);

// CrossAttnDownBlock2D / DownBlock2D (attentions empty for the latter).
class DownBlockImpl : public torch::nn::Module {
public:
    DownBlockImpl(const UNetConfig& cfg, size_t level, int64_t in_channels, int64_t out_channels);
    // Appends every intermediate output to `skips`, as diffusers' res_samples (without the downsampler when
    // `downsample` is false: DeepCache's shallow pass stops there).
    at::Tensor forward(at::Tensor x, const at::Tensor& temb_silu, const at::Tensor& context,
                       std::vector<at::Tensor>& skips, bool downsample = true);
    torch::nn::ModuleList resnets, attentions, downsamplers;
};
TORCH_MODULE(DownBlock);

// CrossAttnUpBlock2D / UpBlock2D.
class UpBlockImpl : public torch::nn::Module {
public:
    UpBlockImpl(const UNetConfig& cfg, size_t level, int64_t in_channels, int64_t prev_out_channels,
                int64_t out_channels, bool add_upsample);
    // Consumes skips from the back of `skips`.
    at::Tensor forward(at::Tensor x, const at::Tensor& temb_silu, const at::Tensor& context,
                       std::vector<at::Tensor>& skips);
    torch::nn::ModuleList resnets, attentions, upsamplers;
};
TORCH_MODULE(UpBlock);

class MidBlockImpl : public torch::nn::Module {
public:
    MidBlockImpl(const UNetConfig& cfg, int64_t channels);
    at::Tensor forward(const at::Tensor& x, const at::Tensor& temb_silu, const at::Tensor& context);
    torch::nn::ModuleList resnets, attentions;
};
TORCH_MODULE(MidBlock);

class UNet2DConditionModelImpl : public torch::nn::Module {
public:
    explicit UNet2DConditionModelImpl(const UNetConfig& cfg);
    // sample [B, 4, h, w]; timestep: one value for the whole batch (or [B]); context [B, 77, D].
    at::Tensor forward(const at::Tensor& sample, const at::Tensor& timesteps, const at::Tensor& context);

    // DeepCache with its shallowest cut (cache layer 0, block 1), as CMLoRA runs it. The full pass also
    // returns in `deep` the input of the last up block; the shallow pass runs only conv_in, the first down
    // block's layers (no downsampler), the last up block on `deep` and the output layers.
    at::Tensor forward(const at::Tensor& sample, const at::Tensor& timesteps, const at::Tensor& context,
                       at::Tensor* deep);
    at::Tensor forward_shallow(const at::Tensor& sample, const at::Tensor& timesteps, const at::Tensor& context,
                               const at::Tensor& deep);

    const UNetConfig& config() const { return cfg_; }

    Conv2d conv_in{nullptr}, conv_out{nullptr};
    TimestepEmbedding time_embedding{nullptr};
    torch::nn::ModuleList down_blocks, up_blocks;
    MidBlock mid_block{nullptr};
    GroupNorm conv_norm_out{nullptr};

private:
    at::Tensor time_silu(const at::Tensor& sample, const at::Tensor& timesteps);
    at::Tensor output(const at::Tensor& h);
    UNetConfig cfg_;
};
TORCH_MODULE(UNet2DConditionModel);

}  // namespace multilora::models
