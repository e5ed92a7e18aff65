// LoRAtorio (arXiv 2508.11624, no public code): the equations' identities and a hand-worked example.
//  - The SoftMin on hand-picked similarities; a 2×2 one-channel example worked by hand (d = 1: each
//    pixel's cosine is the sign of the product).
//  - On the tiny model: with λ = 0 and a huge τ the weights are uniform and LoRAtorio is Composite; two
//    copies of one LoRA give that LoRA's prediction whatever τ; d = whole latent (0) equals a global
//    weight computed here; the dynamic setting with k = N is the static one, and with k = 1 it keeps the
//    LoRA that moves the prediction, not the one that equals the base.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <cmath>

#include "compose_test_support.h"
#include "multilora/compose/loratorio.h"
#include "multilora/util/error.h"

using namespace multilora;
using namespace multilora::compose_test;
namespace lt = multilora::compose::loratorio;

TEST(Loratorio, SoftMinByHand) {
    // S = (1, 0.5), τ = 0.5: softmax(−2, −1) = (1/(1+e), e/(1+e)).
    at::Tensor w = lt::softmin_weights(torch::tensor({1.0, 0.5}, torch::kDouble).view({2, 1, 1, 1}), 0.5);
    EXPECT_NEAR(w[0].item<double>(), 1.0 / (1.0 + std::exp(1.0)), 1e-12);
    EXPECT_NEAR(w[1].item<double>(), std::exp(1.0) / (1.0 + std::exp(1.0)), 1e-12);
    // A LoRA left out by the dynamic mask gets 0 and the others renormalise.
    at::Tensor m = lt::softmin_weights(torch::tensor({1.0, 0.5, 0.2}, torch::kDouble).view({3, 1, 1, 1}), 0.5,
                                       {true, true, false});
    EXPECT_NEAR(m[0].item<double>(), 1.0 / (1.0 + std::exp(1.0)), 1e-12);
    EXPECT_EQ(m[2].item<double>(), 0.0);
}

// C = 1, 2×2 latent, d = 1, τ = 1, λ = 0.5. Base cond (1, 1, 1, 1); LoRA 1 (1, −1, 1, 1), LoRA 2
// (2, 2, −1, 2): similarities S₁ = (1, −1, 1, 1), S₂ = (1, 1, −1, 1).
TEST(Loratorio, HandWorkedPixelExample) {
    at::Tensor base_c = torch::ones({1, 1, 2, 2});
    at::Tensor lora_c = torch::tensor({1.f, -1.f, 1.f, 1.f, 2.f, 2.f, -1.f, 2.f}).view({2, 1, 1, 2, 2});
    at::Tensor base_u = torch::full({1, 1, 2, 2}, 0.5f);
    at::Tensor lora_u = torch::tensor({0.f, 0.f, 0.f, 0.f, 1.f, 1.f, 1.f, 1.f}).view({2, 1, 1, 2, 2});
    lt::Settings s;
    s.patch = 1;
    s.tau = 1.0;
    s.lambda = 0.5;
    at::Tensor sim = lt::patch_similarity(lora_c, base_c, 1);
    EXPECT_TRUE(torch::allclose(sim.flatten(), torch::tensor({1.f, -1.f, 1.f, 1.f, 1.f, 1.f, -1.f, 1.f})));
    lt::Scores r = lt::combine(lora_c, base_c, lora_u, base_u, s);
    const double hi = std::exp(1.0) / (std::exp(1.0) + std::exp(-1.0));  // the diverging LoRA's share
    const double lo = 1.0 - hi;
    // Pixel 0: equal weights → (1 + 2)/2. Pixel 1: LoRA 1 diverges → hi·(−1) + lo·2. Pixel 2: LoRA 2
    // diverges → lo·1 + hi·(−1).
    at::Tensor c = r.cond.flatten();
    EXPECT_NEAR(c[0].item<double>(), 1.5, 1e-6);
    EXPECT_NEAR(c[1].item<double>(), -hi + 2 * lo, 1e-6);
    EXPECT_NEAR(c[2].item<double>(), lo - hi, 1e-6);
    // Unconditional: 0.5·0.5 + 0.5·(Ω₂·1), Ω₂ = 0.5, lo, hi, 0.5 at the four pixels.
    at::Tensor u = r.uncond.flatten();
    EXPECT_NEAR(u[0].item<double>(), 0.25 + 0.25, 1e-6);
    EXPECT_NEAR(u[1].item<double>(), 0.25 + 0.5 * lo, 1e-6);
    EXPECT_NEAR(u[2].item<double>(), 0.25 + 0.5 * hi, 1e-6);
    // A patch of 2 (the whole latent) gives one weight: cos((1,−1,1,1),(1,1,1,1)) = 1/2, cos((2,2,−1,2), 1) = 5/(2·√13).
    at::Tensor whole = lt::patch_similarity(lora_c, base_c, 2).flatten();
    EXPECT_NEAR(whole[0].item<double>(), 0.5, 1e-6);
    EXPECT_NEAR(whole[1].item<double>(), 5.0 / (2.0 * std::sqrt(13.0)), 1e-6);
    EXPECT_TRUE(torch::equal(whole, lt::patch_similarity(lora_c, base_c, 0).flatten()));
    EXPECT_THROW(lt::patch_similarity(torch::ones({2, 1, 1, 3, 3}), torch::ones({1, 1, 3, 3}), 2), UsageError);
    // A LoRA equal to the base has S = 1, so Ω = 1 / (1 + exp((1 − S₂)/τ)) against a LoRA with S₂.
    at::Tensor with_base = torch::cat({base_c.unsqueeze(0), lora_c.narrow(0, 1, 1)}, 0);
    lt::Settings g;
    g.patch = 0;
    g.tau = 0.5;
    g.lambda = 0.0;
    at::Tensor mixed = lt::combine(with_base, base_c, {}, {}, g).cond.flatten();
    const double s2 = 5.0 / (2.0 * std::sqrt(13.0)), w_base = 1.0 / (1.0 + std::exp((1.0 - s2) / 0.5));
    const double lora2[4] = {2, 2, -1, 2};
    for (int p = 0; p < 4; ++p) EXPECT_NEAR(mixed[p].item<double>(), w_base * 1.0 + (1 - w_base) * lora2[p], 1e-6) << p;
    // Dynamic k = 1: per image, the LoRA with the larger mean(1 − S) (LoRA 1: 0.5, LoRA 2: 0.5 → ties keep order).
    EXPECT_EQ(lt::top_k_divergent(sim, 1), (std::vector<std::vector<bool>>{{true}, {false}}));
}

namespace {

at::Tensor loratorio_run(pipeline::StableDiffusionModel& model, const std::vector<lora::LoraSpec>& s,
                         const std::vector<std::string>& args, nlohmann::json* record = nullptr) {
    MethodRun r = run_method(model, s, "loratorio", args);
    if (record) *record = r.record;
    return r.latents;
}

at::Tensor composite_run(pipeline::StableDiffusionModel& model, const std::vector<lora::LoraSpec>& s) {
    auto ad = attach(model, s);
    return run(model, ad.get(), "composite");
}

}  // namespace

TEST(Loratorio, UniformWeightsWithoutRecentringAreComposite) {
    auto model = load_tiny();
    const at::Tensor lt_run = loratorio_run(model, specs({0, 1, 2}), {"tau=1000000", "lambda=0"});
    const at::Tensor comp = composite_run(model, specs({0, 1, 2}));
    EXPECT_LT(rel_err(lt_run, comp), 1e-5);
    // The default τ and λ do change the result.
    EXPECT_GT(rel_err(loratorio_run(model, specs({0, 1, 2}), {}), comp), 1e-4);
}

TEST(Loratorio, IdenticalLorasGiveThatLora) {
    auto model = load_tiny();
    // Two copies: Ω = 1/2 each whatever τ; with λ = 0 the result is the one LoRA's Composite when each row
    // reads its own LoRA's prompt, and the two copies' Composite when both share the text encoder.
    const std::vector<lora::LoraSpec> two{specs({1})[0], specs({1})[0]};
    const at::Tensor each = loratorio_run(model, two, {"tau=0.01", "lambda=0", "patch=4", "text_encoder=each"});
    EXPECT_LT(rel_err(each, composite_run(model, specs({1}))), 1e-5);
    const at::Tensor all = loratorio_run(model, two, {"tau=0.01", "lambda=0", "patch=4"});
    EXPECT_LT(rel_err(all, composite_run(model, two)), 1e-5);
    EXPECT_GT(rel_err(all, each), 1e-4);  // the doubled text-encoder delta shows
}

// A zero-weight LoRA is the base: its similarity is 1 everywhere, so with a small τ the other LoRA takes
// (nearly) all the weight; the dynamic setting with k = 1 keeps the other LoRA at every step.
TEST(Loratorio, ALoraEqualToTheBaseGetsTheFormulasWeight) {
    auto model = load_tiny();
    const std::vector<lora::LoraSpec> pool{{world().paths.loras.at(0), 0.0}, specs({1})[0]};
    nlohmann::json record;
    const at::Tensor dynamic = loratorio_run(model, pool, {"top_k=1", "lambda=0", "text_encoder=each"}, &record);
    EXPECT_EQ(record["kept_loras_per_step"], nlohmann::json::parse("[[1],[1],[1],[1]]"));
    // k = 1 keeps LoRA 1 alone: its conditional and unconditional rows, its own prompt encoding.
    EXPECT_LT(rel_err(dynamic, composite_run(model, specs({1}))), 1e-5);
    // k = N is the static setting.
    EXPECT_TRUE(torch::equal(loratorio_run(model, pool, {"top_k=2"}), loratorio_run(model, pool, {})));
}

TEST(Loratorio, RejectsAPatchThatDoesNotDivideTheLatent) {
    auto model = load_tiny();
    try {
        loratorio_run(model, specs({0, 1}), {"patch=3"});  // 64×64 image: 8×8 latent
        FAIL() << "no error";
    } catch (const UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("patch 3 does not divide the latent size 8x8"), std::string::npos) << e.what();
    }
}
