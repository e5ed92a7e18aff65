// The element detector as make-world ships it beside the world's model: OUT/detector.safetensors and
// OUT/detector.md (the held-out accuracy table). Written and read here, in one place.
#pragma once

#include <functional>
#include <string>

#include "multilora/world/detector.h"

namespace multilora::world {

// Trains `detector` on OUT's model (its VAE makes the round trips), saves it in float16 with the model's
// SHA-256 (so that `evaluate --scorer world` refuses images of another world), reads it back, measures it as
// shipped on held-out scenes, writes detector.md and returns its accuracy table. `quick`: a smoke build's
// few steps and scenes.
std::string train_shipped_detector(const std::string& out, bool quick, ElementDetector& detector,
                                   const std::function<void(const DetectorStatus&)>& on_step);

// OUT's detector into `detector`, and the accuracy table of its detector.md (what --retrain-loras keeps).
// UsageError where either file is missing or detector.md holds no table.
std::string read_shipped_detector(const std::string& out, ElementDetector& detector);

}  // namespace multilora::world
