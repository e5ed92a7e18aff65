// `multilora detect`: the trained world's element detector (world/detector.h; make-world trains it).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/commands.h"
#include "multilora/io/atomic_file.h"
#include "multilora/io/png_writer.h"
#include "multilora/util/error.h"
#include "multilora/world/detector.h"

namespace fs = std::filesystem;

namespace multilora::cli {
namespace {

struct DetectorOptions {
    std::string world = "models/world";
    std::string detector;  // default: WORLD/detector.safetensors
    std::vector<std::string> images;
    std::string path() const { return detector.empty() ? (fs::path(world) / "detector.safetensors").string() : detector; }
};

void run_detect(const DetectorOptions& o) {
    if (!fs::exists(o.path())) throw UsageError(o.path() + " does not exist (make-world writes it; --detector names another)");
    const world::ElementDetector detector = world::ElementDetector::load(o.path());
    for (const std::string& image : o.images) {
        if (!fs::is_regular_file(image)) throw UsageError(image + " is not a file");
        int w = 0, h = 0;
        const std::vector<uint8_t> rgb = io::decode_png_rgb(io::read_file(image), &w, &h);
        if (w != world::kImageSize || h != world::kImageSize)
            throw UsageError(image + " is " + std::to_string(w) + "x" + std::to_string(h) + "; the world's images are " +
                             std::to_string(world::kImageSize) + "x" + std::to_string(world::kImageSize));
        const world::Verdict v = detector.detect_rgb(rgb, w, h);
        nlohmann::json found = nlohmann::json::array();
        for (int k = 0; k < world::kCategories; ++k)
            if (v.found[k] >= 0) found.push_back(world::concepts_in(static_cast<world::Category>(k)).at(v.found[k])->id);
        nlohmann::json j = {{"image", image}, {"found", found}, {"in_world", v.is_in_world()}, {"in_world_probability", v.in_world},
                            {"confidence", v.confidence}};
        std::printf("%s\n", j.dump().c_str());
    }
}

}  // namespace

Command add_detect_command(CLI::App& app) {
    auto o = std::make_shared<DetectorOptions>();
    CLI::App* sub = app.add_subcommand("detect", "Say which of the trained world's concepts each image shows (a JSON line per image)");
    sub->add_option("images", o->images, "PNG images of the world's size")->required();
    sub->add_option("--world", o->world, "The world's folder")->capture_default_str();
    sub->add_option("--detector", o->detector, "Detector file (default: WORLD/detector.safetensors)");
    sub->footer("Each line: {\"image\", \"found\": [concept ids], \"in_world\", \"in_world_probability\", \"confidence\": [per category]}.\n"
                "Examples:\n"
                "  multilora detect out/demo.png\n"
                "  multilora detect --world models/world out/world-all/*/*.png");
    return [o] { run_detect(*o); };
}

}  // namespace multilora::cli
