// MultLFG (arXiv 2505.20525, no public code): the equations' identities and hand-worked examples.
//  - The Haar DWT of a 2×2 and a 4×4 block by hand (energy kept), perfect reconstruction, the subband
//    names, and the divisibility check.
//  - Subband scores, top-k proportional weights and the fusion on a 2×2 one-channel, two-LoRA example
//    worked by hand (levels = 1).
//  - On the tiny model: one step of the method equals the rule applied to each LoRA's prediction from its
//    own UNet call (reference=previous and lookahead); equal weights over every LoRA are Composite; the
//    first step (no reference yet) is Composite; two copies of a LoRA give that pair's Composite; the
//    manifest's weights; a level count the latent cannot take is refused.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include "compose_test_support.h"
#include "multilora/compose/multlfg.h"
#include "multilora/models/unet.h"
#include "multilora/util/error.h"

using namespace multilora;
using namespace multilora::compose_test;
namespace mf = multilora::compose::multlfg;

namespace {

at::Tensor grid(std::vector<float> v, int64_t h, int64_t w) { return torch::tensor(v).view({h, w}); }

double at2(const at::Tensor& t, int64_t i, int64_t j) { return t[i][j].item<double>(); }

}  // namespace

TEST(Multlfg, HaarOfA2x2BlockByHand) {
    // [[1, 2], [3, 4]]: LL = 10/2, LH = (1+2−3−4)/2, HL = (1−2+3−4)/2, HH = (1−2−3+4)/2.
    const auto b = mf::haar_dwt(grid({1, 2, 3, 4}, 2, 2), 1);
    ASSERT_EQ(b.size(), 4u);
    EXPECT_EQ(b[0].item<float>(), 5.0f);
    EXPECT_EQ(b[1].item<float>(), -2.0f);
    EXPECT_EQ(b[2].item<float>(), -1.0f);
    EXPECT_EQ(b[3].item<float>(), 0.0f);
    EXPECT_TRUE(torch::equal(mf::haar_idwt(b), grid({1, 2, 3, 4}, 2, 2)));
}

TEST(Multlfg, HaarOfA4x4TwoLevelsByHand) {
    // x = 0..15 row-major. Level 1: each 2×2 block has LH = −4, HL = −1, HH = 0 and LL = 5, 9, 21, 25.
    // Level 2 on [[5, 9], [21, 25]]: LL = 30, LH = −16, HL = −4, HH = 0.
    const at::Tensor x = torch::arange(16, torch::kFloat).view({4, 4});
    const auto b = mf::haar_dwt(x, 2);
    ASSERT_EQ(b.size(), 7u);
    EXPECT_EQ(b[0].item<float>(), 30.0f);
    EXPECT_EQ(b[1].item<float>(), -16.0f);
    EXPECT_EQ(b[2].item<float>(), -4.0f);
    EXPECT_EQ(b[3].item<float>(), 0.0f);
    EXPECT_TRUE(torch::equal(b[4], torch::full({2, 2}, -4.0f)));
    EXPECT_TRUE(torch::equal(b[5], torch::full({2, 2}, -1.0f)));
    EXPECT_TRUE(torch::equal(b[6], torch::zeros({2, 2})));
    // Orthonormal: the energy Σ k² = 1240 is kept.
    double energy = 0;
    for (const auto& t : b) energy += t.pow(2).sum().item<double>();
    EXPECT_EQ(energy, 1240.0);
    EXPECT_TRUE(torch::equal(mf::haar_idwt(b), x));  // integers: exact
    EXPECT_EQ(mf::subband_names(2), (std::vector<std::string>{"LL2", "LH2", "HL2", "HH2", "LH1", "HL1", "HH1"}));
}

TEST(Multlfg, PerfectReconstructionOnBatchedLatents) {
    torch::manual_seed(3);
    const at::Tensor x = torch::randn({3, 2, 4, 8, 16});  // [N, n, C, H, W]
    for (int levels = 1; levels <= 3; ++levels) {
        const auto b = mf::haar_dwt(x, levels);
        EXPECT_EQ(b.size(), static_cast<size_t>(3 * levels + 1));
        EXPECT_EQ(b[0].sizes(), (std::vector<int64_t>{3, 2, 4, 8 >> levels, 16 >> levels}));
        EXPECT_TRUE(torch::allclose(mf::haar_idwt(b), x, 0, 1e-5)) << levels;
    }
    EXPECT_THROW(mf::haar_dwt(torch::ones({6, 6}), 2), UsageError);  // 4 does not divide 6
    EXPECT_EQ(mf::haar_dwt(torch::ones({6, 6}), 1).size(), 4u);
}

// C = 1, 2×2, levels = 1, two LoRAs, one image. Changes since the reference: Δ₁ = 3 everywhere (LL 6, the
// rest 0), Δ₂ = [[2, 0], [2, 0]] (LL 2, HL 2). Predictions now: LoRA 1 [[1, 2], [3, 4]] (LL 5, LH −2,
// HL −1, HH 0), LoRA 2 [[0, 4], [8, 0]] (LL 6, LH −2, HL 2, HH −6).
TEST(Multlfg, HandWorkedSubbandWeighting) {
    const at::Tensor now =
        torch::stack({grid({1, 2, 3, 4}, 2, 2), grid({0, 4, 8, 0}, 2, 2)}).view({2, 1, 1, 2, 2});
    const at::Tensor delta =
        torch::stack({torch::full({2, 2}, 3.0f), grid({2, 0, 2, 0}, 2, 2)}).view({2, 1, 1, 2, 2});
    const at::Tensor ref = now - delta;
    const at::Tensor scores = mf::subband_scores(now, ref, 1);
    ASSERT_EQ(scores.sizes(), (std::vector<int64_t>{4, 2, 1}));
    EXPECT_TRUE(torch::allclose(scores.flatten(), torch::tensor({6.f, 2.f, 0.f, 0.f, 0.f, 2.f, 0.f, 0.f})));

    // k = 2, proportional: LL (6/8, 2/8); LH no change → equal; HL (0, 1); HH equal.
    at::Tensor w;
    const at::Tensor fused = mf::compose(now, ref, {1, 2, mf::Weighting::Proportional}, &w).view({2, 2});
    EXPECT_TRUE(torch::allclose(w.flatten(), torch::tensor({0.75f, 0.25f, 0.5f, 0.5f, 0.f, 1.f, 0.5f, 0.5f})));
    // Bands LL 0.75·5 + 0.25·6 = 5.25, LH −2, HL 2, HH −3, then the inverse: a = (5.25 − 2 + 2 − 3)/2, ...
    EXPECT_NEAR(at2(fused, 0, 0), 1.125, 1e-6);
    EXPECT_NEAR(at2(fused, 0, 1), 2.125, 1e-6);
    EXPECT_NEAR(at2(fused, 1, 0), 6.125, 1e-6);
    EXPECT_NEAR(at2(fused, 1, 1), 1.125, 1e-6);

    // k = 1: LL LoRA 1, LH a tie at 0 → LoRA 1 (order), HL LoRA 2, HH LoRA 1: bands 5, −2, 2, 0.
    const at::Tensor top1 = mf::compose(now, ref, {1, 1, mf::Weighting::Proportional}, &w).view({2, 2});
    EXPECT_TRUE(torch::equal(w.flatten(), torch::tensor({1.f, 0.f, 1.f, 0.f, 0.f, 1.f, 1.f, 0.f})));
    EXPECT_TRUE(torch::allclose(top1, grid({2.5, 0.5, 4.5, 2.5}, 2, 2)));

    // Equal weights, or no reference yet: the plain mean [[0.5, 3], [5.5, 2]].
    const at::Tensor mean = grid({0.5, 3, 5.5, 2}, 2, 2);
    EXPECT_TRUE(torch::allclose(mf::compose(now, ref, {1, 0, mf::Weighting::Uniform}).view({2, 2}), mean));
    const at::Tensor no_ref = mf::compose(now, at::Tensor(), {1, 1, mf::Weighting::Proportional});
    EXPECT_TRUE(torch::allclose(no_ref.view({2, 2}), mean));
}

namespace {

at::Tensor multlfg_run(pipeline::StableDiffusionModel& model, const std::vector<lora::LoraSpec>& s,
                       const std::vector<std::string>& args, nlohmann::json* record = nullptr,
                       const pipeline::GenerationRequest& request = small_request()) {
    MethodRun r = run_method(model, s, "multlfg", args, request);
    if (record) *record = r.record;
    return r.latents;
}

at::Tensor composite_run(pipeline::StableDiffusionModel& model, const std::vector<lora::LoraSpec>& s,
                         const pipeline::GenerationRequest& request = small_request()) {
    auto ad = attach(model, s);
    return run(model, ad.get(), "composite", 5, request);
}

// Each LoRA's guided prediction from its own UNet call: [N, n, C, H, W].
at::Tensor separate_predictions(pipeline::StableDiffusionModel& model, lora::AdapterSet& ad,
                                const compose::StepContext& ctx) {
    std::vector<at::Tensor> preds;
    for (int slot = 0; slot < ad.count(); ++slot) {
        ad.activate_unet({slot});
        preds.push_back(compose::cfg_predict(*model.unet, ctx));
    }
    ad.activate_unet({});
    return torch::stack(preds);
}

}  // namespace

// One step of the method against the rule applied to predictions computed one LoRA at a time.
TEST(Multlfg, StepsFollowTheRuleOnSeparateForwards) {
    auto model = load_tiny();
    auto ad = attach(model, specs({0, 1, 2}));
    torch::manual_seed(5);
    const at::Tensor z0 = torch::randn({1, 4, 8, 8}), z1 = torch::randn({1, 4, 8, 8});
    const at::Tensor t0 = at::scalar_tensor(int64_t{801}, at::kLong);
    const at::Tensor t1 = at::scalar_tensor(int64_t{601}, at::kLong);
    const compose::PromptText text{"a red fox in the snow", "blurry"};
    const mf::Settings defaults{2, 2, mf::Weighting::Proportional};

    auto previous = compose::registry().create(
        "multlfg", {pipeline::model_parts(model), ad.get(), {}, method_args("multlfg", {})});
    const text::EncodedPrompts prompts = previous->encode(text);
    const compose::StepContext c0{z0, t0, 0, prompts, 7.5, 2}, c1{z1, t1, 1, prompts, 7.5, 2};
    const at::Tensor p0 = separate_predictions(model, *ad, c0), p1 = separate_predictions(model, *ad, c1);
    EXPECT_LT(rel_err(previous->predict(c0), p0.mean(0)), 1e-5);  // step 0: no reference, the mean
    const at::Tensor expected1 = mf::compose(p1, p0, defaults);
    EXPECT_LT(rel_err(previous->predict(c1), expected1), 1e-4);
    EXPECT_GT(rel_err(expected1, p1.mean(0)), 1e-3);  // and the weights matter

    // lookahead, dt = 50: the reference is UNet(z_t, t − 50) with each LoRA.
    auto ahead = compose::registry().create(
        "multlfg",
        {pipeline::model_parts(model), ad.get(), {}, method_args("multlfg", {"reference=lookahead", "dt=50"})});
    ahead->encode(text);
    const at::Tensor t_ref = at::scalar_tensor(int64_t{751}, at::kLong);
    const compose::StepContext c_ref{z0, t_ref, 0, prompts, 7.5, 2};
    const at::Tensor expected_ahead = mf::compose(p0, separate_predictions(model, *ad, c_ref), defaults);
    EXPECT_LT(rel_err(ahead->predict(c0), expected_ahead), 1e-4);
    EXPECT_GT(rel_err(expected_ahead, p0.mean(0)), 1e-3);
}

TEST(Multlfg, EqualWeightsOverEveryLoraAreComposite) {
    auto model = load_tiny();
    const at::Tensor comp = composite_run(model, specs({0, 1, 2}));
    EXPECT_LT(rel_err(multlfg_run(model, specs({0, 1, 2}), {"weights=uniform", "top_k=0"}), comp), 1e-5);
    const at::Tensor ahead =
        multlfg_run(model, specs({0, 1, 2}), {"weights=uniform", "top_k=0", "reference=lookahead"});
    EXPECT_LT(rel_err(ahead, comp), 1e-5);
    pipeline::GenerationRequest no_cfg = small_request();
    no_cfg.guidance_scale = 1.0;
    EXPECT_LT(rel_err(multlfg_run(model, specs({0, 1}), {"weights=uniform", "top_k=0"}, nullptr, no_cfg),
                      composite_run(model, specs({0, 1}), no_cfg)),
              1e-5);
    // The defaults do change the result.
    EXPECT_GT(rel_err(multlfg_run(model, specs({0, 1, 2}), {}), comp), 1e-4);
    EXPECT_GT(rel_err(multlfg_run(model, specs({0, 1, 2}), {"reference=lookahead"}), comp), 1e-4);
}

TEST(Multlfg, TheFirstStepHasNoReferenceAndIsComposite) {
    auto model = load_tiny();
    pipeline::GenerationRequest one = small_request();
    one.steps = 1;
    const at::Tensor first = multlfg_run(model, specs({0, 1, 2}), {"top_k=1"}, nullptr, one);
    EXPECT_LT(rel_err(first, composite_run(model, specs({0, 1, 2}), one)), 1e-5);
}

TEST(Multlfg, IdenticalLorasGiveThatPairsComposite) {
    auto model = load_tiny();
    // Two copies have equal scores in every subband: 1/2 each (k = 2), or the first copy alone (k = 1).
    const std::vector<lora::LoraSpec> two{specs({1})[0], specs({1})[0]};
    const at::Tensor comp = composite_run(model, two);
    EXPECT_LT(rel_err(multlfg_run(model, two, {}), comp), 1e-5);
    EXPECT_LT(rel_err(multlfg_run(model, two, {"top_k=1", "levels=3"}), comp), 1e-5);
}

TEST(Multlfg, RecordsEachStepsSubbandWeights) {
    auto model = load_tiny();
    nlohmann::json record;
    multlfg_run(model, specs({0, 1, 2}), {"top_k=1"}, &record);
    EXPECT_EQ(record["method"], "multlfg");
    EXPECT_EQ(record["reference"], "previous");
    EXPECT_EQ(record["subbands"].size(), 7u);
    const auto& steps = record["subband_weights_per_step"];
    ASSERT_EQ(steps.size(), 4u);  // small_request: 4 steps
    for (const auto& band : steps[0])
        for (const auto& w : band) EXPECT_NEAR(w.get<double>(), 1.0 / 3.0, 1e-6);  // no reference yet
    for (size_t s = 1; s < steps.size(); ++s)
        for (const auto& band : steps[s]) {  // top_k = 1: one LoRA takes each subband
            int ones = 0;
            for (const auto& w : band) ones += w.get<double>() == 1.0;
            EXPECT_EQ(ones, 1) << s;
        }
}

TEST(Multlfg, RejectsLevelsTheLatentCannotTake) {
    auto model = load_tiny();
    try {
        multlfg_run(model, specs({0, 1}), {"levels=4"});  // 64×64 image: 8×8 latent
        FAIL() << "no error";
    } catch (const UsageError& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("4 wavelet level(s) need the latent size 8x8 (image size / 8) divisible by 16"),
                  std::string::npos)
            << what;
    }
}
