#include "multilora/models/layers.h"

#include <torch/torch.h>

#include <cmath>

#include "multilora/models/flop_tally.h"
#include "multilora/models/fused_attention.h"
#include "multilora/models/matmul_kernels.h"

namespace multilora::models {

bool records_grad(const at::Tensor& t) { return t.requires_grad() && at::GradMode::is_enabled(); }

// ---------------------------------------------------------------- Linear / Conv2d

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool has_bias) {
    weight = register_parameter("weight", torch::empty({out_features, in_features}), false);
    if (has_bias) bias = register_parameter("bias", torch::zeros({out_features}), false);
}

at::Tensor LinearImpl::forward(const at::Tensor& x) {
    if (flops::enabled()) flops::add(2.0 * static_cast<double>(x.numel()) * static_cast<double>(weight.size(0)));
    if (adapter && adapter->active()) return adapter->forward(x, bias);
    return dense(x, weight, bias);
}

Conv2dImpl::Conv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride_, int64_t padding_)
    : stride(stride_), padding(padding_) {
    weight = register_parameter("weight", torch::empty({out_channels, in_channels, kernel, kernel}), false);
    bias = register_parameter("bias", torch::zeros({out_channels}), false);
}

at::Tensor Conv2dImpl::forward(const at::Tensor& x) {
    at::Tensor y = adapter && adapter->active() ? adapter->forward(x, bias)
                                                : at::conv2d(x, weight, bias, {stride, stride}, {padding, padding});
    if (flops::enabled())
        flops::add(2.0 * static_cast<double>(y.numel()) * static_cast<double>(weight.numel() / weight.size(0)));
    return y;
}

// ---------------------------------------------------------------- norms

GroupNormImpl::GroupNormImpl(int64_t groups_, int64_t channels, double eps_) : groups(groups_), eps(eps_) {
    weight = register_parameter("weight", torch::ones({channels}), false);
    bias = register_parameter("bias", torch::zeros({channels}), false);
}

namespace {
// libtorch 1.13's CPU group and layer norms in bfloat16/half are 5-7x slower than in float32 and round
// their statistics: reduced-precision inputs are normalised in float32 and rounded once.
bool normalise_in_float(const at::Tensor& x) {
    return x.device().is_cpu() && (x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf);
}
}  // namespace

at::Tensor GroupNormImpl::forward(const at::Tensor& x) {
    if (normalise_in_float(x))
        return at::group_norm(x.to(at::kFloat), groups, weight.to(at::kFloat), bias.to(at::kFloat), eps).to(x.scalar_type());
    return at::group_norm(x, groups, weight, bias, eps);
}

LayerNormImpl::LayerNormImpl(int64_t dim_, double eps_) : dim(dim_), eps(eps_) {
    weight = register_parameter("weight", torch::ones({dim_}), false);
    bias = register_parameter("bias", torch::zeros({dim_}), false);
}

at::Tensor LayerNormImpl::forward(const at::Tensor& x) {
    if (normalise_in_float(x))
        return at::layer_norm(x.to(at::kFloat), {dim}, weight.to(at::kFloat), bias.to(at::kFloat), eps).to(x.scalar_type());
    return at::layer_norm(x, {dim}, weight, bias, eps);
}

// ---------------------------------------------------------------- attention

namespace {
int64_t g_attention_chunk_elements = int64_t{1} << 25;  // 32 Mi scores = 128 MiB in fp32
}

void set_attention_chunk_elements(int64_t n) { g_attention_chunk_elements = std::max<int64_t>(n, 1); }
int64_t attention_chunk_elements() { return g_attention_chunk_elements; }

at::Tensor scaled_dot_product_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads,
                                        double scale, const at::Tensor* additive_mask) {
    const int64_t batch = q.size(0), nq = q.size(1), nk = k.size(1), width = q.size(2);
    const int64_t head_dim = width / heads;
    if (flops::enabled()) flops::add(4.0 * static_cast<double>(batch * heads) * nq * nk * head_dim);
    // Training: autograd records plain ops only (no in-place softmax, no out= products, no chunks).
    const bool grad = records_grad(q) || records_grad(k) || records_grad(v);
    if (!additive_mask && !grad && use_fused_attention(q)) return fused_attention(q, k, v, heads, scale);
    if (!additive_mask && !grad && use_grouped_attention(q)) {
        at::Tensor out = at::empty({batch, nq, width}, q.options());
        for (int64_t b = 0; b < batch; ++b)
            grouped_attention(q.select(0, b), k.select(0, b), v.select(0, b), heads, scale,
                              g_attention_chunk_elements, out.select(0, b));
        return out;
    }
    // [B, N, H*D] -> [B*H, N, D]
    auto split = [&](const at::Tensor& t, int64_t n) {
        return t.view({batch, n, heads, head_dim}).transpose(1, 2).reshape({batch * heads, n, head_dim});
    };
    at::Tensor qh = split(q, nq), kh = split(k, nk), vh = split(v, nk);
    at::Tensor kt = kh.transpose(1, 2);
    // Scores are alpha * bmm(q, kᵀ): libtorch 1.13's baddbmm(beta=0) can return NaN on tiny problems.
    const int64_t rows_per_chunk = std::max<int64_t>(1, g_attention_chunk_elements / std::max<int64_t>(1, batch * heads * nk));
    at::Tensor out;
    if (grad || rows_per_chunk >= nq) {
        at::Tensor scores = at::bmm(qh, kt).mul_(scale);
        if (additive_mask) scores.add_(*additive_mask);
        out = at::bmm(scores.softmax(-1), vh);
    } else {
        out = at::empty({batch * heads, nq, head_dim}, q.options());
        for (int64_t start = 0; start < nq; start += rows_per_chunk) {
            int64_t len = std::min(rows_per_chunk, nq - start);
            at::Tensor scores = at::bmm(qh.narrow(1, start, len), kt).mul_(scale);
            if (additive_mask) scores.add_(additive_mask->narrow(-2, start, len));
            at::Tensor dst = out.narrow(1, start, len);
            at::bmm_out(dst, scores.softmax(-1), vh);
        }
    }
    return out.view({batch, heads, nq, head_dim}).transpose(1, 2).reshape({batch, nq, heads * head_dim});
}

AttentionImpl::AttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads_, int64_t head_dim, bool qkv_bias)
    : heads(heads_), scale(1.0 / std::sqrt(static_cast<double>(head_dim))) {
    int64_t inner = heads_ * head_dim;
    to_q = register_module("to_q", Linear(query_dim, inner, qkv_bias));
    to_k = register_module("to_k", Linear(context_dim, inner, qkv_bias));
    to_v = register_module("to_v", Linear(context_dim, inner, qkv_bias));
    to_out = register_module("to_out", torch::nn::ModuleList());
    to_out->push_back(Linear(inner, query_dim, true));
}

at::Tensor AttentionImpl::forward(const at::Tensor& x, const at::Tensor* context) {
    const at::Tensor& ctx = context ? *context : x;
    at::Tensor q = to_q->forward(x);
    at::Tensor k = to_k->forward(ctx);
    at::Tensor v = to_v->forward(ctx);
    at::Tensor h = scaled_dot_product_attention(q, k, v, heads, scale);
    return to_out[0]->as<LinearImpl>()->forward(h);
}

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t inner_dim) {
    // net.0 is diffusers' GEGLU module holding `proj`; net.1 a dropout; net.2 the output projection.
    auto geglu = std::make_shared<torch::nn::Module>();
    proj = geglu->register_module("proj", Linear(dim, inner_dim * 2, true));
    net = register_module("net", torch::nn::ModuleList());
    net->push_back(geglu);
    net->push_back(Identity());
    out = Linear(inner_dim, dim, true);
    net->push_back(out);
}

at::Tensor FeedForwardImpl::forward(const at::Tensor& x) {
    at::Tensor projected = proj->forward(x);
    auto halves = projected.chunk(2, -1);
    // gelu on a contiguous copy of the gate, then the product in place: elementwise kernels on the strided
    // halves ran 3x slower (measured 29 ms against 9 ms at 2x4096x1280).
    if (records_grad(projected)) return out->forward(at::gelu(halves[1]) * halves[0]);
    at::Tensor gated = halves[1].contiguous();
    at::gelu_(gated).mul_(halves[0]);
    return out->forward(gated);
}

BasicTransformerBlockImpl::BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim, int64_t context_dim) {
    norm1 = register_module("norm1", LayerNorm(dim, 1e-5));
    attn1 = register_module("attn1", Attention(dim, dim, heads, head_dim));
    norm2 = register_module("norm2", LayerNorm(dim, 1e-5));
    attn2 = register_module("attn2", Attention(dim, context_dim, heads, head_dim));
    norm3 = register_module("norm3", LayerNorm(dim, 1e-5));
    ff = register_module("ff", FeedForward(dim, dim * 4));
}

at::Tensor BasicTransformerBlockImpl::forward(const at::Tensor& x, const at::Tensor& context) {
    at::Tensor h = attn1->forward(norm1->forward(x)).add_(x);
    h = attn2->forward(norm2->forward(h), &context).add_(h);
    return ff->forward(norm3->forward(h)).add_(h);
}

Transformer2DImpl::Transformer2DImpl(int64_t channels, int64_t heads, int64_t context_dim, int64_t groups,
                                     int64_t depth, bool use_linear_projection)
    : linear_projection(use_linear_projection) {
    const int64_t head_dim = channels / heads;
    norm = register_module("norm", GroupNorm(groups, channels, 1e-6));
    if (linear_projection)
        proj_in = register_module("proj_in", Linear(channels, channels, true));
    else
        proj_in = register_module("proj_in", Conv2d(channels, channels, 1));
    transformer_blocks = register_module("transformer_blocks", torch::nn::ModuleList());
    for (int64_t i = 0; i < depth; ++i)
        transformer_blocks->push_back(BasicTransformerBlock(channels, heads, head_dim, context_dim));
    if (linear_projection)
        proj_out = register_module("proj_out", Linear(channels, channels, true));
    else
        proj_out = register_module("proj_out", Conv2d(channels, channels, 1));
}

at::Tensor Transformer2DImpl::forward(const at::Tensor& x, const at::Tensor& context) {
    const int64_t b = x.size(0), c = x.size(1), hgt = x.size(2), wid = x.size(3);
    at::Tensor h = norm->forward(x);
    if (linear_projection) {
        h = h.permute({0, 2, 3, 1}).reshape({b, hgt * wid, c});
        h = std::static_pointer_cast<LinearImpl>(proj_in)->forward(h);
    } else {
        h = std::static_pointer_cast<Conv2dImpl>(proj_in)->forward(h);
        h = h.permute({0, 2, 3, 1}).reshape({b, hgt * wid, c});
    }
    for (const auto& block : *transformer_blocks) h = block->as<BasicTransformerBlockImpl>()->forward(h, context);
    if (linear_projection) {
        h = std::static_pointer_cast<LinearImpl>(proj_out)->forward(h);
        h = h.reshape({b, hgt, wid, c}).permute({0, 3, 1, 2}).contiguous();
    } else {
        h = h.reshape({b, hgt, wid, c}).permute({0, 3, 1, 2}).contiguous();
        h = std::static_pointer_cast<Conv2dImpl>(proj_out)->forward(h);
    }
    return h.add_(x);
}

// ---------------------------------------------------------------- resnet, up/down sampling

ResnetBlock2DImpl::ResnetBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t temb_channels, int64_t groups,
                                     double eps) {
    norm1 = register_module("norm1", GroupNorm(groups, in_channels, eps));
    conv1 = register_module("conv1", Conv2d(in_channels, out_channels, 3, 1, 1));
    if (temb_channels > 0) time_emb_proj = register_module("time_emb_proj", Linear(temb_channels, out_channels, true));
    norm2 = register_module("norm2", GroupNorm(groups, out_channels, eps));
    conv2 = register_module("conv2", Conv2d(out_channels, out_channels, 3, 1, 1));
    if (in_channels != out_channels)
        conv_shortcut = register_module("conv_shortcut", Conv2d(in_channels, out_channels, 1));
}

at::Tensor ResnetBlock2DImpl::forward(const at::Tensor& x, const at::Tensor* temb_silu) {
    // silu_ in place on the fresh norm outputs: one full-resolution temporary less per resnet.
    at::Tensor h = norm1->forward(x);
    const bool grad = records_grad(h);  // silu's backward needs its input: keep it for autograd
    h = conv1->forward(grad ? at::silu(h) : at::silu_(h));
    if (temb_silu && !time_emb_proj.is_empty()) {
        at::Tensor t = time_emb_proj->forward(*temb_silu);
        h.add_(t.unsqueeze(-1).unsqueeze(-1));
    }
    h = norm2->forward(h);
    h = conv2->forward(grad || records_grad(h) ? at::silu(h) : at::silu_(h));
    at::Tensor shortcut = conv_shortcut.is_empty() ? x : conv_shortcut->forward(x);
    return h.add_(shortcut);
}

Downsample2DImpl::Downsample2DImpl(int64_t channels, int64_t padding_) : padding(padding_) {
    conv = register_module("conv", Conv2d(channels, channels, 3, 2, padding_));
}

at::Tensor Downsample2DImpl::forward(const at::Tensor& x) {
    if (padding == 0) return conv->forward(at::constant_pad_nd(x, {0, 1, 0, 1}, 0));
    return conv->forward(x);
}

Upsample2DImpl::Upsample2DImpl(int64_t channels) {
    conv = register_module("conv", Conv2d(channels, channels, 3, 1, 1));
}

at::Tensor Upsample2DImpl::forward(const at::Tensor& x, const std::vector<int64_t>* size) {
    at::Tensor in = x;
    // diffusers upsamples bf16 in float32 (nearest interpolation lacked bf16 kernels).
    const bool upcast = x.scalar_type() == at::kBFloat16;
    if (upcast) in = in.to(at::kFloat);
    at::Tensor up = size ? at::upsample_nearest2d(in, *size)
                         : at::upsample_nearest2d(in, {in.size(2) * 2, in.size(3) * 2});
    if (upcast) up = up.to(x.scalar_type());
    return conv->forward(up);
}

at::Tensor timestep_embedding(const at::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos, double freq_shift) {
    const int64_t half = dim / 2;
    at::Tensor exponent = at::arange(0, half, timesteps.options().dtype(at::kFloat)) * (-std::log(10000.0));
    exponent = exponent / (static_cast<double>(half) - freq_shift);
    at::Tensor emb = timesteps.to(at::kFloat).unsqueeze(1) * exponent.exp().unsqueeze(0);
    emb = at::cat({emb.sin(), emb.cos()}, -1);
    if (flip_sin_to_cos) emb = at::cat({emb.narrow(1, half, half), emb.narrow(1, 0, half)}, -1);
    if (dim % 2 == 1) emb = at::constant_pad_nd(emb, {0, 1, 0, 0}, 0);
    return emb;
}

}  // namespace multilora::models
