// The oneDNN route for linear layers and attention (models/matmul_kernels) against libtorch's BLAS route:
// two code paths that must agree to float32 rounding, on shapes large enough to take the oneDNN kernels.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "multilora/models/layers.h"
#include "multilora/models/matmul_kernels.h"

using namespace multilora::models;

namespace {
// Restores the global route after a test that switches it.
struct RouteGuard {
    bool saved = onednn_products_enabled();
    ~RouteGuard() { set_onednn_products_enabled(saved); }
};

double max_rel_diff(const at::Tensor& a, const at::Tensor& b) {
    return ((a - b).abs().max() / b.abs().max()).item<double>();
}
}  // namespace

TEST(MatmulKernels, OnednnRouteIsTakenForFloat32Cpu) {
    RouteGuard guard;
    set_onednn_products_enabled(true);
    EXPECT_TRUE(use_onednn_products(torch::zeros({4, 4})));
    EXPECT_FALSE(use_onednn_products(torch::zeros({4, 4}, torch::kBFloat16)));
    set_onednn_products_enabled(false);
    EXPECT_FALSE(use_onednn_products(torch::zeros({4, 4})));
}

TEST(MatmulKernels, DenseEqualsLinearForEveryInputRank) {
    RouteGuard guard;
    torch::manual_seed(1);
    at::Tensor w = torch::randn({96, 64}), b = torch::randn({96});
    for (const auto& shape : std::vector<std::vector<int64_t>>{{700, 64}, {2, 350, 64}, {2, 5, 70, 64}}) {
        at::Tensor x = torch::randn(shape);
        ASSERT_GT(x.numel(), 20480);  // above libtorch's size rule for oneDNN convolutions
        set_onednn_products_enabled(false);
        at::Tensor want = at::linear(x, w, b), want_nobias = at::linear(x, w);
        set_onednn_products_enabled(true);
        at::Tensor got = dense(x, w, b), got_nobias = dense(x, w, at::Tensor());
        ASSERT_EQ(got.sizes(), want.sizes());
        EXPECT_TRUE(got.is_contiguous());
        EXPECT_LT(max_rel_diff(got, want), 1e-5) << x.sizes();
        EXPECT_LT(max_rel_diff(got_nobias, want_nobias), 1e-5) << x.sizes();
    }
    // Small products stay on BLAS, where they are cheaper: identical bits.
    at::Tensor small = torch::randn({3, 64});
    EXPECT_TRUE(torch::equal(dense(small, w, b), at::linear(small, w, b)));
}

TEST(MatmulKernels, GroupedAttentionEqualsBatchedProducts) {
    RouteGuard guard;
    torch::manual_seed(2);
    const int64_t batch = 2, heads = 4, d = 16;
    for (auto [nq, nk] : std::vector<std::pair<int64_t, int64_t>>{{512, 512}, {300, 77}, {4, 4}}) {
        at::Tensor q = torch::randn({batch, nq, heads * d}), k = torch::randn({batch, nk, heads * d}),
                   v = torch::randn({batch, nk, heads * d});
        set_onednn_products_enabled(false);
        at::Tensor want = scaled_dot_product_attention(q, k, v, heads, 0.25);
        set_onednn_products_enabled(true);
        at::Tensor got = scaled_dot_product_attention(q, k, v, heads, 0.25);
        ASSERT_EQ(got.sizes(), want.sizes());
        EXPECT_LT(max_rel_diff(got, want), 1e-5) << nq << "x" << nk;
        // Query chunks of 7 rows (a ragged last chunk) give the same result as one chunk.
        const int64_t saved = attention_chunk_elements();
        set_attention_chunk_elements(7 * heads * nk);
        at::Tensor chunked = scaled_dot_product_attention(q, k, v, heads, 0.25);
        set_attention_chunk_elements(saved);
        EXPECT_LT(max_rel_diff(chunked, got), 1e-6) << nq << "x" << nk;
    }
}

// The in-place softmax inside grouped_attention: with v = identity rows, the output is the attention
// matrix itself, whose rows must sum to one and match softmax(scale·q·kᵀ) computed directly.
TEST(MatmulKernels, GroupedAttentionWeightsAreARowSoftmax) {
    torch::manual_seed(3);
    const int64_t heads = 2, d = 8, nq = 40, nk = 8;
    at::Tensor q = torch::randn({nq, heads * d}), k = torch::randn({nk, heads * d});
    // v for head h: the identity in that head's d=8 columns, so out[:, h*d + j] = weight of key j.
    at::Tensor v = torch::eye(nk).repeat({1, heads});
    at::Tensor out = torch::empty({nq, heads * d});
    grouped_attention(q, k, v, heads, 0.3, int64_t{1} << 20, out);
    for (int64_t h = 0; h < heads; ++h) {
        at::Tensor weights = out.narrow(1, h * d, d);
        at::Tensor want = (q.narrow(1, h * d, d).matmul(k.narrow(1, h * d, d).t()) * 0.3).softmax(-1);
        EXPECT_LT(max_rel_diff(weights, want), 1e-5);
        EXPECT_TRUE(torch::allclose(weights.sum(-1), torch::ones({nq}), 1e-5, 1e-5));
    }
}
