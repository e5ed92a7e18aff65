// End to end on the tiny model, through the real binary.
#include <torch/torch.h>

#include <cmath>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "multilora/io/png_writer.h"
#include "multilora/io/safetensors.h"
#include "multilora/pipeline/generation.h"
#include "multilora/pipeline/model_loader.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace multilora;
using multilora::test::read_bytes;
using multilora::test::run_multilora;

namespace {

std::vector<uint8_t> pixels(const fs::path& png, int* w = nullptr, int* h = nullptr) {
    int ww = 0, hh = 0;
    auto px = io::decode_png_rgb(read_bytes(png), &ww, &hh);
    if (w) *w = ww;
    if (h) *h = hh;
    return px;
}

std::string gen_args(const std::string& model, const fs::path& out, const std::string& name, int seed,
                     const std::string& extra = "") {
    return "generate --threads 1 --no-progress --model " + model + " --prompt 'a red fox, watercolor' " +
           "--negative-prompt 'blurry' --steps 6 --seed " + std::to_string(seed) + " --width 64 --height 48 --out " +
           out.string() + " --name " + name + " " + extra;
}

}  // namespace

TEST(EndToEnd, BothLayoutsGiveTheSameImage) {
    auto out = test::make_temp_dir("e2e-layouts");
    auto a = run_multilora(gen_args(test::tiny_single_file(), out, "single", 3));
    ASSERT_EQ(a.exit_code, 0) << a.output;
    auto b = run_multilora(gen_args(test::tiny_folder(), out, "folder", 3));
    ASSERT_EQ(b.exit_code, 0) << b.output;
    int w = 0, h = 0;
    auto pa = pixels(out / "single.png", &w, &h);
    EXPECT_EQ(w, 64);
    EXPECT_EQ(h, 48);
    EXPECT_EQ(pa, pixels(out / "folder.png"));
    // The image is not flat: random weights still give structure.
    int64_t mn = 255, mx = 0;
    for (uint8_t v : pa) mn = std::min<int64_t>(mn, v), mx = std::max<int64_t>(mx, v);
    EXPECT_GT(mx - mn, 50);
}

TEST(EndToEnd, SameSeedIsByteIdenticalOtherSeedDiffers) {
    auto out = test::make_temp_dir("e2e-seeds");
    ASSERT_EQ(run_multilora(gen_args(test::tiny_single_file(), out, "a", 11)).exit_code, 0);
    ASSERT_EQ(run_multilora(gen_args(test::tiny_single_file(), out, "b", 11)).exit_code, 0);
    ASSERT_EQ(run_multilora(gen_args(test::tiny_single_file(), out, "c", 12)).exit_code, 0);
    EXPECT_EQ(read_bytes(out / "a.png"), read_bytes(out / "b.png"));
    EXPECT_NE(pixels(out / "a.png"), pixels(out / "c.png"));
}

TEST(EndToEnd, ManifestAndPngParameters) {
    auto out = test::make_temp_dir("e2e-manifest");
    auto r = run_multilora(gen_args(test::tiny_single_file(), out, "m", 5, "--scheduler euler --guidance-scale 5"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto m = nlohmann::json::parse(read_bytes(out / "m.json"));
    EXPECT_EQ(m["settings"]["seed"], 5);
    EXPECT_EQ(m["settings"]["scheduler"], "euler");
    EXPECT_EQ(m["settings"]["scheduler_class"], "EulerDiscreteScheduler");
    EXPECT_EQ(m["settings"]["steps"], 6);
    EXPECT_EQ(m["settings"]["threads"], 1);
    EXPECT_EQ(m["timings"]["steps_s"].size(), 6u);
    EXPECT_EQ(m["model"]["layout"], "ldm-single-file");
    EXPECT_EQ(m["model"]["files"][0]["sha256"].get<std::string>().size(), 64u);
    EXPECT_EQ(m["model"]["unused_tensor_count"], 0);
    EXPECT_TRUE(m["runtime"]["allocator"]["tuned"].get<bool>());
    EXPECT_EQ(m["outputs"][0]["path"], (out / "m.png").string());
    auto chunks = io::read_png_text_chunks(read_bytes(out / "m.png"));
    ASSERT_EQ(chunks.size(), 1u);
    EXPECT_EQ(chunks[0].first, "parameters");
    const std::string hash10 = m["model"]["files"][0]["sha256"].get<std::string>().substr(0, 10);
    EXPECT_EQ(chunks[0].second,
              "a red fox, watercolor\nNegative prompt: blurry\nSteps: 6, Sampler: Euler, CFG scale: 5, Seed: 5, "
              "Size: 64x48, Model hash: " + hash10 + ", Model: tiny-sd15, Version: multilora 0.1.0");
}

// The saved latents, decoded by the VAE in this process, give exactly the PNG's pixels.
TEST(EndToEnd, SavedLatentsRoundTrip) {
    auto out = test::make_temp_dir("e2e-latents");
    auto r = run_multilora(gen_args(test::tiny_folder(), out, "l", 9, "--save-latents"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto file = io::SafetensorsFile::open((out / "l.latents.safetensors").string());
    at::Tensor lat = file->tensor("latents");
    ASSERT_EQ(lat.sizes(), at::IntArrayRef({1, 4, 6, 8}));
    ASSERT_EQ(lat.scalar_type(), at::kFloat);
    pipeline::LoadOptions opt;
    opt.model_path = test::tiny_folder();
    auto model = pipeline::load_stable_diffusion(opt);
    c10::InferenceMode im;
    at::Tensor img = model.vae->decode(lat / model.vae->config().scaling_factor);
    auto rgb = pipeline::to_rgb8(img);
    EXPECT_EQ(rgb[0], pixels(out / "l.png"));
}

TEST(EndToEnd, SeveralImagesAndEveryScheduler) {
    auto out = test::make_temp_dir("e2e-sched");
    for (const char* s : {"dpmpp-2m", "dpmpp-2m-karras", "euler", "euler-a", "ddim"}) {
        auto r = run_multilora(gen_args(test::tiny_single_file(), out, s, 1, std::string("--scheduler ") + s));
        ASSERT_EQ(r.exit_code, 0) << s << r.output;
    }
    EXPECT_NE(pixels(out / "euler.png"), pixels(out / "euler-a.png"));
    auto r = run_multilora(gen_args(test::tiny_single_file(), out, "two", 1, "--num-images 2"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(fs::exists(out / "two-0.png"));
    EXPECT_TRUE(fs::exists(out / "two-1.png"));
    // The two images come from different rows of the same noise tensor.
    EXPECT_NE(pixels(out / "two-0.png"), pixels(out / "two-1.png"));
    // The first row of the batch is the single image of the same seed (the noise tensor's first row is the
    // same prefix of the randn stream); batched kernels may round differently, so allow 1/255.
    auto first = pixels(out / "two-0.png"), single = pixels(out / "dpmpp-2m.png");
    ASSERT_EQ(first.size(), single.size());
    int max_diff = 0;
    for (size_t i = 0; i < first.size(); ++i) max_diff = std::max(max_diff, std::abs(int(first[i]) - int(single[i])));
    EXPECT_LE(max_diff, 1);
}

TEST(EndToEnd, TokenizeSubcommand) {
    auto r = run_multilora("tokenize --prompt 'a photo of a cat'");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto ids = nlohmann::json::parse(r.output);
    ASSERT_EQ(ids.size(), 77u);
    std::vector<int> head(ids.begin(), ids.begin() + 8);
    EXPECT_EQ(head, (std::vector<int>{49406, 320, 1125, 539, 320, 2368, 49407, 49407}));
}

// A model with one NaN weight: the first step's latents are NaN. The guard stops the image with the step and
// the method named, and writes nothing; --allow-nan writes the (meaningless) image anyway.
TEST(EndToEnd, NanLatentsStopTheImageWithTheStepNamed) {
    auto out = test::make_temp_dir("e2e-nan");
    auto file = io::SafetensorsFile::open(test::tiny_single_file());
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& name : file->names()) {
        at::Tensor t = file->tensor(name).clone();
        if (name == "model.diffusion_model.input_blocks.0.0.weight") t.view(-1)[0] = NAN;
        tensors.emplace_back(name, t);
    }
    const std::string model = (out / "nan-model.safetensors").string();
    io::save_safetensors(model, tensors, file->metadata());
    auto r = run_multilora(gen_args(model, out / "images", "nan", 1));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("NaN or Inf after denoising step 1 of 6 (method none"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(out / "images" / "nan.png"));
    EXPECT_FALSE(fs::exists(out / "images" / "nan.json"));
    auto bf16 = run_multilora(gen_args(model, out / "images", "nan", 1, "--dtype bf16"));
    EXPECT_EQ(bf16.exit_code, 1) << bf16.output;
    EXPECT_NE(bf16.output.find("NaN or Inf after denoising step 1 of 6"), std::string::npos) << bf16.output;
    EXPECT_FALSE(fs::exists(out / "images" / "nan.png"));
    auto allowed = run_multilora(gen_args(model, out / "images", "nan", 1, "--allow-nan"));
    EXPECT_EQ(allowed.exit_code, 0) << allowed.output;
    EXPECT_TRUE(fs::exists(out / "images" / "nan.png"));
}
