#include "multilora/world/shipped_detector.h"

#include <filesystem>

#include "multilora/io/atomic_file.h"
#include "multilora/io/sha256.h"
#include "multilora/pipeline/model_loader.h"
#include "multilora/util/error.h"

namespace fs = std::filesystem;

namespace multilora::world {

namespace {
const char kTableStart[] = "\n| concept";
}

std::string train_shipped_detector(const std::string& out, bool quick, ElementDetector& detector,
                                   const std::function<void(const DetectorStatus&)>& on_step) {
    DetectorTraining t;
    int held_out = 400;  // 200 with the concept: a rate near 98% is then known to about ±2 points
    if (quick) t.steps = 10, t.batch = 8, held_out = 4;
    pipeline::LoadOptions load;
    load.model_path = (fs::path(out) / "world-sd15.safetensors").string();
    auto sd = pipeline::load_stable_diffusion(load);
    detector.train(t, sd.vae.get(), on_step);
    // Measured as shipped: saved (float16), then read back.
    const std::string path = (fs::path(out) / "detector.safetensors").string();
    detector.save(path, {{"steps", std::to_string(t.steps)}, {"seed", std::to_string(t.seed)},
                         {"world_model_sha256", io::sha256_file_hex(load.model_path)}});
    detector = ElementDetector::load(path);
    const std::string table = evaluate_detector(detector, sd.vae.get(), held_out, t.seed + 1000).markdown();
    io::write_file_atomic((fs::path(out) / "detector.md").string(),
                          "# The world's element detector\n\n" + std::to_string(t.steps) + " steps of " +
                              std::to_string(t.batch) + " images (seed " + std::to_string(t.seed) + "); " +
                              std::to_string(held_out) +
                              " held-out scenes per concept from another seed stream, half with the concept.\n\n" + table);
    return table;
}

std::string read_shipped_detector(const std::string& out, ElementDetector& detector) {
    const fs::path path = fs::path(out) / "detector.safetensors", table = fs::path(out) / "detector.md";
    if (!fs::exists(path) || !fs::exists(table))
        throw UsageError(out + " has no detector to keep: " + path.string() + " or " + table.string() +
                         " is missing (add --evidence-only to train one)");
    detector = ElementDetector::load(path.string());
    const std::string md = io::read_file(table.string());
    const size_t start = md.find(kTableStart);
    if (start == std::string::npos) throw UsageError(table.string() + " holds no accuracy table (add --evidence-only to redo it)");
    return md.substr(start + 1);
}

}  // namespace multilora::world
