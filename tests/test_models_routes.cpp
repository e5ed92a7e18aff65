// Route equivalences, in the style of llama.cpp's tests/test-backend-ops.cpp: a table of cases, each
// running one of multilora's kernel routes and the plain libtorch op (or formula) it replaces on the same
// seeded inputs, checked with its own tolerance (max |a - b| / max |b|). Routes: the oneDNN products of
// models/matmul_kernels (linear layers, attention, query chunks, the in-place softmax), the GEGLU
// feed-forward, the LoRA adapters' fused and low-rank paths (lora/layer_adapters), bf16 products. A tolerance
// of 0 means bit-identical.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <cmath>
#include <functional>

#include "multilora/lora/layer_adapters.h"
#include "multilora/models/fused_attention.h"
#include "multilora/models/layers.h"
#include "multilora/models/matmul_kernels.h"
#include "multilora/pipeline/runtime.h"

using namespace multilora;
using models::set_onednn_products_enabled;

namespace {

struct RouteCase {
    std::string name;
    double tolerance;  // on max|route - reference| / max|reference|; 0: bit-identical
    // Both computed from the same seeded inputs; `route` runs with the oneDNN products on, `reference`
    // with them off (the BLAS path), unless a case says otherwise.
    std::function<at::Tensor()> route;
    std::function<at::Tensor()> reference;
};

// Restores the global routes after each case.
struct RouteGuard {
    bool onednn = models::onednn_products_enabled();
    lora::RowPolicy policy = lora::row_policy();
    int64_t chunk = models::attention_chunk_elements();
    bool fused = models::fused_attention_enabled();
    ~RouteGuard() {
        set_onednn_products_enabled(onednn);
        models::set_fused_attention_enabled(fused);
        lora::set_row_policy(policy);
        models::set_attention_chunk_elements(chunk);
    }
};

at::Tensor randn(std::vector<int64_t> shape, uint64_t seed) {
    at::Generator g = at::make_generator<at::CPUGeneratorImpl>(seed);
    return at::randn(shape, g, at::TensorOptions().dtype(at::kFloat));
}

// x·Wᵀ + b through the plain BLAS op.
at::Tensor linear_ref(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
    set_onednn_products_enabled(false);
    return at::linear(x, w, b);
}

// `fused`: the fused kernel (models/fused_attention.h) where the CPU has it; otherwise the grouped
// convolutions (`onednn`) or bmm.
at::Tensor attention(int64_t nq, int64_t nk, bool onednn, int64_t chunk_rows = 0, c10::ScalarType dtype = at::kFloat,
                     bool fused = false) {
    const int64_t heads = 4, d = 16;
    at::Tensor q = randn({2, nq, heads * d}, 11).to(dtype), k = randn({2, nk, heads * d}, 12).to(dtype),
               v = randn({2, nk, heads * d}, 13).to(dtype);
    set_onednn_products_enabled(onednn);
    models::set_fused_attention_enabled(fused);
    if (chunk_rows > 0) models::set_attention_chunk_elements(chunk_rows * heads * nk);
    return models::scaled_dot_product_attention(q, k, v, heads, 0.25);
}

// softmax(scale·q·kᵀ + mask)·v per head, written out with plain ops.
at::Tensor attention_formula(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads, double scale,
                             const at::Tensor& mask) {
    const int64_t b = q.size(0), nq = q.size(1), nk = k.size(1), d = q.size(2) / heads;
    auto split = [&](const at::Tensor& t, int64_t n) { return t.view({b, n, heads, d}).permute({0, 2, 1, 3}); };
    at::Tensor s = at::matmul(split(q, nq), split(k, nk).transpose(-1, -2)) * scale;
    if (mask.defined()) s = s + mask;
    return at::matmul(s.softmax(-1), split(v, nk)).permute({0, 2, 1, 3}).reshape({b, nq, heads * d});
}

// A Linear (or 1x1 / 3x3 Conv2d) with two LoRAs; `policy` picks the per-row path.
struct AdaptedLayer {
    at::Tensor w, b, x;
    std::shared_ptr<lora::LayerAdapters> adapters;
    bool conv;
    AdaptedLayer(bool is_conv, int64_t kernel) : conv(is_conv) {
        const int64_t in = 64, out = 48, r = 8;
        w = is_conv ? randn({out, in, kernel, kernel}, 21) / 8 : randn({out, in}, 21) / 8;
        b = randn({out}, 22);
        x = is_conv ? randn({4, in, 24, 24}, 23) : randn({4, 300, in}, 23);
        adapters = std::make_shared<lora::LayerAdapters>(w, is_conv, 1, kernel / 2);
        for (int slot = 0; slot < 2; ++slot) {
            at::Tensor down = is_conv ? randn({r, in, kernel, kernel}, 30 + slot) : randn({r, in}, 30 + slot);
            at::Tensor up = is_conv ? randn({out, r, 1, 1}, 40 + slot) : randn({out, r}, 40 + slot);
            adapters->add_delta({slot, down, up, 0.3 + 0.2 * slot});
        }
    }
    // The adapted layer's output for rows [0,1] with LoRA 0 and rows [2,3] with LoRA 1.
    at::Tensor rows(lora::RowPolicy policy) {
        lora::set_row_policy(policy);
        adapters->set_row_slots({{0}, {0}, {1}, {1}});
        at::Tensor y = adapters->forward(x, b);
        adapters->clear();
        return y;
    }
    at::Tensor fused_both() {
        adapters->set_fused({0, 1});
        at::Tensor y = adapters->forward(x, b);
        adapters->clear();
        return y;
    }
    // W + Σ s·B·A applied with the plain op.
    at::Tensor reference(const std::vector<std::vector<int>>& slots_per_half) {
        set_onednn_products_enabled(false);
        std::vector<at::Tensor> parts;
        for (size_t h = 0; h < slots_per_half.size(); ++h) {
            at::Tensor wd = w + adapters->delta_weight(slots_per_half[h]);
            at::Tensor xs = slots_per_half.size() == 1 ? x : x.narrow(0, 2 * h, 2);
            parts.push_back(conv ? at::conv2d(xs, wd, b, 1, w.size(2) / 2) : at::linear(xs, wd, b));
        }
        return at::cat(parts, 0);
    }
};

std::vector<RouteCase> cases() {
    std::vector<RouteCase> t;
    const at::Tensor w = randn({96, 64}, 1), bias = randn({96}, 2);
    for (auto shape : std::vector<std::vector<int64_t>>{{700, 64}, {2, 350, 64}, {2, 5, 70, 64}}) {
        const at::Tensor x = randn(shape, 3);
        const std::string dims = std::to_string(shape.size()) + "d";
        t.push_back({"dense onednn " + dims + " = at::linear", 1e-5, [=] { return models::dense(x, w, bias); },
                     [=] { return linear_ref(x, w, bias); }});
        t.push_back({"dense onednn " + dims + " no bias = at::linear", 1e-5,
                     [=] { return models::dense(x, w, at::Tensor()); }, [=] { return linear_ref(x, w, at::Tensor()); }});
    }
    const at::Tensor small = randn({3, 64}, 4);
    t.push_back({"dense below the oneDNN size rule = at::linear (same kernel)", 0,
                 [=] { return models::dense(small, w, bias); }, [=] { return linear_ref(small, w, bias); }});
    t.push_back({"dense bf16 = fp32 at::linear", 2e-2,
                 [=] { return models::dense(randn({700, 64}, 3).to(at::kBFloat16), w.to(at::kBFloat16), bias.to(at::kBFloat16)).to(at::kFloat); },
                 [=] { return linear_ref(randn({700, 64}, 3), w, bias); }});
    for (const auto& size : std::vector<std::pair<int64_t, int64_t>>{{512, 512}, {300, 77}, {4, 4}}) {
        const int64_t nq = size.first, nk = size.second;
        const std::string dims = std::to_string(nq) + "x" + std::to_string(nk);
        t.push_back({"attention grouped-conv " + dims + " = bmm route", 1e-5, [=] { return attention(nq, nk, true); },
                     [=] { return attention(nq, nk, false); }});
        t.push_back({"attention 7-row query chunks " + dims + " = one chunk", 1e-6,
                     [=] { return attention(nq, nk, true, 7); }, [=] { return attention(nq, nk, true); }});
        t.push_back({"attention " + dims + " = softmax formula", 1e-5, [=] { return attention(nq, nk, true); },
                     [=] {
                         const int64_t hd = 64;
                         return attention_formula(randn({2, nq, hd}, 11), randn({2, nk, hd}, 12), randn({2, nk, hd}, 13),
                                                  4, 0.25, at::Tensor());
                     }});
    }
    // The fused kernel: 12-row tasks (tails at 4, 25, 300 rows), 128-key blocks (tails at 77 and 300 keys;
    // 300 takes three blocks, so the online softmax rescales), head sizes padded to 16 (SD1.5's 40, 80, 160
    // need 3, 5 and 10 registers: value passes of 3, 4+1 and 4+4+2).
    for (const auto& size : std::vector<std::pair<int64_t, int64_t>>{{512, 512}, {300, 77}, {4, 4}, {25, 300}}) {
        const int64_t nq = size.first, nk = size.second;
        const std::string dims = std::to_string(nq) + "x" + std::to_string(nk);
        t.push_back({"attention fused " + dims + " = grouped-conv route", 1e-5,
                     [=] { return attention(nq, nk, true, 0, at::kFloat, true); }, [=] { return attention(nq, nk, true); }});
    }
    for (const auto& shape : std::vector<std::array<int64_t, 4>>{{8, 40, 100, 300}, {8, 80, 37, 77}, {8, 160, 13, 140}}) {
        const int64_t heads = shape[0], d = shape[1], nq = shape[2], nk = shape[3];
        const at::Tensor q = randn({2, nq, heads * d}, 51), k = randn({2, nk, heads * d}, 52), v = randn({2, nk, heads * d}, 53);
        const double scale = 1.0 / std::sqrt(static_cast<double>(d));
        const std::string dims = std::to_string(nq) + "x" + std::to_string(nk) + " d " + std::to_string(d);
        t.push_back({"attention fused " + dims + " = softmax formula", 1e-5,
                     [=] {
                         models::set_fused_attention_enabled(true);
                         return models::scaled_dot_product_attention(q, k, v, heads, scale);
                     },
                     [=] { return attention_formula(q, k, v, heads, scale, at::Tensor()); }});
    }
    // Peaked scores (inputs x4: the weights span e^±60): the running max moves between blocks and the
    // partial sums are rescaled by factors far from 1.
    t.push_back({"attention fused peaked scores 50x300 = softmax formula", 1e-5,
                 [] {
                     models::set_fused_attention_enabled(true);
                     return models::scaled_dot_product_attention(randn({1, 50, 64}, 61) * 4, randn({1, 300, 64}, 62) * 4,
                                                                 randn({1, 300, 64}, 63), 4, 0.25);
                 },
                 [] {
                     return attention_formula(randn({1, 50, 64}, 61) * 4, randn({1, 300, 64}, 62) * 4,
                                              randn({1, 300, 64}, 63), 4, 0.25, at::Tensor());
                 }});
    // bf16: the grouped route where the CPU has bf16 units (else bmm), against float32; one bf16 rounding of
    // the inputs and of the scores/probabilities is ~1e-2 relative.
    t.push_back({"attention bf16 512x512 = float32 route", 2e-2,
                 [] { return attention(512, 512, true, 0, at::kBFloat16).to(at::kFloat); },
                 [] { return attention(512, 512, true); }});
    t.push_back({"attention bf16 512x512 grouped = bf16 bmm route", 2e-2,
                 [] { return attention(512, 512, true, 0, at::kBFloat16).to(at::kFloat); },
                 [] { return attention(512, 512, false, 0, at::kBFloat16).to(at::kFloat); }});
    // Norms in bf16 are computed in float32 and rounded once: within half a bf16 ulp (2^-9) of the float32
    // norm of the same (bf16) input.
    t.push_back({"GroupNorm bf16 = float32 group_norm rounded once", 4e-3,
                 [] {
                     models::GroupNorm gn(4, 64, 1e-5);
                     gn->weight.copy_(randn({64}, 30));
                     gn->bias.copy_(randn({64}, 31));
                     gn->to(at::kBFloat16);
                     return gn->forward(randn({2, 64, 9, 7}, 32).to(at::kBFloat16)).to(at::kFloat);
                 },
                 [] {
                     const auto r = [](const at::Tensor& t) { return t.to(at::kBFloat16).to(at::kFloat); };
                     return at::group_norm(r(randn({2, 64, 9, 7}, 32)), 4, r(randn({64}, 30)), r(randn({64}, 31)), 1e-5);
                 }});
    t.push_back({"LayerNorm bf16 = float32 layer_norm rounded once", 4e-3,
                 [] {
                     models::LayerNorm ln(64, 1e-5);
                     ln->weight.copy_(randn({64}, 33));
                     ln->bias.copy_(randn({64}, 34));
                     ln->to(at::kBFloat16);
                     return ln->forward(randn({2, 50, 64}, 35).to(at::kBFloat16)).to(at::kFloat);
                 },
                 [] {
                     const auto r = [](const at::Tensor& t) { return t.to(at::kBFloat16).to(at::kFloat); };
                     return at::layer_norm(r(randn({2, 50, 64}, 35)), {64}, r(randn({64}, 33)), r(randn({64}, 34)), 1e-5);
                 }});
    t.push_back({"masked attention (CLIP's causal mask) = softmax formula", 1e-5,
                 [] {
                     at::Tensor q = randn({2, 77, 64}, 14), k = randn({2, 77, 64}, 15), v = randn({2, 77, 64}, 16);
                     at::Tensor mask = at::full({77, 77}, -INFINITY).triu(1);
                     return models::scaled_dot_product_attention(q, k, v, 4, 0.25, &mask);
                 },
                 [] {
                     at::Tensor mask = at::full({77, 77}, -INFINITY).triu(1);
                     return attention_formula(randn({2, 77, 64}, 14), randn({2, 77, 64}, 15), randn({2, 77, 64}, 16), 4,
                                              0.25, mask);
                 }});
    t.push_back({"GEGLU feed-forward = proj, chunk, a * gelu(g), out", 1e-5,
                 [] {
                     models::FeedForward ff(64, 128);
                     ff->proj->weight.copy_(randn({256, 64}, 17) / 8);
                     ff->proj->bias.copy_(randn({256}, 18));
                     ff->out->weight.copy_(randn({64, 128}, 19) / 8);
                     ff->out->bias.copy_(randn({64}, 20));
                     return ff->forward(randn({2, 300, 64}, 24));
                 },
                 [] {
                     set_onednn_products_enabled(false);
                     auto h = at::linear(randn({2, 300, 64}, 24), randn({256, 64}, 17) / 8, randn({256}, 18)).chunk(2, -1);
                     return at::linear(h[0] * at::gelu(h[1]), randn({64, 128}, 19) / 8, randn({64}, 20));
                 }});
    for (const auto& layer : std::vector<std::tuple<bool, int64_t, std::string>>{
             {false, 1, "Linear"}, {true, 1, "Conv2d 1x1"}, {true, 3, "Conv2d 3x3 LoCon"}}) {
        const bool conv = std::get<0>(layer);
        const int64_t kernel = std::get<1>(layer);
        const std::string label = std::get<2>(layer);
        t.push_back({"LoRA per-row low-rank " + label + " = W + sBA per row group", 1e-5,
                     [=] { return AdaptedLayer(conv, kernel).rows(lora::RowPolicy::LowRank); },
                     [=] { return AdaptedLayer(conv, kernel).reference({{0}, {1}}); }});
        t.push_back({"LoRA per-row fused " + label + " = W + sBA per row group", 1e-5,
                     [=] { return AdaptedLayer(conv, kernel).rows(lora::RowPolicy::Fused); },
                     [=] { return AdaptedLayer(conv, kernel).reference({{0}, {1}}); }});
        t.push_back({"LoRA whole-batch two LoRAs " + label + " = W + s0B0A0 + s1B1A1", 1e-5,
                     [=] { return AdaptedLayer(conv, kernel).fused_both(); },
                     [=] { return AdaptedLayer(conv, kernel).reference({{0, 1}}); }});
    }
    return t;
}

double rel_diff(const at::Tensor& a, const at::Tensor& b) {
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item<double>();
}

}  // namespace

TEST(Routes, EveryRouteMatchesItsReference) {
    c10::InferenceMode inference;
    at::set_num_threads(1);
    int checked = 0;
    for (const RouteCase& c : cases()) {
        RouteGuard guard;
        set_onednn_products_enabled(true);
        at::Tensor got = c.route();
        at::Tensor want = c.reference();
        ASSERT_EQ(got.sizes(), want.sizes()) << c.name;
        ASSERT_TRUE(torch::isfinite(got).all().item<bool>()) << c.name;
        if (c.tolerance == 0) {
            EXPECT_TRUE(torch::equal(got, want)) << c.name << ": not bit-identical, rel " << rel_diff(got, want);
        } else {
            const double d = rel_diff(got, want);
            EXPECT_LE(d, c.tolerance) << c.name;
        }
        ++checked;
    }
    EXPECT_EQ(checked, 40);
}

// The table can fail: a perturbed reference of one case is caught at its tolerance.
TEST(Routes, APerturbedReferenceIsCaught) {
    c10::InferenceMode inference;
    RouteGuard guard;
    const RouteCase c = cases().front();
    set_onednn_products_enabled(true);
    at::Tensor got = c.route();
    at::Tensor want = c.reference();
    want.view(-1)[17] += 1e-3 * want.abs().max().item<double>();
    EXPECT_GT(rel_diff(got, want), c.tolerance);
}

TEST(Routes, OnednnRouteIsTakenForFloat32Cpu) {
    RouteGuard guard;
    set_onednn_products_enabled(true);
    EXPECT_TRUE(models::use_onednn_products(torch::zeros({4, 4})));
    EXPECT_FALSE(models::use_onednn_products(torch::zeros({4, 4}, torch::kBFloat16)));
    // bf16 attention goes grouped exactly where the CPU has bf16 units.
    EXPECT_EQ(models::use_grouped_attention(torch::zeros({4, 4}, torch::kBFloat16)), __builtin_cpu_supports("avx512bf16") != 0);
    EXPECT_TRUE(models::use_grouped_attention(torch::zeros({4, 4})));
    set_onednn_products_enabled(false);
    EXPECT_FALSE(models::use_onednn_products(torch::zeros({4, 4})));
}

TEST(Routes, FusedAttentionIsTakenForFloat32CpuWithAvx512) {
    RouteGuard guard;
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
    models::set_fused_attention_enabled(true);
    EXPECT_EQ(models::use_fused_attention(torch::zeros({4, 4})), avx512);
    EXPECT_FALSE(models::use_fused_attention(torch::zeros({4, 4}, torch::kBFloat16)));
    EXPECT_FALSE(models::use_fused_attention(torch::zeros({4, 4}, torch::kDouble)));
    models::set_fused_attention_enabled(false);
    EXPECT_FALSE(models::use_fused_attention(torch::zeros({4, 4})));
}

// MULTILORA_BLAS_PRODUCTS=1 (diffusers' kernels operation for operation) switches the fused kernel off too.
TEST(Routes, BlasProductsVariableSwitchesOffOnednnAndFusedAttention) {
    RouteGuard guard;
    setenv("MULTILORA_BLAS_PRODUCTS", "1", 1);
    pipeline::configure_cpu_kernels();
    unsetenv("MULTILORA_BLAS_PRODUCTS");
    EXPECT_FALSE(models::onednn_products_enabled());
    EXPECT_FALSE(models::fused_attention_enabled());
}

// Tasks are whole rows of one head, so the fused kernel gives the same bits on any number of threads.
TEST(Routes, FusedAttentionIsTheSameOnOneAndTwoThreads) {
    c10::InferenceMode inference;
    RouteGuard guard;
    const int threads = at::get_num_threads();
    const at::Tensor q = randn({2, 200, 320}, 71), k = randn({2, 333, 320}, 72), v = randn({2, 333, 320}, 73);
    models::set_fused_attention_enabled(true);
    at::set_num_threads(1);
    const at::Tensor one = models::scaled_dot_product_attention(q, k, v, 8, 0.158);
    at::set_num_threads(2);
    const at::Tensor two = models::scaled_dot_product_attention(q, k, v, 8, 0.158);
    at::set_num_threads(threads);
    EXPECT_TRUE(torch::equal(one, two));
    // And differs from the grouped route by rounding only (so the comparison above is not vacuous).
    models::set_fused_attention_enabled(false);
    const double d = rel_diff(one, models::scaled_dot_product_attention(q, k, v, 8, 0.158));
    EXPECT_LT(d, 1e-5);
}

// The in-place softmax inside grouped_attention: with v = identity rows, the output is the attention
// matrix itself, whose rows must sum to one and match softmax(scale·q·kᵀ) computed directly.
TEST(Routes, GroupedAttentionWeightsAreARowSoftmax) {
    const int64_t heads = 2, d = 8, nq = 40, nk = 8;
    at::Tensor q = randn({nq, heads * d}, 5), k = randn({nk, heads * d}, 6);
    at::Tensor v = torch::eye(nk).repeat({1, heads});
    at::Tensor out = torch::empty({nq, heads * d});
    models::grouped_attention(q, k, v, heads, 0.3, int64_t{1} << 20, out);
    for (int64_t h = 0; h < heads; ++h) {
        at::Tensor weights = out.narrow(1, h * d, d);
        at::Tensor want = (q.narrow(1, h * d, d).matmul(k.narrow(1, h * d, d).t()) * 0.3).softmax(-1);
        EXPECT_LT(rel_diff(weights, want), 1e-5);
        EXPECT_TRUE(torch::allclose(weights.sum(-1), torch::ones({nq}), 1e-5, 1e-5));
    }
}
