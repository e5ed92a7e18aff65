#include "build_progress.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "multilora/io/atomic_file.h"
#include "multilora/io/safetensors.h"
#include "multilora/models/vae.h"
#include "multilora/models/weight_loading.h"
#include "multilora/util/error.h"

namespace fs = std::filesystem;

namespace multilora::world {

namespace {

std::string vae_path(const std::string& out) { return (fs::path(out) / "make-world.vae.safetensors").string(); }

std::string describe(uint64_t seed, bool quick) { return "--seed " + std::to_string(seed) + (quick ? " --quick" : ""); }

std::string checkpoint_path(const std::string& out, const std::string& phase) {
    return (fs::path(out) / ("make-world." + phase + ".checkpoint")).string();
}

}  // namespace

std::string BuildProgress::record_path(const std::string& out) { return (fs::path(out) / "make-world.progress.json").string(); }

BuildProgress::BuildProgress(const MakeWorldOptions& o, const std::string& plan, MakeWorldResult& r)
    : out_(o.out), plan_(plan), seed_(o.seed), quick_(o.quick) {
    const std::string path = record_path(out_);
    if (!fs::exists(path)) {
        remove();
        write(r);  // from now on OUT holds a build in progress, whatever stops it
        return;
    }
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(io::read_file(path));
        done_ = j.at("done").get<std::vector<std::string>>();
        r.losses = j.at("losses").get<std::map<std::string, std::vector<double>>>();
        r.seconds = j.at("seconds").get<std::map<std::string, double>>();
    } catch (const nlohmann::json::exception& e) {
        throw UsageError(path + " is not a make-world record (" + e.what() + "); remove it to build afresh");
    }
    // Hours of training are not thrown away by a forgotten flag.
    if (!o.resume)
        throw UsageError(out_ + " holds an interrupted make-world (" + std::to_string(done_.size()) +
                         " phases done); add --resume to continue it, or remove " + path + " to build afresh");
    const std::string recorded = describe(j.value("seed", uint64_t{0}), j.value("quick", false));
    if (recorded != describe(seed_, quick_))
        throw UsageError(out_ + " holds an interrupted make-world " + recorded + "; resume it with the same options, or remove " + path + " to build afresh");
    if (j.value("plan", std::string()) != plan_)
        throw UsageError(out_ + " holds an interrupted make-world with other training settings (an older multilora?); remove " + path + " to build afresh");
    resumed_ = true;
}

bool BuildProgress::done(const std::string& phase) const { return std::find(done_.begin(), done_.end(), phase) != done_.end(); }

void BuildProgress::finish(const std::string& phase, const MakeWorldResult& r) {
    if (!done(phase)) done_.push_back(phase);
    write(r);
}

void BuildProgress::write(const MakeWorldResult& r) const {
    const nlohmann::json j = {{"seed", seed_}, {"quick", quick_}, {"plan", plan_}, {"done", done_}, {"losses", r.losses}, {"seconds", r.seconds}};
    io::write_file_atomic(record_path(out_), j.dump() + "\n");
}

PhaseCheckpoint BuildProgress::checkpoint(const std::string& phase, int every) const {
    return {checkpoint_path(out_, phase), describe(seed_, quick_) + " " + phase + "\n" + plan_, every};
}

void BuildProgress::save_vae(models::AutoencoderKLImpl& vae) const {
    char scaling[32];
    std::snprintf(scaling, sizeof scaling, "%.17g", vae.config().scaling_factor);
    io::save_safetensors(vae_path(out_), models::named_tensors(vae), {{"scaling_factor", scaling}});
}

void BuildProgress::load_vae(models::AutoencoderKLImpl& vae) const {
    const std::string path = vae_path(out_);
    if (!fs::exists(path)) throw UsageError(out_ + ": the interrupted build's VAE (" + path + ") is missing; remove " + record_path(out_) + " to build afresh");
    const auto file = io::SafetensorsFile::open(path);
    torch::NoGradGuard no_grad;
    for (auto& [name, tensor] : models::named_tensors(vae)) {
        if (!file->contains(name)) throw UsageError(path + " lacks " + name + "; remove " + record_path(out_) + " to build afresh");
        tensor.copy_(file->tensor(name));
        tensor.requires_grad_(false);
    }
    vae.set_scaling_factor(std::stod(file->metadata().at("scaling_factor")));
}

void BuildProgress::remove() const {
    fs::remove(record_path(out_));
    fs::remove(vae_path(out_));
    for (const char* phase : {"vae", "unet", "decoder"}) fs::remove(checkpoint_path(out_, phase));
}

}  // namespace multilora::world
