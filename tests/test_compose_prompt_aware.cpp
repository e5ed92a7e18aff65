// Prompt-aware W-Switch and W-Composite (arXiv 2606.03792; GeorgeTsoumplekas/PromptAware-Multi-LoRA-
// Composition f148887). Expected strings and step counts below come from the reference's rules
// (benchmark_multi_loras.py's trigger removal with Python's re, callbacks.py's schedule and its
// end-of-step callback) run in Python on the ComposLoRA reality prompt; the weights on hand-picked
// prompts are worked by hand. On the tiny model: equal weights and no tail give Switch's bits; equal
// weights give Composite.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <algorithm>

#include "compose_test_support.h"
#include "multilora/compose/prompt_aware.h"
#include "multilora/util/error.h"

using namespace multilora;
using namespace multilora::compose_test;
namespace pa = multilora::compose::prompt_aware;

namespace {
const std::string kReality =
    "RAW photo, subject, 8k uhd, dslr, high quality, Fujifilm XT3, half-length portrait from knees up";
const std::vector<std::string> kCharacter2{"scarlett", "short red hair", "blue eyes"};
const std::vector<std::string> kClothing2{"school uniform", "white shirt", "red tie", "blue pleated microskirt"};
}  // namespace

TEST(PromptAware, TriggerRemovalAsTheReference) {
    const std::string p = kReality + ", scarlett, short red hair, blue eyes, school uniform, white shirt, red tie, "
                                     "blue pleated microskirt";
    EXPECT_EQ(pa::strip_triggers(p, kCharacter2),
              kReality + ", , school uniform, white shirt, red tie, blue pleated microskirt");
    EXPECT_EQ(pa::strip_triggers(p, kClothing2), kReality + ", scarlett, short red hair, blue eyes,");
    EXPECT_EQ(pa::strip_triggers("Scarlett in a Red Tie", {"scarlett", "red tie"}), "in a");  // case-insensitive
    EXPECT_EQ(pa::strip_triggers("scarletta, scarlett", {"scarlett"}), "scarletta");         // whole words only
}

TEST(PromptAware, BlocksRoundHalfToEven) {
    EXPECT_EQ(pa::block_sizes({0.6, 0.4}, 5), (std::vector<int>{5, 3}));
    EXPECT_EQ(pa::block_sizes({0.55, 0.45}, 5), (std::vector<int>{5, 4}));
    EXPECT_EQ(pa::block_sizes({0.7, 0.3}, 5), (std::vector<int>{5, 2}));
    EXPECT_EQ(pa::block_sizes({1.0, 0.5}, 5), (std::vector<int>{5, 2}));   // 2.5 → 2
    EXPECT_EQ(pa::block_sizes({1.0, 0.7}, 5), (std::vector<int>{5, 4}));   // 3.5 → 4
    EXPECT_EQ(pa::block_sizes({1.0, 0.01}, 5), (std::vector<int>{5, 1}));  // at least one step
    EXPECT_EQ(pa::block_schedule({2, 1}, 7, 2, 0), (std::vector<int>{0, 0, 1, 0, 0, 0, 0}));
}

// 100 steps, τ = 5, 5 reserved steps for LoRA 0, the reference's indexing.
TEST(PromptAware, StepCountsOfTheReferenceSchedule) {
    auto counts = [](std::vector<int> blocks, std::string* tail = nullptr) {
        const std::vector<int> s = pa::block_schedule(blocks, 100, 5, 0);
        std::vector<int> n(blocks.size(), 0);
        std::string last;
        for (int step = 0; step < 100; ++step) {
            const int a = pa::active_at(s, step, true);
            ++n[a];
            if (step >= 90) last += static_cast<char>('A' + a);
        }
        if (tail) *tail = last;
        return n;
    };
    std::string tail;
    EXPECT_EQ(counts({5, 5}, &tail), (std::vector<int>{55, 45}));
    EXPECT_EQ(tail, "BAAAAAAAAA");
    EXPECT_EQ(counts({5, 3}), (std::vector<int>{65, 35}));
    EXPECT_EQ(counts({5, 4}), (std::vector<int>{60, 40}));
    EXPECT_EQ(counts({5, 2}), (std::vector<int>{74, 26}));
    EXPECT_EQ(counts({5, 4, 4, 3}), (std::vector<int>{35, 24, 24, 17}));
}

TEST(PromptAware, WeightsByHand) {
    auto model = load_tiny();
    const compose::ModelParts parts = pipeline::model_parts(model);
    // Ablation: removing "tiny fox" from "tiny fox" leaves under 5 characters (2.0); no triggers: 0.1.
    const auto a = pa::ablation_weights(parts, "tiny fox", {{"tiny fox"}, {}});
    EXPECT_NEAR(a[0], 2.0 / 2.1, 1e-12);
    EXPECT_NEAR(a[1], 0.1 / 2.1, 1e-12);
    // Triggers: the prompt itself has cosine 1; no triggers: 0.
    const auto t = pa::trigger_weights(parts, "tiny fox, red fur", {{"tiny fox", "red fur"}, {}});
    EXPECT_NEAR(t[0], 1.0, 1e-6);
    EXPECT_EQ(t[1], 0.0);
    EXPECT_EQ(pa::normalized({0.0, 0.0}), (std::vector<double>{0.0, 0.0}));
}

namespace {

at::Tensor method_run(pipeline::StableDiffusionModel& model, const std::vector<lora::LoraSpec>& s,
                      const std::string& method, const std::vector<std::string>& args,
                      const std::vector<std::vector<std::string>>& triggers, nlohmann::json* record = nullptr) {
    MethodRun r = run_method(model, s, method, args, eight_steps(), triggers);
    if (record) *record = r.record;
    return r.latents;
}

}  // namespace

TEST(PromptAware, EqualWeightsWithoutTailAreSwitch) {
    auto model = load_tiny();
    nlohmann::json record;
    const at::Tensor w = method_run(model, specs({0, 1}), "w-switch", {"tau=2", "reserved=0"}, {}, &record);
    EXPECT_EQ(record["blocks"], nlohmann::json::parse("[2,2]"));
    EXPECT_EQ(record["active_lora_per_step"], nlohmann::json::parse("[0,0,0,1,1,0,0,1]"));
    const at::Tensor sw = method_run(model, specs({0, 1}), "switch", {"tau=2", "schedule=reference"}, {});
    EXPECT_TRUE(torch::equal(w, sw));
    // The default tail hands the last steps to the first LoRA.
    method_run(model, specs({0, 1}), "w-switch", {"tau=2", "reserved=3"}, {}, &record);
    EXPECT_EQ(record["active_lora_per_step"], nlohmann::json::parse("[0,0,0,1,1,0,0,0]"));
}

TEST(PromptAware, EqualWeightsAreComposite) {
    auto model = load_tiny();
    nlohmann::json record;
    const std::vector<std::vector<std::string>> same{{"watercolor"}, {"watercolor"}};
    const at::Tensor w = method_run(model, specs({0, 1}), "w-composite", {}, same, &record);
    EXPECT_NEAR(record["weights"][0].get<double>(), 0.5, 1e-12);
    EXPECT_LT(rel_err(w, method_run(model, specs({0, 1}), "composite", {}, {})), 1e-5);
    // Unequal triggers move the weights and the image.
    const at::Tensor u = method_run(model, specs({0, 1}), "w-composite", {}, {{"a red fox"}, {"snow"}}, &record);
    EXPECT_NE(record["weights"][0].get<double>(), 0.5);
    EXPECT_GT(rel_err(u, w), 1e-6);
    EXPECT_THROW(method_run(model, specs({0, 1}), "w-composite", {}, {}), UsageError);
}

TEST(PromptAware, GenerateTakesTriggersPerLora) {
    const fs::path dir = test::make_temp_dir("triggers-cli");
    const std::string base = " generate --model " + test::tiny_single_file() +
                             " --prompt \"tiny fox, watercolor\" --steps 2 --width 64 --height 64 --method w-composite" +
                             " --lora " + world().paths.loras.at(0) + " --lora " + world().paths.loras.at(1) +
                             " --out " + dir.string();
    auto ok = test::run_multilora(base + " --triggers \"tiny fox, red fur\" --triggers watercolor --name a");
    ASSERT_EQ(ok.exit_code, 0) << ok.output;
    const nlohmann::json m = nlohmann::json::parse(test::read_bytes(dir / "a.json"));
    EXPECT_EQ(m["composition"]["method"], "w-composite");
    EXPECT_EQ(m["composition"]["weights"].size(), 2u);
    auto bad = test::run_multilora(base + " --triggers watercolor --name b");
    EXPECT_NE(bad.exit_code, 0);
    EXPECT_NE(bad.output.find("--triggers was given 1 times for 2 --lora"), std::string::npos) << bad.output;
    EXPECT_FALSE(fs::exists(dir / "b.png"));
}
