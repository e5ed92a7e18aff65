// CMLoRA (arXiv 2502.04923; Yqcca/CMLoRA 5e79e41, pipeline_offline.py). The refresh schedules, weights and
// rotation against the code's rules (the step lists and the T = 220, interval 3, [character, clothing] +
// [background] trace were re-enacted in Python from the pipeline's index logic); the DeepCache passes
// against the plain UNet (a full pass hands out the input of the last up block; the shallow pass on it
// gives the full pass's output bit for bit); on the tiny model, k = 1 without cache is Composite, and the
// manifest shows which LoRAs ran full passes.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include "compose_test_support.h"
#include "multilora/compose/cmlora.h"
#include "multilora/models/unet.h"

using namespace multilora;
using namespace multilora::compose_test;
namespace cm = multilora::compose::cmlora;

TEST(Cmlora, RefreshSchedulesAsTheCode) {
    EXPECT_EQ(cm::refresh_steps(3, 10), (std::vector<int>{0, 3, 6, 9}));
    EXPECT_EQ(cm::refresh_steps(1, 3), (std::vector<int>{0, 1, 2}));
    // Non-uniform, T = 220: 0..80 every 2 (41), 82..190 every 3 (37), 192..218 every 2 (14).
    const std::vector<int> s = cm::refresh_steps(0, 220);
    ASSERT_EQ(s.size(), 41u + 37u + 14u);
    EXPECT_EQ(s[40], 80);
    EXPECT_EQ(s[41], 82);
    EXPECT_EQ(s[77], 190);
    EXPECT_EQ(s[78], 192);
    EXPECT_EQ(s.back(), 218);
}

TEST(Cmlora, WeightsByHand) {
    EXPECT_DOUBLE_EQ(cm::weights(2).dominant, 1.2);  // c = 1.5, w_n = 2/2.5
    EXPECT_DOUBLE_EQ(cm::weights(2).other, 0.8);
    EXPECT_NEAR(cm::weights(3).dominant, 5.0 / 3.0, 1e-15);  // c = 2.5, w_n = 3/4.5
    EXPECT_NEAR(cm::weights(3).other, 2.0 / 3.0, 1e-15);
    EXPECT_DOUBLE_EQ(cm::weights(1).dominant, 1.0);  // one LoRA: Composite
}

// T = 220, interval 3, real = [character, clothing], background last, phase step 120.
TEST(Cmlora, RotationAsTheCode) {
    cm::Rotation r(2, 1, 120);
    std::vector<cm::StepPlan> plan;
    for (int i = 0; i < 130; ++i) plan.push_back(r.step(i, i % 3 == 0));
    auto check = [&](int i, int dominant, int refresh) {
        EXPECT_EQ(plan[i].dominant, dominant) << "step " << i;
        EXPECT_EQ(plan[i].refresh, refresh) << "step " << i;
    };
    check(0, 0, 0);
    check(2, 0, -1);
    check(3, 1, 1);
    check(6, 0, 0);
    check(117, 1, 1);
    check(120, 0, 0);
    check(121, 1, -1);  // after step 120: LoRAs 1..R, no refresh
    check(123, 2, -1);  // the background is dominant
    check(126, 1, -1);
    cm::Rotation no_bg(3, 0, 120);
    for (int i = 0; i < 200; ++i) {
        const cm::StepPlan p = no_bg.step(i, i % 5 == 0);
        EXPECT_EQ(p.dominant, (i / 5) % 3) << i;
    }
}

TEST(Cmlora, ShallowPassOnTheDeepFeaturesIsTheFullPass) {
    auto model = load_tiny();
    torch::manual_seed(5);
    at::Tensor x = torch::randn({2, 4, 8, 8}), ctx = torch::randn({2, 77, model.unet->config().cross_attention_dim});
    at::Tensor t = at::scalar_tensor(int64_t{500});
    c10::InferenceMode guard;
    at::Tensor plain = model.unet->forward(x, t, ctx);
    at::Tensor deep;
    at::Tensor full = model.unet->forward(x, t, ctx, &deep);
    EXPECT_TRUE(torch::equal(full, plain));
    ASSERT_TRUE(deep.defined());
    EXPECT_TRUE(torch::equal(model.unet->forward_shallow(x, t, ctx, deep), plain));
    // With features from another timestep the shallow pass differs (the cache is stale by design).
    at::Tensor other;
    model.unet->forward(x, at::scalar_tensor(int64_t{900}), ctx, &other);
    EXPECT_FALSE(torch::equal(model.unet->forward_shallow(x, t, ctx, other), plain));
}

namespace {

at::Tensor cmlora_run(pipeline::StableDiffusionModel& model, const std::vector<lora::LoraSpec>& s,
                      const std::vector<std::string>& args, const std::vector<std::string>& categories = {},
                      nlohmann::json* record = nullptr) {
    MethodRun r = run_method(model, s, "cmlora", args, eight_steps(), {}, categories);
    if (record) *record = r.record;
    return r.latents;
}

}  // namespace

TEST(Cmlora, OneLoraWithoutCacheIsComposite) {
    auto model = load_tiny();
    auto ad = attach(model, specs({1}));
    pipeline::GenerationRequest r = small_request();
    r.steps = 8;
    const at::Tensor comp = run(model, ad.get(), "composite", 5, r);
    ad.reset();
    EXPECT_LT(rel_err(cmlora_run(model, specs({1}), {"interval=1"}), comp), 1e-6);
}

TEST(Cmlora, FullPassesAndDominantPerStep) {
    auto model = load_tiny();
    nlohmann::json rec;
    const at::Tensor cached = cmlora_run(model, specs({0, 1}), {"interval=2"}, {}, &rec);
    EXPECT_EQ(rec["full_passes_per_step"], nlohmann::json::parse("[[0,1],[],[1],[],[0],[],[1],[]]"));
    EXPECT_EQ(rec["dominant_per_step"], nlohmann::json::parse("[0,0,1,1,0,0,1,1]"));
    nlohmann::json uncached_rec;
    const at::Tensor uncached = cmlora_run(model, specs({0, 1}), {"interval=1"}, {}, &uncached_rec);
    EXPECT_EQ(uncached_rec["full_passes_per_step"][3], nlohmann::json::parse("[0,1]"));
    EXPECT_GT(rel_err(cached, uncached), 1e-6);  // the reused features do change the result
    // A background LoRA goes last and, before the phase step, is never dominant.
    cmlora_run(model, specs({0, 1, 2}), {"interval=2"}, {"background", "character", "style"}, &rec);
    EXPECT_EQ(rec["order"], nlohmann::json::parse("[1,2,0]"));
    for (const auto& d : rec["dominant_per_step"]) EXPECT_NE(d.get<int>(), 0);
}
