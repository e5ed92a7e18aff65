#include "multilora/train/training_checkpoint.h"

#include <torch/torch.h>

#include <filesystem>

#include "multilora/util/error.h"

namespace fs = std::filesystem;

namespace multilora::train {

void TrainingCheckpoint::save(const std::map<std::string, at::Tensor>& tensors, const torch::optim::Optimizer& opt,
                              const TrainingProgress& progress) const {
    torch::serialize::OutputArchive archive;
    for (const auto& [name, t] : tensors) archive.write("factor/" + name, t.detach());
    archive.write("losses", torch::tensor(progress.losses, at::kDouble));
    archive.write("seconds", torch::full({}, progress.seconds, at::kDouble));
    archive.write("fingerprint", c10::IValue(fingerprint));
    torch::serialize::OutputArchive opt_archive;
    opt.save(opt_archive);
    archive.write("optimizer", opt_archive);
    const std::string tmp = path + ".tmp";
    archive.save_to(tmp);
    fs::rename(tmp, path);
}

TrainingCheckpoint::State TrainingCheckpoint::load(const std::vector<std::string>& names, torch::optim::Optimizer& opt) const {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    c10::IValue fp;
    archive.read("fingerprint", fp);
    if (fp.toStringRef() != fingerprint)
        throw UsageError("checkpoint " + path + " was made with other settings (" + fp.toStringRef() +
                         "); remove it or train with those settings");
    State state;
    for (const std::string& name : names) {
        at::Tensor value;
        if (!archive.try_read("factor/" + name, value)) throw RuntimeError("checkpoint " + path + " lacks " + name);
        state.tensors[name] = value;
    }
    torch::serialize::InputArchive opt_archive;
    archive.read("optimizer", opt_archive);
    opt.load(opt_archive);
    at::Tensor losses, seconds;
    archive.read("losses", losses);
    state.progress.losses.assign(losses.data_ptr<double>(), losses.data_ptr<double>() + losses.numel());
    if (archive.try_read("seconds", seconds)) state.progress.seconds = seconds.item<double>();  // older checkpoints: 0
    return state;
}

TrainingProgress TrainingCheckpoint::restore(const std::map<std::string, at::Tensor>& tensors, torch::optim::Optimizer& opt) const {
    std::vector<std::string> names;
    for (const auto& [name, t] : tensors) names.push_back(name);
    State state = load(names, opt);
    torch::NoGradGuard no_grad;
    for (const auto& [name, t] : tensors) {
        const at::Tensor& value = state.tensors.at(name);
        if (!value.sizes().equals(t.sizes())) throw RuntimeError("checkpoint " + path + ": " + name + " has another shape");
        t.copy_(value);
    }
    return state.progress;
}

}  // namespace multilora::train
