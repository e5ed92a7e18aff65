// Layer-level checks against formulas worked by hand, and identities between code paths.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <cmath>

#include "multilora/models/layers.h"
#include "multilora/text/clip_text_model.h"

using namespace multilora::models;

// diffusers' get_timestep_embedding(t, 8, flip_sin_to_cos=True, shift=0): frequencies
// exp(-ln(10000)·i/4) = 1, 0.1, 0.01, 0.001; output [cos(t·f), sin(t·f)].
TEST(TimestepEmbedding, MatchesFormula) {
    at::Tensor t = torch::tensor({0.0f, 500.0f, 999.0f});
    at::Tensor e = timestep_embedding(t, 8, true, 0.0);
    ASSERT_EQ(e.sizes(), at::IntArrayRef({3, 8}));
    const double f[4] = {1.0, 0.1, 0.01, 0.001};
    for (int r = 0; r < 3; ++r) {
        double tv = t[r].item<float>();
        for (int i = 0; i < 4; ++i) {
            EXPECT_NEAR(e[r][i].item<float>(), std::cos(tv * f[i]), 1e-4) << r << "," << i;
            EXPECT_NEAR(e[r][i + 4].item<float>(), std::sin(tv * f[i]), 1e-4) << r << "," << i;
        }
    }
    // Without the flip, sin comes first; with freq_shift 1 the divisor is half-1 = 3.
    at::Tensor g = timestep_embedding(torch::tensor({2.0f}), 8, false, 1.0);
    EXPECT_NEAR(g[0][1].item<float>(), std::sin(2.0 * std::exp(-std::log(10000.0) / 3)), 1e-6);
    EXPECT_NEAR(g[0][5].item<float>(), std::cos(2.0 * std::exp(-std::log(10000.0) / 3)), 1e-6);
}

// softmax(q kᵀ · scale) v per head, written out with loops in double precision.
TEST(Attention, MatchesExplicitFormulaAndChunkingIsExact) {
    torch::manual_seed(0);
    const int64_t b = 2, nq = 5, nk = 3, heads = 2, d = 4;
    at::Tensor q = torch::randn({b, nq, heads * d}), k = torch::randn({b, nk, heads * d}), v = torch::randn({b, nk, heads * d});
    const double scale = 0.5;
    at::Tensor out = scaled_dot_product_attention(q, k, v, heads, scale);
    ASSERT_EQ(out.sizes(), at::IntArrayRef({b, nq, heads * d}));
    auto qa = q.accessor<float, 3>(), ka = k.accessor<float, 3>(), va = v.accessor<float, 3>();
    auto oa = out.accessor<float, 3>();
    for (int64_t bi = 0; bi < b; ++bi)
        for (int64_t h = 0; h < heads; ++h)
            for (int64_t i = 0; i < nq; ++i) {
                std::vector<double> s(nk);
                double mx = -1e300, sum = 0;
                for (int64_t j = 0; j < nk; ++j) {
                    double dot = 0;
                    for (int64_t c = 0; c < d; ++c) dot += qa[bi][i][h * d + c] * ka[bi][j][h * d + c];
                    s[j] = dot * scale;
                    mx = std::max(mx, s[j]);
                }
                for (auto& x : s) sum += (x = std::exp(x - mx));
                for (int64_t c = 0; c < d; ++c) {
                    double acc = 0;
                    for (int64_t j = 0; j < nk; ++j) acc += s[j] / sum * va[bi][j][h * d + c];
                    EXPECT_NEAR(oa[bi][i][h * d + c], acc, 1e-5);
                }
            }
    // Chunking over queries (here one query row at a time) gives the same result.
    int64_t saved = attention_chunk_elements();
    set_attention_chunk_elements(b * heads * nk);
    at::Tensor chunked = scaled_dot_product_attention(q, k, v, heads, scale);
    set_attention_chunk_elements(saved);
    EXPECT_TRUE(torch::allclose(chunked, out, 1e-6, 1e-6));
}

// libtorch 1.13's baddbmm(beta=0) could return NaN on problems this small (a 2x2-token UNet level).
TEST(Attention, TinyProblemsStayFinite) {
    torch::manual_seed(1);
    for (int i = 0; i < 200; ++i) {
        at::Tensor q = torch::randn({2, 4, 8}), k = torch::randn({2, 4, 8}), v = torch::randn({2, 4, 8});
        ASSERT_TRUE(torch::isfinite(scaled_dot_product_attention(q, k, v, 8, 1.0)).all().item<bool>());
    }
}

// GEGLU: out = W2 · (a ⊙ gelu(g)) + b2 where [a; g] = W1 x + b1.
TEST(FeedForward, GegluByHand) {
    FeedForward ff(1, 1);
    torch::NoGradGuard ng;
    ff->proj->weight.copy_(torch::tensor({{2.0f}, {3.0f}}));
    ff->proj->bias.copy_(torch::tensor({0.5f, -1.0f}));
    ff->out->weight.copy_(torch::tensor({{4.0f}}));
    ff->out->bias.copy_(torch::tensor({0.25f}));
    const double x = 0.7, a = 2 * x + 0.5, g = 3 * x - 1.0;
    const double gelu = 0.5 * g * (1 + std::erf(g / std::sqrt(2.0)));
    at::Tensor y = ff->forward(torch::tensor({{{(float)x}}}));
    EXPECT_NEAR(y.item<float>(), 4 * a * gelu + 0.25, 1e-5);
    // The parameters carry diffusers' names.
    std::vector<std::string> names;
    for (const auto& p : ff->named_parameters()) names.push_back(p.key());
    EXPECT_EQ(names, (std::vector<std::string>{"net.0.proj.weight", "net.0.proj.bias", "net.2.weight", "net.2.bias"}));
}

// CLIP's causal self-attention: the first token only sees itself, so with a single head and identity
// projections its output equals its own value vector.
TEST(ClipText, CausalMaskFirstTokenSeesOnlyItself) {
    multilora::text::ClipAttention attn(4, 1);
    torch::NoGradGuard ng;
    for (auto* l : {&attn->q_proj, &attn->k_proj, &attn->v_proj, &attn->out_proj}) {
        (*l)->weight.copy_(torch::eye(4));
        (*l)->bias.zero_();
    }
    at::Tensor x = torch::randn({1, 3, 4});
    at::Tensor mask = torch::full({3, 3}, -INFINITY).triu(1);
    at::Tensor y = attn->forward(x, mask);
    EXPECT_TRUE(torch::allclose(y[0][0], x[0][0], 1e-6, 1e-6));
    // The last token sees all three: softmax-weighted mean of the values with scores x2·xj / 2.
    at::Tensor s = at::softmax(at::mv(x[0], x[0][2]) * 0.5, 0);
    EXPECT_TRUE(torch::allclose(y[0][2], at::mv(x[0].t(), s), 1e-5, 1e-5));
}

TEST(Upsample, NearestToExplicitSizeEqualsDoubling) {
    Upsample2D up(2);
    torch::NoGradGuard ng;
    at::Tensor x = torch::randn({1, 2, 3, 5});
    std::vector<int64_t> size{6, 10};
    EXPECT_TRUE(torch::equal(up->forward(x), up->forward(x, &size)));
}
