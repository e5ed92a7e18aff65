// A resumable training state in one file (libtorch's archive, written atomically): the trained tensors by
// name, the optimizer's state, the losses of the steps done, and a fingerprint of the settings. A run that
// loads it continues where it stopped, to the same result as an uninterrupted run, as long as each step
// draws its randomness from a generator seeded by the step (train::step_generator).
#pragma once

#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace torch::optim {
class Optimizer;
}

namespace multilora::train {

// The steps a checkpoint holds: their losses, and the seconds the training had run when it was written.
struct TrainingProgress {
    std::vector<double> losses;
    double seconds = 0;
};

struct TrainingCheckpoint {
    std::string path;
    std::string fingerprint;  // the settings; a checkpoint made with others is refused

    void save(const std::map<std::string, at::Tensor>& tensors, const torch::optim::Optimizer& opt,
              const TrainingProgress& progress) const;

    // Copies the checkpoint's tensors into `tensors` (same names and shapes; no gradient recorded), restores
    // the optimizer's state and returns the steps done. Throws UsageError when the fingerprint differs (naming
    // the checkpoint's settings), RuntimeError when a name is missing or reshaped.
    TrainingProgress restore(const std::map<std::string, at::Tensor>& tensors, torch::optim::Optimizer& opt) const;

private:
    struct State {
        std::map<std::string, at::Tensor> tensors;  // the names `names` asked for
        TrainingProgress progress;
    };
    State load(const std::vector<std::string>& names, torch::optim::Optimizer& opt) const;
};

}  // namespace multilora::train
