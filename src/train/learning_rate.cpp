#include "multilora/train/learning_rate.h"

#include <torch/torch.h>

#include <cmath>

#include "multilora/util/error.h"

namespace multilora::train {

void set_learning_rate(torch::optim::AdamW& opt, double lr) {
    for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
}

void tenth_rate_for_last_quarter(torch::optim::AdamW& opt, double lr, int step, int steps) {
    if (step == steps * 3 / 4) set_learning_rate(opt, lr / 10);
}

LrScheduler parse_lr_scheduler(const std::string& text) {
    if (text == "constant") return LrScheduler::Constant;
    if (text == "cosine") return LrScheduler::Cosine;
    throw UsageError("--lr-scheduler must be constant or cosine, not '" + text + "'");
}

const char* lr_scheduler_name(LrScheduler s) { return s == LrScheduler::Cosine ? "cosine" : "constant"; }

double scheduled_rate(LrScheduler s, double lr, int step, int steps) {
    if (s == LrScheduler::Constant || steps <= 0) return lr;
    return lr * 0.5 * (1.0 + std::cos(M_PI * static_cast<double>(step) / static_cast<double>(steps)));
}

}  // namespace multilora::train
