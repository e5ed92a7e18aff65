// Per-LoRA weight schedules (--lora FILE:W@F,...): parsing, the step (ComfyUI) and linear (loractl) rules
// worked by hand, and identities on the tiny model: Switch written as keyframes under Merge gives Switch's
// latents bit for bit; a constant keyframe equals the constant weight; the manifest records each step.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include "compose_test_support.h"
#include "multilora/lora/layer_adapters.h"
#include "multilora/lora/weight_schedule.h"
#include "multilora/util/error.h"

using namespace multilora;
using namespace multilora::compose_test;

namespace {

std::string usage_error(const std::string& spec) {
    try {
        lora::parse_lora_spec(spec);
    } catch (const UsageError& e) {
        return e.what();
    }
    return "(no UsageError)";
}

lora::LoraSpec scheduled(int which, const std::string& keys) {
    return lora::parse_lora_spec(world().paths.loras.at(which) + ":" + keys);
}

}  // namespace

TEST(WeightSchedule, ParsesKeyframesAndInterpolation) {
    const lora::LoraSpec a = lora::parse_lora_spec("dir/style.safetensors:0.8@0,0.2@0.6");
    EXPECT_EQ(a.path, "dir/style.safetensors");
    EXPECT_DOUBLE_EQ(a.weight, 1.0);
    ASSERT_EQ(a.schedule.keys.size(), 2u);
    EXPECT_DOUBLE_EQ(a.schedule.keys[1].weight, 0.2);
    EXPECT_DOUBLE_EQ(a.schedule.keys[1].at, 0.6);
    EXPECT_EQ(a.schedule.interpolation, lora::Interpolation::Step);
    EXPECT_EQ(a.schedule.text(), "0.8@0,0.2@0.6");
    const lora::LoraSpec b = lora::parse_lora_spec("C:/m/x.safetensors:1@0,0@1:linear");
    EXPECT_EQ(b.path, "C:/m/x.safetensors");
    EXPECT_EQ(b.schedule.interpolation, lora::Interpolation::Linear);
    EXPECT_EQ(b.schedule.text(), "1@0,0@1:linear");
    EXPECT_TRUE(lora::parse_lora_spec("x.safetensors:0.7").schedule.empty());
    EXPECT_TRUE(lora::parse_lora_spec("x.safetensors").schedule.empty());
}

TEST(WeightSchedule, RejectsMalformedKeyframes) {
    EXPECT_NE(usage_error("x:0.8@1.5").find("--lora x:0.8@1.5: keyframe fraction 1.5 is outside 0..1"), std::string::npos);
    EXPECT_NE(usage_error("x:1@0.5,0@0.5").find("keyframe fractions must increase (0@0.5 follows 0.5)"),
              std::string::npos);
    EXPECT_NE(usage_error("x:abc@0").find("weight \"abc\" is not a number"), std::string::npos);
    EXPECT_NE(usage_error("x:1@0,0.5").find("keyframe \"0.5\" is not WEIGHT@FRACTION"), std::string::npos);
    EXPECT_NE(usage_error("x:1@0:cubic").find("unknown interpolation \"cubic\" (choose step or linear)"),
              std::string::npos);
}

// Keyframes 0.8@0, 0.2@0.6 (and 1@0.2, 0@0.8 for the stretch before the first keyframe), by hand.
TEST(WeightSchedule, StepAndLinearRulesByHand) {
    lora::WeightSchedule s = lora::parse_weight_schedule("0.8@0,0.2@0.6", "t");
    EXPECT_DOUBLE_EQ(s.at(0.0), 0.8);
    EXPECT_DOUBLE_EQ(s.at(0.59), 0.8);
    EXPECT_DOUBLE_EQ(s.at(0.6), 0.2);
    EXPECT_DOUBLE_EQ(s.at(1.0), 0.2);
    s.interpolation = lora::Interpolation::Linear;
    EXPECT_DOUBLE_EQ(s.at(0.3), 0.5);    // 0.8 + (0.2 - 0.8) · 0.3/0.6
    EXPECT_DOUBLE_EQ(s.at(0.45), 0.35);  // 0.8 − 0.6 · 0.75
    EXPECT_DOUBLE_EQ(s.at(0.9), 0.2);
    const lora::WeightSchedule late = lora::parse_weight_schedule("1@0.2,0@0.8:linear", "t");
    EXPECT_DOUBLE_EQ(late.at(0.1), 1.0);
    EXPECT_DOUBLE_EQ(late.at(0.5), 0.5);
    EXPECT_NEAR(late.at_step(3, 4), 1.0 / 12.0, 1e-15);  // fraction 3/4: 1 − (0.75 − 0.2)/0.6
}

namespace {

at::Tensor merge_run(pipeline::StableDiffusionModel& model, const std::vector<lora::LoraSpec>& s,
                     pipeline::GenerationRequest request = eight_steps(), nlohmann::json* record = nullptr) {
    MethodRun r = run_method(model, s, "merge", {}, request);
    if (record) *record = r.record;
    return r.latents;
}

at::Tensor switch_run(pipeline::StableDiffusionModel& model, std::initializer_list<int> which, int tau,
                      const std::string& schedule) {
    return run_method(model, specs(which), "switch", {"tau=" + std::to_string(tau), "schedule=" + schedule}, eight_steps())
        .latents;
}

}  // namespace

// Switch (paper order, τ = 2, 8 steps: A A B B A A B B) written as step keyframes at i/8.
TEST(WeightSchedule, SwitchAsKeyframesGivesSwitchBits) {
    auto model = load_tiny();
    const at::Tensor sw = switch_run(model, {0, 1}, 2, "paper");
    const at::Tensor keyed = merge_run(model, {scheduled(0, "1@0,0@0.25,1@0.5,0@0.75"), scheduled(1, "0@0,1@0.25,0@0.5,1@0.75")});
    EXPECT_TRUE(torch::equal(keyed, sw));
    EXPECT_GT(rel_err(keyed, merge_run(model, specs({0, 1}))), 1e-3);  // and it is not Merge
}

// The reference order (k = 3, τ = 2: A A A B B C C A) holds A for τ+1 steps where Switch fuses for τ, so
// the layers may choose another route; with the route fixed both give the same bits.
TEST(WeightSchedule, ReferenceSwitchAsKeyframesGivesSwitchBits) {
    auto model = load_tiny();
    const std::vector<lora::LoraSpec> keys{scheduled(0, "1@0,0@0.375,1@0.875"), scheduled(1, "0@0,1@0.375,0@0.625"),
                                           scheduled(2, "0@0,1@0.625,0@0.875")};
    for (lora::RowPolicy policy : {lora::RowPolicy::Fused, lora::RowPolicy::LowRank}) {
        lora::set_row_policy(policy);
        const at::Tensor sw = switch_run(model, {0, 1, 2}, 2, "reference");
        const at::Tensor keyed = merge_run(model, keys);
        lora::set_row_policy(lora::RowPolicy::Auto);
        EXPECT_TRUE(torch::equal(keyed, sw)) << static_cast<int>(policy);
    }
}

TEST(WeightSchedule, ConstantKeyframesEqualConstantWeights) {
    auto model = load_tiny();
    // w·(α/r·s) against (α/r·w·s): the same product, rounded in another order.
    EXPECT_LT(rel_err(merge_run(model, {scheduled(0, "0.5@0"), scheduled(1, "0.5@0")}), merge_run(model, specs({0, 1}, 0.5))),
              1e-5);
    // Weight 0 throughout leaves text encoder and UNet on their base weights.
    EXPECT_TRUE(torch::equal(merge_run(model, {scheduled(0, "0@0"), scheduled(1, "0@0.5")}),
                             run(model, nullptr, "none", 5, eight_steps())));
}

// Linear 1@0 → 0@1 over 4 steps gives factors 1, 3/4, 1/2, 1/4; a constant LoRA keeps 1.
TEST(WeightSchedule, TheManifestRecordsEachStepsWeights) {
    auto model = load_tiny();
    pipeline::GenerationRequest four = small_request();
    nlohmann::json record;
    const at::Tensor fading = merge_run(model, {scheduled(0, "1@0,0@1:linear"), specs({1})[0]}, four, &record);
    EXPECT_EQ(record["method"], "merge");
    EXPECT_EQ(record["lora_weights_per_step"], nlohmann::json::parse("[[1,1],[0.75,1],[0.5,1],[0.25,1]]"));
    EXPECT_GT(rel_err(fading, merge_run(model, specs({0, 1}), four)), 1e-4);
    nlohmann::json plain;
    merge_run(model, specs({0, 1}), four, &plain);
    EXPECT_EQ(plain, nlohmann::json({{"method", "merge"}}));  // unscheduled manifests are unchanged
}

// The CLI takes the syntax, records the schedule, and refuses a bad one before writing anything.
TEST(WeightSchedule, GenerateCommandTakesSchedules) {
    const fs::path dir = test::make_temp_dir("schedule-cli");
    const std::string lora = world().paths.loras.at(0);
    const std::string common = " generate --model " + test::tiny_single_file() +
                               " --prompt fox --steps 2 --width 64 --height 64";
    auto ok = test::run_multilora(common + " --method merge --lora " + lora + ":1@0,0@0.5 --out " + dir.string() + " --name a");
    ASSERT_EQ(ok.exit_code, 0) << ok.output;
    const nlohmann::json manifest = nlohmann::json::parse(test::read_bytes(dir / "a.json"));
    EXPECT_EQ(manifest.dump().find("\"weight_schedule\"") != std::string::npos, true) << manifest.dump();
    auto bad = test::run_multilora(common + " --method merge --lora " + lora + ":1@0,0@2 --out " + dir.string() + " --name b");
    EXPECT_NE(bad.exit_code, 0);
    EXPECT_NE(bad.output.find("keyframe fraction 2 is outside 0..1"), std::string::npos) << bad.output;
    EXPECT_FALSE(fs::exists(dir / "b.png"));
    EXPECT_FALSE(fs::exists(dir / "b.json"));
    auto other = test::run_multilora(common + " --lora " + lora + ":1@0,0@0.5 --method composite --out " + dir.string() +
                                     " --name c");
    EXPECT_NE(other.exit_code, 0);
    EXPECT_NE(other.output.find("--method composite does not follow --lora weight schedules"), std::string::npos)
        << other.output;
    EXPECT_FALSE(fs::exists(dir / "c.png"));
}
