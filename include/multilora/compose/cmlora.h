// CMLoRA's schedules (arXiv 2502.04923; Yqcca/CMLoRA 5e79e41, LoRA_Cache/pipelines/stable_diffusion/
// pipeline_offline.py), as pure functions for tests.
#pragma once

#include <vector>

namespace multilora::compose::cmlora {

// The cache-refresh steps of a run of `steps`: every `interval` steps from 0 (interval >= 1), or, for
// interval 0, the code's non-uniform list: every 2 steps up to 0.375 T, every 3 up to 0.875 T, every 2 after.
std::vector<int> refresh_steps(int interval, int steps);

// The dominant LoRA's weight and the others' before the mean over N: w_n = N / (2N − 1.5), w_d = (N − 0.5)·w_n.
struct Weights {
    double dominant, other;
};
Weights weights(int n);

// The per-step state of the offline pipeline. `real` LoRAs (character, clothing, style, object, in
// composition order) come first, then `background` ones. At a refresh step the dominant advances; while
// there is no background or the step is at most `phase_step`, the new dominant's cache is dropped (a full
// pass); later, the code's refresh assigns into a copy and drops nothing. Before `phase_step` the dominant
// cycles over the real LoRAs, after it over indices 1..R (the background included, the first LoRA not).
struct StepPlan {
    int dominant = 0;  // index into the ordered LoRAs
    int refresh = -1;  // the LoRA whose cache is dropped at this step (-1: none)
};
class Rotation {
public:
    Rotation(int real, int background, int phase_step) : real_(real), background_(background), phase_(phase_step) {}
    StepPlan step(int i, bool refresh_step);

private:
    int real_, background_, phase_;
    int indicator_ = 0;
};

}  // namespace multilora::compose::cmlora
