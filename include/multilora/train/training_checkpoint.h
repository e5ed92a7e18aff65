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

struct TrainingCheckpoint {
    std::string path;
    std::string fingerprint;  // the settings; a checkpoint made with others is refused

    void save(const std::map<std::string, at::Tensor>& tensors, const torch::optim::Optimizer& opt,
              const std::vector<double>& losses) const;

    struct State {
        std::map<std::string, at::Tensor> tensors;  // the names `names` asked for
        std::vector<double> losses;
    };
    // Restores the optimizer's state and returns the tensors and losses. Throws UsageError when the
    // fingerprint differs (naming the checkpoint's settings), RuntimeError when a name is missing.
    State load(const std::vector<std::string>& names, torch::optim::Optimizer& opt) const;

    // Copies the checkpoint's tensors into `tensors` (same names and shapes; no gradient recorded) and
    // returns the losses: load() for a module's own parameters.
    std::vector<double> restore(const std::map<std::string, at::Tensor>& tensors, torch::optim::Optimizer& opt) const;
};

}  // namespace multilora::train
