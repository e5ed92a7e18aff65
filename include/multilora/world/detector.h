// The world's element detector: a small convolutional classifier, trained by the project on freshly
// rendered scenes, that says for each category which of its concepts an image shows (or none), and whether
// the image is a scene of this world at all. It is the ground truth's eye: `evaluate --scorer world` counts
// the elements of a composition with it, and make-world's evidence is checked with it.
//
// Heads: one 4-way head per category (0 = no concept: generic content, or nothing; 1..3 = the category's
// concepts in order), and one in-world logit. Training images are renders with every category's concept
// drawn independently (half of them generic), augmented as a diffusion model's output differs from a render:
// small shifts, colour jitter, blur, noise, and round trips through the world's VAE. The in-world head's
// negatives are noise, smooth random colour fields and renders cut into shuffled patches.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "multilora/world/scene.h"

namespace multilora::models {
class AutoencoderKLImpl;
}

namespace multilora::world {

struct Verdict {
    ConceptChoice found = kGeneric;                // per category: the concept's index, -1 for none
    std::array<float, kCategories> confidence{};   // the winning class's probability, per category
    float in_world = 0;                            // probability that the image is a scene of this world
    bool is_in_world() const { return in_world >= 0.5f; }
};

struct DetectorTraining {
    int steps = 4000, batch = 48;
    double lr = 2e-3;
    double vae_share = 0.5;       // share of each batch's scenes sent through the VAE first
    double negative_share = 0.2;  // share of each batch that is not a scene (in-world negatives)
    uint64_t seed = 11;
};

struct DetectorStatus {
    int step = 0, total = 0;
    double loss = 0, step_seconds = 0;
};

// Held-out accuracy, per concept, on renders and on VAE round trips of the same renders.
struct ConceptAccuracy {
    std::string id, trigger;
    int positives = 0, negatives = 0;  // held-out images with and without the concept
    double render_accuracy = 0, vae_accuracy = 0;  // (TP + TN) / (positives + negatives)
    double render_recall = 0, vae_recall = 0;
    double render_false_positive = 0, vae_false_positive = 0;
};
struct DetectorReport {
    std::vector<ConceptAccuracy> concepts;
    double in_world_render = 0, in_world_vae = 0;  // share of held-out scenes judged in-world
    double negatives_rejected = 0;                 // share of held-out non-scenes judged not in-world
    std::string markdown() const;                  // the accuracy table
};

class ElementDetector {
public:
    ElementDetector();  // seeded-random weights; train() or load() before use
    ~ElementDetector();
    ElementDetector(ElementDetector&&) noexcept;
    ElementDetector& operator=(ElementDetector&&) noexcept;

    static ElementDetector load(const std::string& path);  // throws RuntimeError on a file that is not one
    void save(const std::string& path, const std::map<std::string, std::string>& metadata = {}) const;

    // Trains on fresh renders (the VAE, when given, makes the round trips); returns the per-step losses.
    std::vector<double> train(const DetectorTraining& t, models::AutoencoderKLImpl* vae,
                              const std::function<void(const DetectorStatus&)>& on_step);

    // images: [n, 3, kImageSize, kImageSize] in [-1, 1].
    std::vector<Verdict> detect(const at::Tensor& images) const;
    Verdict detect_rgb(const std::vector<uint8_t>& rgb, int width, int height) const;  // throws on a wrong size

    struct Net;  // the network, defined in detector.cpp

private:
    std::unique_ptr<Net> net_;
};

// Measures the detector on `per_concept` held-out scenes per concept (seeds disjoint from training's),
// as renders and, with a VAE, as VAE round trips.
DetectorReport evaluate_detector(const ElementDetector& d, models::AutoencoderKLImpl* vae, int per_concept, uint64_t seed);

}  // namespace multilora::world
