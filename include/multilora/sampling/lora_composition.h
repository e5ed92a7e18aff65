// The three training-free LoRA composition methods of arXiv 2402.16843, as hooks into the denoising loop:
// how the text encoder is set up before prompts are encoded, and how each step's guided noise is formed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "multilora/pipeline/generation.h"

namespace multilora::lora {
class AdapterSet;
}

namespace multilora::sampling {

enum class CompositionMethod { None, Merge, Switch, Composite };
enum class SwitchSchedule { Paper, Reference };

CompositionMethod parse_method(const std::string& name);  // UsageError when unknown
std::string method_name(CompositionMethod m);
SwitchSchedule parse_switch_schedule(const std::string& name);
std::string switch_schedule_name(SwitchSchedule s);

struct CompositionSettings {
    CompositionMethod method = CompositionMethod::None;
    int switch_interval = 5;  // τ
    SwitchSchedule switch_schedule = SwitchSchedule::Paper;
    // Composite: most UNet batch rows per forward (0: all 2·k·n rows in one batch).
    int max_batch_rows = 0;
    // The AdapterSet slots that form the composition, in composition order (the first is Switch's first
    // LoRA). Empty: every slot, 0..count-1. Lets a batch attach all of its LoRAs once and compose subsets.
    std::vector<int> slots;
};

// The LoRA active at 0-based step `step` for k LoRAs and interval τ.
//  paper:     ⌊(t mod kτ) / τ⌋ — every LoRA gets exactly τ steps in turn;
//  reference: the public code's order — LoRA 0 for steps 0..τ (τ+1 steps), then τ steps each, cycling.
int switch_active_lora(int step, int k, int interval, SwitchSchedule schedule);

// Sets up a generation: returns the prompt encoder and the noise predictor for `generate`, and records
// what it did (for the manifest).
class LoraComposer {
public:
    LoraComposer(pipeline::StableDiffusionModel& model, lora::AdapterSet* adapters, CompositionSettings settings);

    pipeline::EncodedPrompts encode(const pipeline::GenerationRequest& request);
    at::Tensor predict(const pipeline::NoiseContext& ctx);

    // {method, settings, and for Switch the active LoRA of every step}.
    nlohmann::json record() const;

private:
    pipeline::StableDiffusionModel& model_;
    lora::AdapterSet* adapters_;
    CompositionSettings settings_;
    std::vector<int> slots_;  // the composition's slots (settings.slots, or 0..count-1)
    int k_ = 0;
    std::vector<int> switch_trace_;
    int last_switch_lora_ = -1;
};

}  // namespace multilora::sampling
