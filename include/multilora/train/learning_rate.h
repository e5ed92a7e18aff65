// Learning-rate schedules: the world's training phases (the full rate, then a tenth of it for the last
// quarter, so the weights settle on the hard cases) and train-lora's --lr-scheduler (kohya's names).
#pragma once

#include <string>

namespace torch::optim {
class AdamW;
}

namespace multilora::train {

// Sets each parameter group of `opt` to `lr`.
void set_learning_rate(torch::optim::AdamW& opt, double lr);

// Call at every step: at step steps·3/4 it sets each parameter group of `opt` to lr / 10.
void tenth_rate_for_last_quarter(torch::optim::AdamW& opt, double lr, int step, int steps);

enum class LrScheduler { Constant, Cosine };
LrScheduler parse_lr_scheduler(const std::string& text);  // UsageError naming the choices
const char* lr_scheduler_name(LrScheduler s);

// The rate of step `step` (0-based) of `steps`: `lr` throughout (constant), or diffusers' / kohya's cosine
// without warm-up, lr·½·(1 + cos(π·step/steps)), from lr at the first step towards 0 at the last.
double scheduled_rate(LrScheduler s, double lr, int step, int steps);

}  // namespace multilora::train
