#include "multilora/models/matmul_kernels.h"

#include <torch/torch.h>

#include <algorithm>

namespace multilora::models {

namespace {
bool g_onednn_enabled = true;

// libtorch picks oneDNN for a batch-1, 1x1 convolution only above this many input elements (its
// use_mkldnn rule); below it the convolution falls back to a slower im2col path, so small products stay
// with BLAS.
constexpr int64_t kOnednnMinInputElements = 20480;

// [rows, cols] row-major -> [1, cols, rows, 1] in channels-last layout: the same memory, no copy.
at::Tensor as_channels_last_image(const at::Tensor& m) {
    return m.view({1, m.size(0), 1, m.size(1)}).permute({0, 3, 1, 2});
}

// The inverse: a channels-last [1, cols, rows, 1] result viewed as [rows, cols].
at::Tensor from_channels_last_image(const at::Tensor& img) {
    return img.permute({0, 2, 3, 1}).reshape({img.size(2), img.size(1)});
}
}  // namespace

void set_onednn_products_enabled(bool enabled) { g_onednn_enabled = enabled; }
bool onednn_products_enabled() { return g_onednn_enabled; }

bool use_onednn_products(const at::Tensor& x) {
    return g_onednn_enabled && x.device().is_cpu() && x.scalar_type() == at::kFloat &&
           at::globalContext().userEnabledMkldnn() && at::hasMKLDNN();
}

bool use_grouped_attention(const at::Tensor& q) {
    static const bool bf16_units = __builtin_cpu_supports("avx512bf16");
    if (q.scalar_type() == at::kBFloat16)
        return bf16_units && g_onednn_enabled && q.device().is_cpu() && at::globalContext().userEnabledMkldnn() &&
               at::hasMKLDNN();
    return use_onednn_products(q);
}

at::Tensor dense(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
    if (!use_onednn_products(x) || x.dim() < 2 || x.numel() <= kOnednnMinInputElements ||
        weight.scalar_type() != at::kFloat || !weight.is_contiguous())
        return at::linear(x, weight, bias);
    const int64_t in = weight.size(1), out = weight.size(0);
    at::Tensor rows = x.reshape({-1, in});
    at::Tensor y = at::conv2d(as_channels_last_image(rows), weight.view({out, in, 1, 1}), bias);
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = out;
    return from_channels_last_image(y).view(shape);
}

void grouped_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads, double scale,
                       int64_t max_score_elements, const at::Tensor& out) {
    RECORD_FUNCTION("multilora::grouped_attention", std::vector<c10::IValue>({q, k, v}));  // for bench --profile
    const int64_t nq = q.size(0), nk = k.size(0), head_dim = q.size(1) / heads;
    // Group h of the first convolution holds head h's keys as [nk, d] filters; of the second, head h's
    // values transposed to [d, nk]. Outputs then come out as [rows, heads, nk] and [rows, heads*d].
    at::Tensor key_filters = k.reshape({nk, heads, head_dim}).transpose(0, 1).reshape({heads * nk, head_dim, 1, 1});
    at::Tensor value_filters =
        v.reshape({nk, heads, head_dim}).permute({1, 2, 0}).reshape({heads * head_dim, nk, 1, 1});
    const int64_t rows_per_chunk = std::max<int64_t>(1, max_score_elements / std::max<int64_t>(1, heads * nk));
    at::Tensor q_rows = q.contiguous();
    const at::Tensor no_bias;
    const std::vector<int64_t> ones{1, 1}, zeros{0, 0};
    for (int64_t start = 0; start < nq; start += rows_per_chunk) {
        const int64_t len = std::min(rows_per_chunk, nq - start);
        at::Tensor scores = at::conv2d(as_channels_last_image(q_rows.narrow(0, start, len)), key_filters, no_bias,
                                       ones, zeros, ones, heads);
        at::Tensor flat = from_channels_last_image(scores).view({len, heads, nk});
        flat.mul_(scale);
        at::softmax_out(flat, flat, -1);  // in place: each row is read before it is written
        at::Tensor mixed = at::conv2d(as_channels_last_image(flat.view({len, heads * nk})), value_filters, no_bias,
                                      ones, zeros, ones, heads);
        out.narrow(0, start, len).copy_(from_channels_last_image(mixed));
    }
}

}  // namespace multilora::models
