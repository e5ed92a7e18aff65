// Prompt-aware LoRA weights and W-Switch's schedule (arXiv 2606.03792; code
// GeorgeTsoumplekas/PromptAware-Multi-LoRA-Composition f148887, benchmark_multi_loras.py, callbacks.py).
// A LoRA's weight comes from the CLIP text encoder: E(x) is the mean over all 77 positions (padding
// included) of the last hidden state of x, and cos is the cosine of two such means.
//  - ablation (W-Switch): vᵢ = max(1 − cos(E(P), E(P without LoRA i's triggers)), 0.05); 2 when fewer than
//    5 characters remain; 0.1 for a LoRA without triggers.
//  - triggers (W-Composite): vᵢ = cos(E(P), E(LoRA i's triggers joined with ", ")); 0 without triggers.
// Both are divided by their sum (when it is positive).
#pragma once

#include <string>
#include <vector>

#include "multilora/compose/method.h"

namespace multilora::compose::prompt_aware {

// The prompt with every case-insensitive whole-phrase occurrence of each trigger removed, then the
// reference's cleanup: ", ," runs (one pass) to ", ", whitespace runs to one space, trimmed, outer commas
// stripped, trimmed.
std::string strip_triggers(const std::string& prompt, const std::vector<std::string>& triggers);

// v / Σv when Σv > 0; v unchanged otherwise.
std::vector<double> normalized(std::vector<double> v);

// The text encoder's view of the prompt for these weights (the encoder as it stands: the methods run it on
// base weights).
double prompt_cosine(const ModelParts& model, const std::string& a, const std::string& b);

std::vector<double> ablation_weights(const ModelParts& model, const std::string& prompt,
                                     const std::vector<std::vector<std::string>>& triggers);
std::vector<double> trigger_weights(const ModelParts& model, const std::string& prompt,
                                    const std::vector<std::vector<std::string>>& triggers);

// W-Switch's blocks: max(1, round-half-even(τ·wᵢ / max w)).
std::vector<int> block_sizes(const std::vector<double>& weights, int tau);

// The block schedule: LoRA indices cycling through their blocks, cut to `steps`, the last `reserved`
// entries overwritten with `tail`.
std::vector<int> block_schedule(const std::vector<int>& blocks, int steps, int reserved, int tail);

// The LoRA (index) active at `step`: entry `step` of the schedule, or, as the reference's end-of-step
// callback has it, the first LoRA at step 0 and entry step − 1 after.
int active_at(const std::vector<int>& schedule, int step, bool reference);

}  // namespace multilora::compose::prompt_aware
