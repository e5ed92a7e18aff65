// make-world --quick, the CI smoke build of the trained world: every phase runs, its losses fall, and the
// files it writes load through the ordinary loading code.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "multilora/io/png_writer.h"
#include "multilora/io/sha256.h"
#include "multilora/lora/lora_file.h"
#include "multilora/pipeline/model_loader.h"
#include "multilora/world/world_training.h"
#include "test_support.h"

using namespace multilora;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

double mean(const json& v, size_t from, size_t to) {
    double s = 0;
    for (size_t i = from; i < to; ++i) s += v.at(i).get<double>();
    return s / static_cast<double>(to - from);
}

}  // namespace

TEST(WorldMake, QuickBuildLearnsAndItsFilesLoad) {
    const fs::path dir = test::make_temp_dir("world");
    const fs::path out = dir / "w";
    auto r = test::run_multilora("make-world --quick --out " + out.string());
    ASSERT_EQ(r.exit_code, 0) << r.output;

    // The VAE's and the UNet's losses fall (first ten steps against the last ten).
    const json t = json::parse(test::read_bytes(out / "training.json"));
    for (const char* phase : {"vae", "unet"}) {
        const json& l = t.at("losses").at(phase);
        ASSERT_GE(l.size(), 20u) << phase;
        EXPECT_LT(mean(l, l.size() - 10, l.size()), 0.8 * mean(l, 0, 10)) << phase;
    }

    // The model loads as any SD1.5 checkpoint, with the world's sizes and a measured scaling factor.
    pipeline::LoadOptions load;
    load.model_path = (out / "world-sd15.safetensors").string();
    auto model = pipeline::load_stable_diffusion(load);
    EXPECT_EQ(model.unet->config().block_out_channels, world::world_configs().unet.block_out_channels);
    EXPECT_NE(model.vae->config().scaling_factor, world::world_configs().vae.scaling_factor);

    // One kohya LoRA per concept, listed in the lora_info file.
    const json info = json::parse(test::read_bytes(out / "world_lora_info.json"));
    size_t listed = 0;
    for (const auto& [category, items] : info.items()) {
        for (const auto& item : items) {
            const auto file = lora::read_lora_file((out / "loras" / (item.at("id").get<std::string>() + ".safetensors")).string());
            EXPECT_EQ(file.format, "kohya");
            EXPECT_EQ(file.groups.front().rank(), 8);
            ++listed;
        }
    }
    EXPECT_EQ(listed, 15u);

    // Pictures and a README that names every file's SHA-256.
    int w = 0, h = 0;
    io::decode_png_rgb(test::read_bytes(out / "pictures" / "samples.png"), &w, &h);
    EXPECT_EQ(h, 256);
    io::decode_png_rgb(test::read_bytes(out / "pictures" / "losses.png"), &w, &h);
    EXPECT_EQ(w, 512);
    io::decode_png_rgb(test::read_bytes(out / "pictures" / "concepts.png"), &w, &h);
    EXPECT_EQ(h, 128 * 16);  // a row of generic scenes, then one per concept
    const std::string readme = test::read_bytes(out / "README.md");
    EXPECT_NE(readme.find(io::sha256_file_hex((out / "world-sd15.safetensors").string())), std::string::npos);
    EXPECT_NE(readme.find(io::sha256_file_hex((out / "detector.safetensors").string())), std::string::npos);
    // The LoRA check and the detector's accuracy table, a row per concept each.
    EXPECT_NE(readme.find("## Does each LoRA draw its element?"), std::string::npos);
    EXPECT_NE(readme.find("| `background_3` | wavoo sea | 1 |"), std::string::npos) << readme;
    EXPECT_NE(readme.find("| `object_3` | shroomba | 2 / 2 |"), std::string::npos) << readme;
    EXPECT_NE(test::read_bytes(out / "world_check.md").find("| `character_1` | zorp | 1 |"), std::string::npos);

    // --evidence-only keeps the trained files and redoes the rest.
    const std::string model_sha = io::sha256_file_hex((out / "world-sd15.safetensors").string());
    // --check-seeds sets the LoRA check's images per concept, --quick or not.
    auto again = test::run_multilora("make-world --quick --evidence-only --check-seeds 2 --out " + out.string());
    ASSERT_EQ(again.exit_code, 0) << again.output;
    EXPECT_EQ(io::sha256_file_hex((out / "world-sd15.safetensors").string()), model_sha);
    EXPECT_NE(test::read_bytes(out / "world_check.md").find("| `character_1` | zorp | 2 |"), std::string::npos);
    auto incomplete = test::run_multilora("make-world --quick --evidence-only --out " + (dir / "nothing").string());
    EXPECT_EQ(incomplete.exit_code, 2) << incomplete.output;
    EXPECT_NE(incomplete.output.find("is not a complete world"), std::string::npos) << incomplete.output;
    EXPECT_NE(readme.find("| `object_2` | object | **rumbo apple**"), std::string::npos);

    // --retrain-loras trains every LoRA again on the model as shipped. The build trained them on the reloaded
    // float16 model too, so the files come out byte for byte the same; model and detector are kept.
    const auto sha_of = [&](const char* name) { return io::sha256_file_hex((out / name).string()); };
    const std::string lora_sha = sha_of("loras/object_1.safetensors"), detector_sha = sha_of("detector.safetensors");
    fs::remove(out / "loras" / "object_1.safetensors");
    auto missing_lora = test::run_multilora("make-world --quick --retrain-loras --out " + out.string());
    EXPECT_EQ(missing_lora.exit_code, 2) << missing_lora.output;  // read_world wants every LoRA, even to replace it
    std::ofstream(out / "loras" / "object_1.safetensors") << "not a LoRA";
    auto retrain = test::run_multilora("make-world --quick --retrain-loras --check-seeds 1 --out " + out.string());
    ASSERT_EQ(retrain.exit_code, 0) << retrain.output;
    EXPECT_EQ(sha_of("loras/object_1.safetensors"), lora_sha);
    EXPECT_EQ(sha_of("detector.safetensors"), detector_sha);
    EXPECT_EQ(sha_of("world-sd15.safetensors"), model_sha);
    EXPECT_NE(test::read_bytes(out / "README.md").find(detector_sha), std::string::npos);
    fs::remove(out / "detector.md");
    auto no_detector = test::run_multilora("make-world --quick --retrain-loras --out " + out.string());
    EXPECT_EQ(no_detector.exit_code, 2) << no_detector.output;
    EXPECT_NE(no_detector.output.find("has no detector to keep"), std::string::npos) << no_detector.output;
    EXPECT_EQ(sha_of("world-sd15.safetensors"), model_sha);

    // A LoRA composes with the model in generate.
    auto g = test::run_multilora("generate --model " + (out / "world-sd15.safetensors").string() + " --lora " +
                                 (out / "loras" / "character_1.safetensors").string() + " --lora " +
                                 (out / "loras" / "object_1.safetensors").string() +
                                 " --method composite --prompt \"zorp with a glint key\" --steps 3 --width 64 --height 64 --out " +
                                 (dir / "gen").string());
    EXPECT_EQ(g.exit_code, 0) << g.output;

    // configs/world-all.json plans every set of the world (3 characters, then one concept from each of k - 1
    // other categories: 36, 162, 324 and 243 sets for k = 2..5) with every method; K-LoRA on k = 2 only.
    std::string config = test::read_bytes(fs::path(ML_SOURCE_DIR) / "configs" / "world-all.json");
    for (size_t at; (at = config.find("../models/world/")) != std::string::npos;) config.replace(at, 16, out.string() + "/");
    std::ofstream(dir / "world-all.json") << config;
    auto plan = test::run_multilora("batch " + (dir / "world-all.json").string() + " --dry-run --no-measure");
    EXPECT_EQ(plan.exit_code, 0) << plan.output;
    EXPECT_NE(plan.output.find("765 sets, 6156 images"), std::string::npos) << plan.output;
}
