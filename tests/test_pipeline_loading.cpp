// Loading variants: a separate VAE (single file or folder), half-precision checkpoints, mismatched keys,
// long prompts.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "multilora/io/png_writer.h"
#include "multilora/io/safetensors.h"
#include "multilora/pipeline/model_loader.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace multilora;
using test::read_bytes;
using test::run_multilora;

namespace {

std::vector<uint8_t> pixels(const fs::path& png) {
    int w = 0, h = 0;
    return io::decode_png_rgb(read_bytes(png), &w, &h);
}

int max_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
    int m = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::abs(int(a[i]) - int(b[i])));
    return a.size() == b.size() ? m : 999;
}

std::string gen(const std::string& model, const fs::path& out, const std::string& name, const std::string& extra = "") {
    return "generate --threads 1 --no-progress --model " + model + " --prompt 'a lighthouse at dusk' --steps 4 --seed 8 " +
           "--width 64 --height 64 --out " + out.string() + " --name " + name + " " + extra;
}

// Copies the tiny single file's tensors, transformed by `fn` (return an undefined tensor to drop one).
std::string rewrite(const fs::path& dest, const std::function<std::pair<std::string, at::Tensor>(const std::string&, at::Tensor)>& fn,
                    bool keep_metadata = true) {
    auto src = io::SafetensorsFile::open(test::tiny_single_file());
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& n : src->names()) {
        auto [name, t] = fn(n, src->tensor(n));
        if (t.defined()) out.emplace_back(name, t);
    }
    io::save_safetensors(dest.string(), out, keep_metadata ? src->metadata() : std::map<std::string, std::string>{});
    return dest.string();
}

}  // namespace

TEST(Loading, SeparateVaeFileAndFolderGiveTheModelsOwnImage) {
    auto out = test::make_temp_dir("vae");
    ASSERT_EQ(run_multilora(gen(test::tiny_single_file(), out, "own")).exit_code, 0);
    // The VAE alone, in the layout of sd-vae-ft-mse's single file: LDM names without a prefix, no metadata.
    std::string vae_file = rewrite(out.parent_path() / (out.filename().string() + "-vae.safetensors"),
                                   [](const std::string& n, at::Tensor t) -> std::pair<std::string, at::Tensor> {
                                       const std::string p = "first_stage_model.";
                                       if (n.rfind(p, 0) != 0) return {n, at::Tensor()};
                                       return {n.substr(p.size()), t};
                                   },
                                   false);
    auto r = run_multilora(gen(test::tiny_single_file(), out, "vae-file", "--vae " + vae_file));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_multilora(gen(test::tiny_single_file(), out, "vae-folder", "--vae " + test::tiny_folder() + "/vae"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(pixels(out / "own.png"), pixels(out / "vae-file.png"));
    EXPECT_EQ(pixels(out / "own.png"), pixels(out / "vae-folder.png"));
    auto m = nlohmann::json::parse(read_bytes(out / "vae-file.json"));
    EXPECT_EQ(m["model"]["vae_files"][0]["path"], vae_file);
    EXPECT_EQ(m["model"]["vae_files"][0]["sha256"].get<std::string>().size(), 64u);
    // The checkpoint's own VAE tensors are counted as unused.
    EXPECT_GT(m["model"]["unused_tensor_count"].get<int>(), 0);
    fs::remove(vae_file);
}

TEST(Loading, HalfPrecisionWeightsAreConvertedWhileLoading) {
    auto out = test::make_temp_dir("fp16");
    std::string f16 = rewrite(out.parent_path() / (out.filename().string() + "-f16.safetensors"),
                              [](const std::string& n, at::Tensor t) -> std::pair<std::string, at::Tensor> {
                                  return {n, t.to(at::kHalf)};
                              });
    {
        auto file = io::SafetensorsFile::open(f16);
        EXPECT_EQ(file->info(file->names()[0]).dtype, "F16");
    }
    pipeline::LoadOptions opt;
    opt.model_path = f16;
    auto model = pipeline::load_stable_diffusion(opt);
    EXPECT_EQ(model.unet->conv_in->weight.scalar_type(), at::kFloat);
    ASSERT_EQ(run_multilora(gen(test::tiny_single_file(), out, "f32")).exit_code, 0);
    auto r = run_multilora(gen(f16, out, "f16"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // Rounding the weights to fp16 moves pixels a little, not a lot.
    EXPECT_LE(max_diff(pixels(out / "f32.png"), pixels(out / "f16.png")), 24);
    EXPECT_NE(pixels(out / "f32.png"), pixels(out / "f16.png"));
    fs::remove(f16);
}

TEST(Loading, MissingAndMismatchedTensorsAreNamed) {
    auto out = test::make_temp_dir("keys");
    std::string bad = rewrite(out.parent_path() / (out.filename().string() + "-bad.safetensors"),
                              [](const std::string& n, at::Tensor t) -> std::pair<std::string, at::Tensor> {
                                  if (n == "model.diffusion_model.out.2.bias") return {n, at::Tensor()};
                                  if (n == "model.diffusion_model.time_embed.0.bias") return {n, torch::zeros({7})};
                                  return {n, t};
                              });
    auto r = run_multilora(gen(bad, out, "x"));
    fs::remove(bad);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("conv_out.bias"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("time_embedding.linear_1.bias"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("[7]"), std::string::npos) << r.output;
    EXPECT_TRUE(fs::is_empty(out));
}

TEST(Loading, LongPromptsTruncateWithAWarningOrChunk) {
    auto out = test::make_temp_dir("long");
    std::string words;
    for (int i = 0; i < 90; ++i) words += "fox ";
    auto t = run_multilora("generate --threads 1 --no-progress --model " + test::tiny_single_file() + " --prompt '" +
                           words + "' --steps 2 --width 64 --height 64 --out " + out.string() + " --name t");
    ASSERT_EQ(t.exit_code, 0) << t.output;
    EXPECT_NE(t.output.find("truncated"), std::string::npos) << t.output;
    auto c = run_multilora("generate --threads 1 --no-progress --model " + test::tiny_single_file() + " --prompt '" +
                           words + "' --steps 2 --width 64 --height 64 --out " + out.string() + " --name c --long-prompt chunk");
    ASSERT_EQ(c.exit_code, 0) << c.output;
    EXPECT_EQ(c.output.find("truncated"), std::string::npos) << c.output;
    EXPECT_TRUE(nlohmann::json::parse(read_bytes(out / "t.json"))["prompt_truncated"].get<bool>());
    EXPECT_FALSE(nlohmann::json::parse(read_bytes(out / "c.json"))["prompt_truncated"].get<bool>());
    EXPECT_NE(pixels(out / "t.png"), pixels(out / "c.png"));
}
