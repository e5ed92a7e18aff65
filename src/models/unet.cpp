#include "multilora/models/unet.h"

#include <torch/torch.h>

namespace multilora::models {

TimestepEmbeddingImpl::TimestepEmbeddingImpl(int64_t in_dim, int64_t dim) {
    linear_1 = register_module("linear_1", Linear(in_dim, dim, true));
    linear_2 = register_module("linear_2", Linear(dim, dim, true));
}

at::Tensor TimestepEmbeddingImpl::forward(const at::Tensor& t_emb) {
    return linear_2->forward(at::silu(linear_1->forward(t_emb)));
}

namespace {
int64_t heads_of(const UNetConfig& cfg, size_t level) { return cfg.num_attention_heads.at(level); }
}  // namespace

DownBlockImpl::DownBlockImpl(const UNetConfig& cfg, size_t level, int64_t in_channels, int64_t out_channels) {
    resnets = register_module("resnets", torch::nn::ModuleList());
    attentions = register_module("attentions", torch::nn::ModuleList());
    downsamplers = register_module("downsamplers", torch::nn::ModuleList());
    const bool attn = cfg.has_attention(level);
    for (int i = 0; i < cfg.layers_per_block; ++i) {
        resnets->push_back(ResnetBlock2D(i == 0 ? in_channels : out_channels, out_channels, cfg.time_embed_dim(),
                                         cfg.norm_num_groups, cfg.norm_eps));
        if (attn)
            attentions->push_back(Transformer2D(out_channels, heads_of(cfg, level), cfg.cross_attention_dim,
                                                cfg.norm_num_groups, cfg.transformer_layers_per_block,
                                                cfg.use_linear_projection));
    }
    if (level + 1 < cfg.block_out_channels.size()) downsamplers->push_back(Downsample2D(out_channels, 1));
}

at::Tensor DownBlockImpl::forward(at::Tensor x, const at::Tensor& temb_silu, const at::Tensor& context,
                                  std::vector<at::Tensor>& skips, bool downsample) {
    for (size_t i = 0; i < resnets->size(); ++i) {
        x = resnets[i]->as<ResnetBlock2DImpl>()->forward(x, &temb_silu);
        if (!attentions->is_empty()) x = attentions[i]->as<Transformer2DImpl>()->forward(x, context);
        skips.push_back(x);
    }
    if (downsample && !downsamplers->is_empty()) {
        x = downsamplers[0]->as<Downsample2DImpl>()->forward(x);
        skips.push_back(x);
    }
    return x;
}

UpBlockImpl::UpBlockImpl(const UNetConfig& cfg, size_t level, int64_t in_channels, int64_t prev_out_channels,
                         int64_t out_channels, bool add_upsample) {
    resnets = register_module("resnets", torch::nn::ModuleList());
    attentions = register_module("attentions", torch::nn::ModuleList());
    upsamplers = register_module("upsamplers", torch::nn::ModuleList());
    const bool attn = cfg.up_block_types.at(level).find("CrossAttn") != std::string::npos;
    const size_t reversed_level = cfg.block_out_channels.size() - 1 - level;
    const int layers = cfg.layers_per_block + 1;
    for (int i = 0; i < layers; ++i) {
        int64_t skip_channels = i == layers - 1 ? in_channels : out_channels;
        int64_t resnet_in = i == 0 ? prev_out_channels : out_channels;
        resnets->push_back(ResnetBlock2D(resnet_in + skip_channels, out_channels, cfg.time_embed_dim(),
                                         cfg.norm_num_groups, cfg.norm_eps));
        if (attn)
            attentions->push_back(Transformer2D(out_channels, heads_of(cfg, reversed_level), cfg.cross_attention_dim,
                                                cfg.norm_num_groups, cfg.transformer_layers_per_block,
                                                cfg.use_linear_projection));
    }
    if (add_upsample) upsamplers->push_back(Upsample2D(out_channels));
}

at::Tensor UpBlockImpl::forward(at::Tensor x, const at::Tensor& temb_silu, const at::Tensor& context,
                                std::vector<at::Tensor>& skips) {
    for (size_t i = 0; i < resnets->size(); ++i) {
        at::Tensor skip = std::move(skips.back());
        skips.pop_back();
        x = resnets[i]->as<ResnetBlock2DImpl>()->forward(at::cat({x, skip}, 1), &temb_silu);
        if (!attentions->is_empty()) x = attentions[i]->as<Transformer2DImpl>()->forward(x, context);
    }
    if (!upsamplers->is_empty()) {
        // Upsample to the next skip's size: equal to 2x for even sizes, and right for odd ones.
        std::vector<int64_t> size;
        if (!skips.empty()) size = {skips.back().size(2), skips.back().size(3)};
        x = upsamplers[0]->as<Upsample2DImpl>()->forward(x, skips.empty() ? nullptr : &size);
    }
    return x;
}

MidBlockImpl::MidBlockImpl(const UNetConfig& cfg, int64_t channels) {
    resnets = register_module("resnets", torch::nn::ModuleList());
    attentions = register_module("attentions", torch::nn::ModuleList());
    resnets->push_back(ResnetBlock2D(channels, channels, cfg.time_embed_dim(), cfg.norm_num_groups, cfg.norm_eps));
    attentions->push_back(Transformer2D(channels, cfg.num_attention_heads.back(), cfg.cross_attention_dim,
                                        cfg.norm_num_groups, cfg.transformer_layers_per_block,
                                        cfg.use_linear_projection));
    resnets->push_back(ResnetBlock2D(channels, channels, cfg.time_embed_dim(), cfg.norm_num_groups, cfg.norm_eps));
}

at::Tensor MidBlockImpl::forward(const at::Tensor& x, const at::Tensor& temb_silu, const at::Tensor& context) {
    at::Tensor h = resnets[0]->as<ResnetBlock2DImpl>()->forward(x, &temb_silu);
    h = attentions[0]->as<Transformer2DImpl>()->forward(h, context);
    return resnets[1]->as<ResnetBlock2DImpl>()->forward(h, &temb_silu);
}

UNet2DConditionModelImpl::UNet2DConditionModelImpl(const UNetConfig& cfg) : cfg_(cfg) {
    const auto& ch = cfg.block_out_channels;
    const size_t levels = ch.size();
    conv_in = register_module("conv_in", Conv2d(cfg.in_channels, ch[0], 3, 1, 1));
    time_embedding = register_module("time_embedding", TimestepEmbedding(ch[0], cfg.time_embed_dim()));
    down_blocks = register_module("down_blocks", torch::nn::ModuleList());
    int64_t out = ch[0];
    for (size_t i = 0; i < levels; ++i) {
        int64_t in = out;
        out = ch[i];
        down_blocks->push_back(DownBlock(cfg, i, in, out));
    }
    mid_block = register_module("mid_block", MidBlock(cfg, ch.back()));
    up_blocks = register_module("up_blocks", torch::nn::ModuleList());
    std::vector<int> rev(ch.rbegin(), ch.rend());
    out = rev[0];
    for (size_t i = 0; i < levels; ++i) {
        int64_t prev = out;
        out = rev[i];
        int64_t in = rev[std::min(i + 1, levels - 1)];
        up_blocks->push_back(UpBlock(cfg, i, in, prev, out, i + 1 < levels));
    }
    conv_norm_out = register_module("conv_norm_out", GroupNorm(cfg.norm_num_groups, ch[0], cfg.norm_eps));
    conv_out = register_module("conv_out", Conv2d(ch[0], cfg.out_channels, 3, 1, 1));
}

at::Tensor UNet2DConditionModelImpl::time_silu(const at::Tensor& sample, const at::Tensor& timesteps) {
    at::Tensor t = timesteps.dim() == 0 ? timesteps.reshape({1}) : timesteps;
    t = t.expand({sample.size(0)});
    at::Tensor t_emb = timestep_embedding(t, cfg_.block_out_channels[0], cfg_.flip_sin_to_cos, cfg_.freq_shift)
                           .to(sample.scalar_type());
    return at::silu(time_embedding->forward(t_emb));
}

at::Tensor UNet2DConditionModelImpl::output(const at::Tensor& h) {
    return conv_out->forward(at::silu(conv_norm_out->forward(h)));
}

at::Tensor UNet2DConditionModelImpl::forward(const at::Tensor& sample, const at::Tensor& timesteps,
                                             const at::Tensor& context) {
    return forward(sample, timesteps, context, nullptr);
}

at::Tensor UNet2DConditionModelImpl::forward(const at::Tensor& sample, const at::Tensor& timesteps,
                                             const at::Tensor& context, at::Tensor* deep) {
    at::Tensor temb_silu = time_silu(sample, timesteps);
    std::vector<at::Tensor> skips;
    at::Tensor h = conv_in->forward(sample);
    skips.push_back(h);
    for (const auto& block : *down_blocks) h = block->as<DownBlockImpl>()->forward(h, temb_silu, context, skips);
    h = mid_block->forward(h, temb_silu, context);
    for (size_t i = 0; i < up_blocks->size(); ++i) {
        if (deep && i + 1 == up_blocks->size()) *deep = h;
        h = up_blocks[i]->as<UpBlockImpl>()->forward(h, temb_silu, context, skips);
    }
    return output(h);
}

at::Tensor UNet2DConditionModelImpl::forward_shallow(const at::Tensor& sample, const at::Tensor& timesteps,
                                                     const at::Tensor& context, const at::Tensor& deep) {
    at::Tensor temb_silu = time_silu(sample, timesteps);
    std::vector<at::Tensor> skips;
    at::Tensor h = conv_in->forward(sample);
    skips.push_back(h);
    down_blocks[0]->as<DownBlockImpl>()->forward(h, temb_silu, context, skips, /*downsample=*/false);
    h = up_blocks[up_blocks->size() - 1]->as<UpBlockImpl>()->forward(deep, temb_silu, context, skips);
    return output(h);
}

}  // namespace multilora::models
