// A LoRA's weight as a function of the denoising progress: keyframes of weight at a fraction of the run
// (`--lora FILE:0.8@0,0.2@0.6`), read with ComfyUI's hook-keyframe rule (step: the last keyframe at or
// before the point holds) or sd-webui-loractl's (linear: interpolated between the neighbouring keyframes).
// Step i of a run of N steps sits at fraction i/N.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace multilora::lora {

struct WeightKeyframe {
    double weight = 1.0;
    double at = 0.0;  // fraction of the denoising, 0..1
};

enum class Interpolation { Step, Linear };

struct WeightSchedule {
    std::vector<WeightKeyframe> keys;  // strictly increasing `at`; empty: the constant spec weight
    Interpolation interpolation = Interpolation::Step;

    bool empty() const { return keys.empty(); }
    // The weight at `fraction`: before the first keyframe its weight, after the last the last one's.
    double at(double fraction) const;
    // The weight at step `step` of `steps` (fraction step/steps).
    double at_step(int step, int steps) const;
    // "0.8@0,0.2@0.6" (and ":linear" when linear): the spec's own text.
    std::string text() const;
    nlohmann::json to_json() const;
};

// Parses "W@F,W@F,...[:step|:linear]"; throws UsageError naming `where` for a bad keyframe, a fraction
// outside 0..1 or fractions that do not increase.
WeightSchedule parse_weight_schedule(const std::string& text, const std::string& where);

// Whether a --lora suffix is a keyframe list (it has '@').
bool looks_like_schedule(const std::string& text);

}  // namespace multilora::lora
