#include "multilora/train/learning_rate.h"

#include <torch/torch.h>

namespace multilora::train {

void tenth_rate_for_last_quarter(torch::optim::AdamW& opt, double lr, int step, int steps) {
    if (step != steps * 3 / 4) return;
    for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr / 10);
}

}  // namespace multilora::train
