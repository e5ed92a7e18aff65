// The learning-rate schedule the world's training phases share: the full rate, then a tenth of it for the
// last quarter of the steps, so the weights settle on the hard cases.
#pragma once

namespace torch::optim {
class AdamW;
}

namespace multilora::train {

// Call at every step: at step steps·3/4 it sets each parameter group of `opt` to lr / 10.
void tenth_rate_for_last_quarter(torch::optim::AdamW& opt, double lr, int step, int steps);

}  // namespace multilora::train
