// LoRA composition on the tiny model: identities between code paths, the Switch schedule, adapter state.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include "multilora/io/safetensors.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/lora/layer_adapters.h"
#include "multilora/models/matmul_kernels.h"
#include "multilora/pipeline/generation.h"
#include "multilora/pipeline/model_loader.h"
#include "multilora/bench/tiny_model.h"
#include "multilora/compose/registry.h"
#include "multilora/compose/switch.h"
#include "compose_test_support.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace multilora;

using namespace multilora::compose_test;

// Hand-worked tables for k = 3, τ = 2.
TEST(SwitchSchedule, PaperAndReferenceTables) {
    const std::vector<int> paper{0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2};
    const std::vector<int> reference{0, 0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2};
    for (int t = 0; t < 12; ++t) {
        EXPECT_EQ(compose::switch_active_lora(t, 3, 2, compose::SwitchSchedule::Paper), paper[t]) << t;
        EXPECT_EQ(compose::switch_active_lora(t, 3, 2, compose::SwitchSchedule::Reference), reference[t]) << t;
    }
}

TEST(LoraSpec, ParsesOptionalWeight) {
    auto a = lora::parse_lora_spec("dir/style.safetensors:0.7");
    EXPECT_EQ(a.path, "dir/style.safetensors");
    EXPECT_DOUBLE_EQ(a.weight, 0.7);
    auto b = lora::parse_lora_spec("dir/style.safetensors");
    EXPECT_EQ(b.path, "dir/style.safetensors");
    EXPECT_DOUBLE_EQ(b.weight, 1.0);
    auto c = lora::parse_lora_spec("C:/x:y.safetensors");
    EXPECT_EQ(c.path, "C:/x:y.safetensors");
    EXPECT_DOUBLE_EQ(lora::parse_lora_spec("a:-1.5e-1").weight, -0.15);
}

// A layer's fused weight is W + Σ s·B·A, and both per-row paths give the fused layer's output.
TEST(LayerAdapters, FusedAndLowRankAgreeWithFormula) {
    torch::manual_seed(3);
    at::Tensor w = torch::randn({6, 5});
    lora::LayerAdapters ad(w, false);
    at::Tensor a0 = torch::randn({2, 5}), b0 = torch::randn({6, 2}), a1 = torch::randn({3, 5}), b1 = torch::randn({6, 3});
    ad.add_delta({0, a0, b0, 0.5});
    ad.add_delta({1, a1, b1, -2.0});
    at::Tensor expect = w + 0.5 * b0.mm(a0) - 2.0 * b1.mm(a1);
    EXPECT_TRUE(torch::allclose(ad.fused_weight({0, 1}), expect, 1e-5, 1e-5));
    at::Tensor x = torch::randn({4, 7, 5}), bias = torch::randn({6});
    ad.set_row_slots({{0}, {0}, {1}, {}});
    for (auto policy : {lora::RowPolicy::LowRank, lora::RowPolicy::Fused, lora::RowPolicy::Auto}) {
        lora::set_row_policy(policy);
        at::Tensor y = ad.linear(x, bias);
        EXPECT_TRUE(torch::allclose(y[0], at::linear(x[0], w + 0.5 * b0.mm(a0), bias), 1e-5, 1e-5));
        EXPECT_TRUE(torch::allclose(y[2], at::linear(x[2], w - 2.0 * b1.mm(a1), bias), 1e-5, 1e-5));
        EXPECT_TRUE(torch::allclose(y[3], at::linear(x[3], w, bias), 1e-6, 1e-6));
    }
    lora::set_row_policy(lora::RowPolicy::Auto);
    // Whole-batch mode decides at the first forward; both decisions give the fused layer's output:
    // amortized over many forwards it fuses, over one forward with 4 rows the low-rank terms are cheaper.
    for (int64_t amortize : {int64_t{1000}, int64_t{1}}) {
        ad.set_fused({0, 1}, amortize);
        at::Tensor few = torch::randn({4, 5});
        EXPECT_TRUE(torch::allclose(ad.linear(few, bias), at::linear(few, expect, bias), 1e-5, 1e-5)) << amortize;
    }
    // Conv: a 3x3 LoCon down followed by a 1x1 up equals the fused 3x3 kernel.
    at::Tensor cw = torch::randn({4, 3, 3, 3});
    lora::LayerAdapters conv(cw, true, 1, 1);
    at::Tensor cd = torch::randn({2, 3, 3, 3}), cu = torch::randn({4, 2, 1, 1});
    conv.add_delta({0, cd, cu, 0.25});
    at::Tensor xi = torch::randn({2, 3, 5, 5});
    conv.set_row_slots({{0}, {0}});
    lora::set_row_policy(lora::RowPolicy::LowRank);
    at::Tensor low = conv.conv(xi, {});
    lora::set_row_policy(lora::RowPolicy::Auto);
    at::Tensor fused = at::conv2d(xi, conv.fused_weight({0}), {}, 1, 1);
    EXPECT_TRUE(torch::allclose(low, fused, 1e-4, 1e-4));
}

namespace {

// A 64x64 projection with two rank-8 deltas (slot 0 at gain 0.5, slot 1 at 0.25), drawn from `seed`.
std::unique_ptr<lora::LayerAdapters> two_delta_projection(uint64_t seed) {
    torch::manual_seed(seed);
    auto ad = std::make_unique<lora::LayerAdapters>(torch::randn({64, 64}), false);
    ad->add_delta({0, torch::randn({8, 64}), torch::randn({64, 8}), 0.5});
    ad->add_delta({1, torch::randn({8, 64}), torch::randn({64, 8}), 0.25});
    return ad;
}

}  // namespace

// An image map's rows (AdapterSet::map_images: row r is image r % n's) fuse as their image would alone: on
// one image's rows (2 batch rows of 4 tokens), amortized over the activation's forwards. Costs worked by hand
// for a 64x64 projection and rank-8 deltas: low-rank 8 rows · 8 · (64 + 64) = 8192 multiply-adds a forward,
// fusing 8 · 64 · 64 = 32768 once: fused over 8 forwards (4096 each), low-rank over 2 (16384). Without the map,
// a single row among 2 images' counts 2 rows (2048) against a fusing for one forward: low-rank.
TEST(LayerAdapters, ImageMapRowsFuseAsTheirImageAloneWould) {
    auto projection = two_delta_projection(5);
    lora::LayerAdapters& ad = *projection;
    const at::Tensor x = torch::randn({4, 4, 64}), bias = torch::randn({64});
    const std::vector<std::vector<int>> rows{{0}, {1}, {0}, {1}};
    const auto fused_row = [&](int64_t r, int slot) {
        return models::dense(x.narrow(0, r, 1).reshape({-1, 64}), ad.fused_weight({slot}), bias).view({1, 4, 64});
    };
    const lora::ImagesPerForwardScope two_images(2);
    const auto is_fused = [&](const at::Tensor& y) {
        EXPECT_TRUE(torch::allclose(y.narrow(0, 0, 1), fused_row(0, 0), 1e-4, 1e-4));
        EXPECT_TRUE(torch::allclose(y.narrow(0, 3, 1), fused_row(3, 1), 1e-4, 1e-4));
        return torch::equal(y.narrow(0, 0, 1), fused_row(0, 0)) && torch::equal(y.narrow(0, 3, 1), fused_row(3, 1));
    };
    ad.set_row_slots(rows, {8, 2, true});
    EXPECT_TRUE(is_fused(ad.linear(x, bias)));
    EXPECT_EQ(ad.cached_group_weights(), 2u);
    ad.set_row_slots(rows, {2, 2, true});
    EXPECT_FALSE(is_fused(ad.linear(x, bias)));
    ad.set_row_slots(rows);
    EXPECT_FALSE(is_fused(ad.linear(x, bias)));
    // A new map activation keeps only the weights its groups select; a plain per-row one keeps them all.
    ad.set_row_slots(rows, {8, 2, true});
    ad.linear(x, bias);
    ad.set_row_slots({{0}, {0}, {0}, {0}});
    EXPECT_EQ(ad.cached_group_weights(), 2u);
    ad.set_row_slots({{0}, {0}, {0}, {0}}, {8, 2, true});
    EXPECT_EQ(ad.cached_group_weights(), 1u);
}

// Composite's per-LoRA blocks under an image map (two images, classifier-free guidance): image 0's block of
// LoRA 0 is rows 0 and 2, so each group is one row. Alone the block is one group of 2 rows. With 32 tokens a
// row, costs worked by hand for the 64x64 projection and rank-8 delta over one forward: the image's 2 rows
// cost 64 · 8 · 128 = 65536 multiply-adds low-rank against 32768 to fuse: fused, as alone. Counting the group's
// single row among 2 images (16 rows: 16384) would keep it low-rank.
TEST(LayerAdapters, ImageMapCompositeBlocksFuseAsTheirImageAloneWould) {
    auto projection = two_delta_projection(6);
    lora::LayerAdapters& ad = *projection;
    const at::Tensor x = torch::randn({4, 32, 64}), bias = torch::randn({64});
    const std::vector<std::vector<int>> rows{{0}, {1}, {0}, {1}};  // image 0's LoRA is slot 0, image 1's slot 1
    const at::Tensor fused0 = models::dense(x.narrow(0, 0, 1).reshape({-1, 64}), ad.fused_weight({0}), bias);
    const lora::ImagesPerForwardScope two_images(2);
    ad.set_row_slots(rows, {1, 2, false});
    EXPECT_TRUE(torch::equal(ad.linear(x, bias).narrow(0, 0, 1).reshape({-1, 64}), fused0));
    ad.set_row_slots(rows);
    const at::Tensor counted = ad.linear(x, bias).narrow(0, 0, 1).reshape({-1, 64});
    EXPECT_TRUE(torch::allclose(counted, fused0, 1e-4, 1e-4));
    EXPECT_FALSE(torch::equal(counted, fused0)) << "the counted plan should have stayed low-rank";
}

TEST(Composition, OneLoraMergeEqualsSwitchEqualsComposite) {
    auto model = load_tiny();
    auto ad = attach(model, specs({0}));
    at::Tensor merge = run(model, ad.get(), "merge");
    at::Tensor sw = run(model, ad.get(), "switch", 1);
    at::Tensor comp = run(model, ad.get(), "composite");
    // Switch decides per layer whether fusing pays over one interval; where it does not, base + B(Ax) rounds
    // differently from the fused weight in the last bits.
    EXPECT_LT(rel_err(sw, merge), 1e-5);
    EXPECT_LT(rel_err(comp, merge), 1e-5);
    at::Tensor none = run(model, nullptr, "none");
    EXPECT_GT(rel_err(merge, none), 1e-3);  // the LoRA does change the result
}

TEST(Composition, FusedPathEqualsUnfusedPath) {
    auto model = load_tiny();
    auto ad = attach(model, specs({0, 1, 3}));
    lora::set_row_policy(lora::RowPolicy::Fused);
    at::Tensor fused = run(model, ad.get(), "composite");
    lora::set_row_policy(lora::RowPolicy::LowRank);
    at::Tensor low = run(model, ad.get(), "composite");
    lora::set_row_policy(lora::RowPolicy::Auto);
    EXPECT_LT(rel_err(low, fused), 1e-5);
}

// The batched Composite step equals k separate UNet passes, each with one LoRA fused, combined here.
TEST(Composition, BatchedCompositeEqualsSeparatePasses) {
    auto model = load_tiny();
    auto ad = attach(model, specs({0, 1, 2}));
    at::Tensor batched = run(model, ad.get(), "composite");
    auto request = small_request();
    ManualSteps manual(make_method(model, ad.get(), "composite"), [&](const compose::StepContext& c) {
            at::Tensor su, sc;
            for (int i = 0; i < 3; ++i) {
                ad->activate_unet({i});
                at::Tensor eps = model.unet->forward(at::cat({c.scaled_latents, c.scaled_latents}), c.timestep,
                                                     at::cat({c.prompts.uncond, c.prompts.cond}));
                su = su.defined() ? su + eps[0] : eps[0].clone();
                sc = sc.defined() ? sc + eps[1] : eps[1].clone();
            }
            ad->activate_unet({});
            su = su / 3;
            sc = sc / 3;
            return (su + c.guidance_scale * (sc - su)).unsqueeze(0);
    });
    auto result = pipeline::generate(model, request, &manual);
    EXPECT_LT(rel_err(batched, result.latents), 1e-5);
    // Splitting the batch into chunks of one LoRA gives the same result.
    auto chunked = make_method(model, ad.get(), "composite", {"max_batch_rows=2"});
    auto r2 = pipeline::generate(model, request, chunked.get());
    EXPECT_LT(rel_err(r2.latents, batched), 1e-5);
}

TEST(Composition, ZeroWeightOrZeroUpEqualsNoLora) {
    auto model = load_tiny();
    at::Tensor none = run(model, nullptr, "none");
    {
        auto ad = attach(model, specs({0, 1}, 0.0));
        EXPECT_TRUE(torch::equal(run(model, ad.get(), "merge"), none));
        EXPECT_TRUE(torch::equal(run(model, ad.get(), "switch", 1), none));
        // Composite runs a bigger batch, whose kernels may round differently in the last bits.
        EXPECT_LT(rel_err(run(model, ad.get(), "composite"), none), 1e-5);
    }
    // A copy of a LoRA file with every up weight zeroed.
    auto src = io::SafetensorsFile::open(world().paths.loras[1]);
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& n : src->names()) {
        at::Tensor t = src->tensor(n).clone();
        if (n.find("lora_up") != std::string::npos) t.zero_();
        tensors.emplace_back(n, t);
    }
    std::string zero = (world().dir / "zero-up.safetensors").string();
    io::save_safetensors(zero, tensors);
    auto ad = attach(model, {{zero, 1.0}});
    EXPECT_TRUE(torch::equal(run(model, ad.get(), "merge"), none));
}

TEST(Composition, AdapterStateLeavesBaseWeightsBitIdentical) {
    auto model = load_tiny();
    std::vector<at::Tensor> before;
    for (const auto& p : model.unet->parameters()) before.push_back(p.clone());
    for (const auto& p : model.text_encoder->parameters()) before.push_back(p.clone());
    at::Tensor none_before = run(model, nullptr, "none");
    {
        auto ad = attach(model, specs({0, 1, 2, 3}));
        run(model, ad.get(), "merge");
        run(model, ad.get(), "composite");
        ad->activate_unet({2});  // enabled, then disabled by the next image's set-up
        run(model, ad.get(), "switch", 1);
        at::Tensor again = run(model, ad.get(), "none");
        EXPECT_TRUE(torch::equal(again, none_before));
    }
    size_t i = 0;
    for (const auto& p : model.unet->parameters()) EXPECT_TRUE(torch::equal(p, before[i++]));
    for (const auto& p : model.text_encoder->parameters()) EXPECT_TRUE(torch::equal(p, before[i++]));
    EXPECT_TRUE(torch::equal(run(model, nullptr, "none"), none_before));
}

TEST(Composition, SwitchRecordsTheActiveLoraOfEveryStep) {
    auto model = load_tiny();
    auto ad = attach(model, specs({0, 1, 2}));
    auto composer = make_method(model, ad.get(), "switch", {"tau=2", "schedule=reference"});
    auto request = small_request();
    request.steps = 7;
    pipeline::generate(model, request, composer.get());
    EXPECT_EQ(composer->record()["active_lora_per_step"], nlohmann::json({0, 0, 0, 1, 1, 2, 2}));
    EXPECT_EQ(composer->record()["switch_schedule"], "reference");
}

TEST(Composition, LoraSummariesDescribeTheFiles) {
    auto model = load_tiny();
    auto ad = attach(model, specs({0, 1, 2, 3}));
    const auto& s = ad->summaries();
    ASSERT_EQ(s.size(), 4u);
    EXPECT_EQ(s[0].format, "kohya");
    EXPECT_EQ(s[0].ranks, std::vector<int64_t>{4});
    EXPECT_EQ(s[0].alphas, std::vector<double>{2.0});
    EXPECT_EQ(s[1].by_kind.at("unet/conv"), 1);  // the 3x3 LoCon
    EXPECT_EQ(s[2].alphas.size(), 0u);
    EXPECT_EQ(s[2].matched_text, 0);
    EXPECT_EQ(s[3].format, "peft");
    EXPECT_GT(s[3].matched_unet, 0);
    EXPECT_GT(s[3].matched_text, 0);
    // tiny-character, counted from the tiny config: 11 transformer blocks (2+2 down, 1 mid, 3+3 up), each
    // with 8 attention projections, 2 ff layers and its Transformer2D's proj_in/proj_out: 11 × 12 = 132;
    // text encoder: 2 layers × (4 attention projections + fc1 + fc2) = 12.
    EXPECT_EQ(s[0].matched_unet, 132);
    EXPECT_EQ(s[0].matched_text, 12);
}
