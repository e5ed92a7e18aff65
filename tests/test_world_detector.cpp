// The trained world's element detector, as shipped in models/world/: its held-out accuracy table recomputed,
// its in-world verdict, and `multilora detect` on files with known contents and on bad input.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <sstream>
#include <nlohmann/json.hpp>

#include "multilora/io/png_writer.h"
#include "multilora/models/vae.h"
#include "multilora/pipeline/model_loader.h"
#include "multilora/util/error.h"
#include "multilora/world/detector.h"
#include "test_support.h"

using namespace multilora;
namespace fs = std::filesystem;

namespace {

const fs::path kWorld = fs::path(ML_SOURCE_DIR) / "models" / "world";

void write_scene_png(const fs::path& path, uint64_t seed, const world::ConceptChoice& choice, int size = world::kImageSize) {
    const auto rgb = world::render_scene(world::sample_scene(seed, choice), size).to_rgb8();
    io::write_png(path.string(), rgb.data(), size, size);
}

// The JSON lines of a command's output.
std::vector<std::string> json_lines(const std::string& output) {
    std::vector<std::string> lines;
    std::istringstream in(output);
    for (std::string line; std::getline(in, line);)
        if (!line.empty() && line.front() == '{') lines.push_back(line);
    return lines;
}

}  // namespace

// models/world/detector.md is what make-world measured on the shipped detector: N held-out scenes per concept
// (N as the file states it; evaluate_detector's stream for seed 11 + 1000, half with the concept), as renders
// and as round trips through the world's VAE. Recomputed here, every rate must match the file's within 2
// points (a near-tie may fall the other way on another CPU's kernels).
TEST(WorldDetector, ShippedAccuracyTableIsWhatTheShippedDetectorMeasures) {
    const auto detector = world::ElementDetector::load((kWorld / "detector.safetensors").string());
    pipeline::LoadOptions load;
    load.model_path = (kWorld / "world-sd15.safetensors").string();
    auto sd = pipeline::load_stable_diffusion(load);
    const std::string table = test::read_bytes(kWorld / "detector.md");
    std::smatch count;
    ASSERT_TRUE(std::regex_search(table, count, std::regex("; (\\d+) held-out scenes per concept"))) << table;
    const int held_out = std::stoi(count[1]);
    ASSERT_GE(held_out, 400);
    const world::DetectorReport r = world::evaluate_detector(detector, sd.vae.get(), held_out, 11 + 1000);
    ASSERT_EQ(r.concepts.size(), 15u);
    for (const auto& c : r.concepts) {
        const size_t row = table.find("| `" + c.id + "` |");
        ASSERT_NE(row, std::string::npos) << c.id;
        std::istringstream cells(table.substr(row, table.find('\n', row) - row));
        std::vector<std::string> cell;
        for (std::string x; std::getline(cells, x, '|');) cell.push_back(x);
        ASSERT_GE(cell.size(), 6u) << c.id;
        EXPECT_EQ(c.positives, held_out / 2) << c.id;
        EXPECT_NEAR(100 * c.render_accuracy, std::stod(cell[4]), 2.0) << c.id;
        EXPECT_NEAR(100 * c.vae_accuracy, std::stod(cell[5]), 2.0) << c.id;
        // Issue 13's bounds: >= 98% on renders and >= 95% after a VAE round trip. The shipped detector meets
        // both for every concept on this host; the lowest are glint key's, 98.0% and 95.0%, on the bounds, so
        // they are checked a point under them (one point is 2 of 200 scenes that another CPU may flip).
        EXPECT_GE(c.render_accuracy, 0.97) << c.id;
        EXPECT_GE(c.vae_accuracy, 0.94) << c.id;
    }
    EXPECT_GE(r.in_world_render, 0.95);
    EXPECT_GE(r.negatives_rejected, 0.95);
}

TEST(WorldDetector, DetectNamesTheConceptsOfARender) {
    const fs::path dir = test::make_temp_dir("detect");
    // zorp in a blip hat on a starfall sky with a rumbo apple; and a generic scene (no concept at all).
    write_scene_png(dir / "composed.png", 90001, {0, 0, -1, 1, 1});
    write_scene_png(dir / "generic.png", 90002, world::kGeneric);
    auto r = test::run_multilora("detect --world " + kWorld.string() + " " + (dir / "composed.png").string() + " " +
                                 (dir / "generic.png").string());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto lines = json_lines(r.output);
    ASSERT_EQ(lines.size(), 2u) << r.output;
    const auto composed = nlohmann::json::parse(lines[0]), generic = nlohmann::json::parse(lines[1]);
    EXPECT_EQ(composed.at("found"), nlohmann::json({"character_1", "clothing_1", "background_2", "object_2"}));
    EXPECT_TRUE(composed.at("in_world").get<bool>());
    EXPECT_EQ(generic.at("found"), nlohmann::json::array());
    EXPECT_TRUE(generic.at("in_world").get<bool>());
}

TEST(WorldDetector, BadInputGetsAClearError) {
    const fs::path dir = test::make_temp_dir("detect-bad");
    write_scene_png(dir / "big.png", 1, world::kGeneric, 128);
    auto size = test::run_multilora("detect --world " + kWorld.string() + " " + (dir / "big.png").string());
    EXPECT_EQ(size.exit_code, 2);
    EXPECT_NE(size.output.find("is 128x128; the world's images are 64x64"), std::string::npos) << size.output;
    auto missing = test::run_multilora("detect --world " + (dir / "nowhere").string() + " " + (dir / "big.png").string());
    EXPECT_EQ(missing.exit_code, 2);
    EXPECT_NE(missing.output.find("does not exist"), std::string::npos) << missing.output;
    // A safetensors file that is not a detector (a LoRA) is refused by name.
    auto lora = test::run_multilora("detect --detector " + (kWorld / "loras" / "character_1.safetensors").string() + " " +
                                    (dir / "big.png").string());
    EXPECT_EQ(lora.exit_code, 1);
    EXPECT_NE(lora.output.find("is not a world detector"), std::string::npos) << lora.output;
    EXPECT_THROW(world::ElementDetector::load((kWorld / "loras" / "character_1.safetensors").string()), RuntimeError);
}
