// Switch's schedule (arXiv 2402.16843, §3): which LoRA is active at each step.
#pragma once

#include <string>

namespace multilora::compose {

enum class SwitchSchedule { Paper, Reference };

SwitchSchedule parse_switch_schedule(const std::string& name);  // UsageError when unknown
std::string switch_schedule_name(SwitchSchedule s);

// The LoRA active at 0-based step `step` for k LoRAs and interval τ.
//  paper:     ⌊(t mod kτ) / τ⌋ — every LoRA gets exactly τ steps in turn;
//  reference: the public code's order — LoRA 0 for steps 0..τ (τ+1 steps), then τ steps each, cycling.
int switch_active_lora(int step, int k, int interval, SwitchSchedule schedule);

}  // namespace multilora::compose
