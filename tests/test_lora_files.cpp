// LoRA files through the CLI: bad files are refused by name with exit 1 and no output; partial matches warn.
#include <torch/torch.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "multilora/io/safetensors.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace multilora;
using test::run_multilora;

namespace {

fs::path lora_dir() { return test::tiny_model_dir() / "loras"; }

std::string write_lora(const std::string& name, const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
    static const fs::path dir = test::make_temp_dir("bad-loras");
    std::string path = (dir / name).string();
    io::save_safetensors(path, tensors);
    return path;
}

test::CommandResult generate_with(const std::string& lora, const fs::path& out, const std::string& extra = "") {
    return run_multilora("generate --threads 1 --no-progress --model " + test::tiny_single_file() +
                         " --prompt fox --steps 2 --width 64 --height 64 --out " + out.string() + " --name x --lora " +
                         lora + " " + extra);
}

void expect_refused(const std::string& lora, const std::vector<std::string>& phrases) {
    auto out = test::make_temp_dir("lora-out");
    auto r = generate_with(lora, out);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(fs::path(lora).filename().string()), std::string::npos) << r.output;
    for (const auto& p : phrases) EXPECT_NE(r.output.find(p), std::string::npos) << p << "\n" << r.output;
    EXPECT_TRUE(fs::is_empty(out)) << "output left behind";
}

at::Tensor r(std::vector<int64_t> shape) { return torch::randn(shape); }

// A kohya key for the tiny model's first cross-attention key projection (in 32, out 32).
const std::string kToK = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k";

}  // namespace

TEST(LoraFiles, SdxlLoraIsRefused) {
    expect_refused(write_lora("sdxl.safetensors", {{"lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", r({4, 1280})},
                                                   {"lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", r({1280, 4})}}),
                   {"SDXL"});
}

TEST(LoraFiles, Sd2ShapesAreRefusedWithAHint) {
    expect_refused(write_lora("sd2.safetensors", {{kToK + ".lora_down.weight", r({4, 1024})}, {kToK + ".lora_up.weight", r({32, 4})}}),
                   {"do not fit", "SD2", "attn2_to_k"});
}

TEST(LoraFiles, MismatchedRanksAreRefused) {
    expect_refused(write_lora("ranks.safetensors", {{kToK + ".lora_down.weight", r({4, 32})}, {kToK + ".lora_up.weight", r({32, 8})}}),
                   {"ranks differ", kToK});
}

TEST(LoraFiles, ShapesThatDoNotFitAreRefused) {
    expect_refused(write_lora("misfit.safetensors", {{kToK + ".lora_down.weight", r({4, 48})}, {kToK + ".lora_up.weight", r({32, 4})}}),
                   {"do not fit", "[4, 48]"});
}

TEST(LoraFiles, UnsupportedKindsAreNamed) {
    expect_refused(write_lora("loha.safetensors", {{kToK + ".hada_w1_a", r({32, 4})}, {kToK + ".hada_w1_b", r({4, 32})}}), {"LoHa"});
    expect_refused(write_lora("lokr.safetensors", {{kToK + ".lokr_w1", r({4, 4})}, {kToK + ".lokr_w2", r({8, 8})}}), {"LoKr"});
    expect_refused(write_lora("dora.safetensors", {{kToK + ".lora_down.weight", r({4, 32})},
                                                   {kToK + ".lora_up.weight", r({32, 4})},
                                                   {kToK + ".dora_scale", r({32, 1})}}),
                   {"DoRA"});
}

TEST(LoraFiles, NoLoraKeysIsRefused) {
    expect_refused(write_lora("empty.safetensors", {{"some.weight", r({2, 2})}}), {"no LoRA weights"});
}

TEST(LoraFiles, MissingLoraFileIsAClearError) {
    auto out = test::make_temp_dir("lora-missing");
    auto res = generate_with("/nonexistent/x.safetensors:0.5", out);
    EXPECT_EQ(res.exit_code, 1);
    EXPECT_NE(res.output.find("LoRA file not found: '/nonexistent/x.safetensors'"), std::string::npos) << res.output;
}

TEST(LoraFiles, PartlyMatchedWarnsWithCounts) {
    auto out = test::make_temp_dir("lora-partial");
    std::string path = write_lora("partial.safetensors", {{kToK + ".lora_down.weight", r({4, 32})},
                                                          {kToK + ".lora_up.weight", r({32, 4})},
                                                          {"lora_unet_no_such_module.lora_down.weight", r({4, 32})},
                                                          {"lora_unet_no_such_module.lora_up.weight", r({32, 4})}});
    auto res = generate_with(path, out);
    EXPECT_EQ(res.exit_code, 0) << res.output;
    EXPECT_NE(res.output.find("1 of 2 modules matched"), std::string::npos) << res.output;
}

TEST(LoraFiles, ManifestRecordsEveryLoraAndTheMethod) {
    auto out = test::make_temp_dir("lora-manifest");
    auto res = run_multilora("generate --threads 1 --no-progress --model " + test::tiny_folder() +
                             " --prompt fox --steps 3 --width 64 --height 64 --out " + out.string() + " --name s --lora " +
                             (lora_dir() / "tiny-character.safetensors").string() + " --lora " +
                             (lora_dir() / "tiny-peft.safetensors").string() +
                             ":0.5 --method switch --switch-interval 1");
    ASSERT_EQ(res.exit_code, 0) << res.output;
    auto m = nlohmann::json::parse(test::read_bytes(out / "s.json"));
    ASSERT_EQ(m["loras"].size(), 2u);
    EXPECT_EQ(m["loras"][0]["format"], "kohya");
    EXPECT_EQ(m["loras"][0]["ranks"], nlohmann::json({4}));
    EXPECT_EQ(m["loras"][0]["alphas"], nlohmann::json({2.0}));
    EXPECT_EQ(m["loras"][0]["sha256"].get<std::string>().size(), 64u);
    EXPECT_EQ(m["loras"][1]["format"], "peft");
    EXPECT_DOUBLE_EQ(m["loras"][1]["weight"].get<double>(), 0.5);
    EXPECT_EQ(m["composition"]["method"], "switch");
    EXPECT_EQ(m["composition"]["active_lora_per_step"], nlohmann::json({0, 1, 0}));
    EXPECT_DOUBLE_EQ(m["composition"]["lora_scale"].get<double>(), 0.8);
}

TEST(LoraFiles, InspectDescribesALora) {
    auto res = run_multilora("inspect --json " + (lora_dir() / "tiny-style.safetensors").string() + " --model " +
                             test::tiny_single_file());
    ASSERT_EQ(res.exit_code, 0) << res.output;
    auto j = nlohmann::json::parse(res.output.substr(res.output.find('{')));
    EXPECT_EQ(j["format"], "kohya");
    EXPECT_EQ(j["ranks"], nlohmann::json({8}));
    EXPECT_EQ(j["alphas"], nlohmann::json({4.0}));
    EXPECT_EQ(j["targets"]["unet/conv"], 1);
    auto ck = run_multilora("inspect --json " + test::tiny_single_file());
    ASSERT_EQ(ck.exit_code, 0) << ck.output;
    auto c = nlohmann::json::parse(ck.output.substr(ck.output.find('{')));
    EXPECT_EQ(c["layout"], "ldm-single-file");
    EXPECT_EQ(c["unet_config"]["block_out_channels"], nlohmann::json({32, 64, 64}));
}
