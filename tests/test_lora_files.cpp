// LoRA files through the CLI: bad files are refused by name with exit 1 and no output; partial matches warn.
#include <torch/torch.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "multilora/io/safetensors.h"
#include "multilora/lora/lora_file.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace multilora;
using test::run_multilora;

namespace {

fs::path lora_dir() { return test::tiny_model_dir() / "loras"; }

std::string write_lora(const std::string& name, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {}) {
    static const fs::path dir = test::make_temp_dir("bad-loras");
    std::string path = (dir / name).string();
    io::save_safetensors(path, tensors, metadata);
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
    expect_refused(write_lora("oft.safetensors", {{kToK + ".oft_blocks", r({4, 8, 8})}}), {"OFT/BOFT"});
    expect_refused(write_lora("glora.safetensors", {{kToK + ".a1.weight", r({4, 32})}, {kToK + ".a2.weight", r({32, 4})},
                                                    {kToK + ".b1.weight", r({4, 32})}, {kToK + ".b2.weight", r({32, 4})}}),
                   {"GLoRA"});
}

// LyCORIS files whose factors contradict each other, or whose ΔW does not fit the layer, are refused naming
// the module; so are keys of two forms on one module.
TEST(LoraFiles, BrokenLycorisFilesAreRefused) {
    expect_refused(write_lora("loha-ranks.safetensors", {{kToK + ".hada_w1_a", r({32, 4})}, {kToK + ".hada_w1_b", r({3, 32})},
                                                         {kToK + ".hada_w2_a", r({32, 4})}, {kToK + ".hada_w2_b", r({4, 32})}}),
                   {"corrupt factor shapes", kToK, "ranks differ within a pair"});
    expect_refused(write_lora("loha-half.safetensors", {{kToK + ".hada_w1_a", r({32, 4})}, {kToK + ".hada_w1_b", r({4, 32})}}),
                   {"incomplete adapter", "hada_w2_a"});
    expect_refused(write_lora("lokr-misfit.safetensors", {{kToK + ".lokr_w1", r({2, 2})}, {kToK + ".lokr_w2", r({16, 8})}}),
                   {"do not fit", "Kronecker product [32, 16] does not fit", "[32, 32]"});
    expect_refused(write_lora("mixed.safetensors", {{kToK + ".lora_down.weight", r({4, 32})}, {kToK + ".lora_up.weight", r({32, 4})},
                                                    {kToK + ".hada_w1_a", r({32, 4})}}),
                   {"different adapter forms", kToK});
    expect_refused(write_lora("dora-misfit.safetensors", {{kToK + ".lora_down.weight", r({4, 32})}, {kToK + ".lora_up.weight", r({32, 4})},
                                                          {kToK + ".dora_scale", r({7, 1})}}),
                   {"DoRA magnitude [7, 1]"});
}

// Each LyCORIS form on the tiny model's 32x32 key projection generates, and inspect names its form.
TEST(LoraFiles, LycorisFormsGenerateAndInspectNamesThem) {
    const std::vector<std::pair<std::string, std::vector<std::pair<std::string, at::Tensor>>>> files{
        {"loha", {{kToK + ".hada_w1_a", r({32, 4})}, {kToK + ".hada_w1_b", r({4, 32})}, {kToK + ".hada_w2_a", r({32, 4})},
                  {kToK + ".hada_w2_b", r({4, 32})}, {kToK + ".alpha", torch::tensor(2.0)}}},
        {"lokr", {{kToK + ".lokr_w1", r({4, 4})}, {kToK + ".lokr_w2_a", r({8, 2})}, {kToK + ".lokr_w2_b", r({2, 8})}}},
        {"ia3", {{kToK + ".weight", r({32})}, {kToK + ".on_input", torch::tensor(1)}}},
        {"full", {{kToK + ".diff", r({32, 32})}}},
        {"lora+dora", {{kToK + ".lora_down.weight", r({4, 32})}, {kToK + ".lora_up.weight", r({32, 4})}, {kToK + ".dora_scale", r({32, 1})}}},
    };
    for (const auto& [form, tensors] : files) {
        SCOPED_TRACE(form);
        const std::string path = write_lora(form + "-ok.safetensors", tensors);
        auto out = test::make_temp_dir("lycoris-gen");
        auto res = generate_with(path, out);
        EXPECT_EQ(res.exit_code, 0) << res.output;
        EXPECT_TRUE(fs::exists(out / "x.png"));
        auto text = run_multilora("inspect " + path + " --modules --model " + test::tiny_single_file());
        EXPECT_EQ(text.exit_code, 0) << text.output;
        EXPECT_NE(text.output.find("forms      " + form + "=1"), std::string::npos) << text.output;
        EXPECT_NE(text.output.find("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"), std::string::npos) << text.output;
        auto js = run_multilora("inspect " + path + " --json --model " + test::tiny_single_file());
        const auto j = nlohmann::json::parse(js.output.substr(js.output.find('{')));
        EXPECT_EQ(j["modules"][0]["form"], form);
        EXPECT_EQ(j["forms"][form], 1);
    }
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

// The base model kohya and the SAI model spec record, as A1111 reads them: kohya's model_util names SD1/SD2 versions
// "sd_v1", "sd_v2", "sd_v2_v", sdxl_model_util "sdxl_base_v1-0", Flux "flux1"; modelspec.architecture is
// "stable-diffusion-v1/lora", "stable-diffusion-v2-768-v/lora", "stable-diffusion-xl-v1-base/lora", "flux-1-dev/lora".
TEST(LoraFiles, BaseModelFromMetadata) {
    const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
        {"ss_base_model_version", "sd_v1", "sd1"},
        {"ss_base_model_version", "sd_v2_v", "sd2"},
        {"ss_base_model_version", "sdxl_base_v1-0", "sdxl"},
        {"ss_base_model_version", "flux1", "flux"},
        {"ss_base_model_version", "sd3", "sd3"},
        {"modelspec.architecture", "stable-diffusion-v1/lora", "sd1"},
        {"modelspec.architecture", "stable-diffusion-v2-768-v/lora", "sd2"},
        {"modelspec.architecture", "stable-diffusion-xl-v1-base/lora", "sdxl"},
        {"modelspec.architecture", "flux-1-dev/lora", "flux"},
        {"ss_v2", "True", "sd2"},
        {"ss_v2", "False", ""},
        {"ss_output_name", "sdxl_thing", ""},
    };
    for (const auto& [key, value, family] : cases) {
        const lora::BaseModel b = lora::base_model_of({{key, value}});
        EXPECT_EQ(b.family, family) << key << " = " << value;
        EXPECT_EQ(b.supported(), family.empty() || family == "sd1") << value;
    }
}

// A LoRA whose metadata names another architecture is refused before its keys are read, with the entry that says so;
// its keys here would fit the tiny model.
TEST(LoraFiles, ForeignBaseModelByMetadataIsRefused) {
    const std::vector<std::pair<std::string, at::Tensor>> fits = {{kToK + ".lora_down.weight", r({4, 32})}, {kToK + ".lora_up.weight", r({32, 4})}};
    expect_refused(write_lora("xl-meta.safetensors", fits, {{"ss_base_model_version", "sdxl_base_v1-0"}}),
                   {"an SDXL LoRA", "ss_base_model_version = sdxl_base_v1-0", "multilora supports SD1.x"});
    expect_refused(write_lora("flux-meta.safetensors", fits, {{"modelspec.architecture", "flux-1-dev/lora"}}), {"a Flux LoRA"});
    expect_refused(write_lora("sd2-meta.safetensors", fits, {{"ss_v2", "True"}}), {"an SD2 LoRA", "ss_v2 = True"});
}

// inspect prints the base model and kohya's training metadata; the manifest records the base model.
TEST(LoraFiles, InspectAndManifestShowTheMetadata) {
    const std::string tags = R"({"5_zorp": {"zorp": 10, "creature": 4}, "1_more": {"creature": 3, "hat": 1}})";
    const std::string path = write_lora("meta.safetensors", {{kToK + ".lora_down.weight", r({4, 32})}, {kToK + ".lora_up.weight", r({32, 4})}},
                                        {{"ss_base_model_version", "sd_v1"}, {"ss_network_module", "networks.lora"},
                                         {"ss_network_dim", "4"}, {"ss_network_alpha", "2.0"}, {"ss_tag_frequency", tags}});
    auto text = run_multilora("inspect " + path + " --model " + test::tiny_single_file());
    ASSERT_EQ(text.exit_code, 0) << text.output;
    EXPECT_NE(text.output.find("base model sd1 (ss_base_model_version = sd_v1)"), std::string::npos) << text.output;
    EXPECT_NE(text.output.find("training   networks.lora, dim 4, alpha 2.0"), std::string::npos) << text.output;
    EXPECT_NE(text.output.find("tags       zorp (10), creature (7), hat (1)"), std::string::npos) << text.output;
    auto js = run_multilora("inspect --json " + path);
    ASSERT_EQ(js.exit_code, 0) << js.output;
    auto j = nlohmann::json::parse(js.output.substr(js.output.find('{')));
    EXPECT_EQ(j["base_model"]["family"], "sd1");
    EXPECT_EQ(j["metadata"]["ss_network_dim"], "4");
    EXPECT_EQ(j["top_tags"][0], nlohmann::json({"zorp", 10}));

    auto out = test::make_temp_dir("lora-meta-manifest");
    auto g = generate_with(path, out);
    ASSERT_EQ(g.exit_code, 0) << g.output;
    auto m = nlohmann::json::parse(test::read_bytes(out / "x.json"));
    EXPECT_EQ(m["loras"][0]["base_model"]["family"], "sd1");
    EXPECT_EQ(m["loras"][0]["base_model"]["from"], "ss_base_model_version = sd_v1");
}
