// Pictures that show whether the world learnt: a grid of base-model samples, and per category a sheet
// with, for each concept, samples made with its LoRA and trigger above the same seeds and prompt without
// the LoRA; and the training loss curves as a PNG plot. All made through the normal loading and
// generation code from the files make-world wrote.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace multilora::world {

class ElementDetector;

struct EvidenceOptions {
    int steps = 30;
    double guidance_scale = 5.0;
    int seeds = 4;          // columns
    uint64_t first_seed = 1000;  // seeds not used in training
};

struct EvidenceFiles {
    std::string base_grid;                // samples.png
    std::vector<std::string> lora_sheets;  // loras-<category>.png
    std::string loss_plot;                // losses.png
};

// Reads WORLD/world-sd15.safetensors, WORLD/loras/ and WORLD/training.json; writes PNGs into `out_dir`.
// `on_image` is called after each generated image (done, total).
EvidenceFiles write_evidence(const std::string& world_dir, const std::string& out_dir, const EvidenceOptions& options,
                             const std::function<void(int, int)>& on_image);

// What the training data looks like: a row of generic scenes, then a row per concept (renders, not samples),
// each tile shown at 128 px. Returns `path`.
std::string write_concept_sheet(const std::string& path, int seeds = 6, uint64_t first_seed = 500);

// Issue 12's measurement, on seeds not used in training: for each concept, the share of images made with its
// LoRA and its trigger in which the detector finds the concept, and the share of the same prompts and seeds
// without the LoRA; and the share of the base model's generic images the detector calls in-world.
struct LoraCheck {
    std::string id, trigger;
    int images = 0;
    double with_lora = 0, without_lora = 0;
};
struct WorldCheck {
    std::vector<LoraCheck> loras;
    int base_images = 0;
    double base_in_world = 0;
    std::string markdown() const;
};
WorldCheck check_world(const std::string& world_dir, const ElementDetector& detector, const EvidenceOptions& options,
                       int seeds_per_concept, const std::function<void(int, int)>& on_image);

// The loss curves (log-scale loss against step, each curve scaled to its own length) as a 512x512 PNG, with
// tick labels; colours in `curves` order: vae red, unet blue, LoRAs grey.
void write_loss_plot(const std::string& path, const std::map<std::string, std::vector<double>>& curves);

}  // namespace multilora::world
