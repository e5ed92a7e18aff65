#include "multilora/pipeline/run_session.h"

#include <torch/torch.h>

#include <chrono>

#include "multilora/compose/registry.h"
#include "multilora/pipeline/file_hashes.h"
#include "multilora/sampling/scheduler.h"
#include "multilora/util/clock.h"

namespace multilora::pipeline {

RunSession::RunSession(const SessionOptions& options) : options_(options) {
    const auto t0 = std::chrono::steady_clock::now();
    model_ = load_stable_diffusion(options.load);
    if (!options.loras.empty())
        adapters_ = std::make_unique<lora::AdapterSet>(*model_.unet, *model_.text_encoder, model_.unet->config().to_json(),
                                                       options.loras, options.lora_scale, model_.dtype, model_.device);
    load_seconds_ = seconds_since(t0);
}

RunSession::~RunSession() = default;

SessionResult RunSession::run(const SessionRun& r) {
    compose::MethodSetup setup{model_parts(model_), r.method == "none" ? nullptr : adapters_.get(), r.slots,
                               r.args.params().empty() ? compose::default_args(r.method) : r.args, r.triggers,
                               r.categories};
    std::unique_ptr<compose::CompositionMethod> method = compose::registry().create(r.method, setup);
    struct ClearAdapters {
        lora::AdapterSet* set;
        ~ClearAdapters() {
            if (set) set->clear();
        }
    } clear{adapters_.get()};
    SessionResult out;
    out.generation = generate(model_, r.request, method.get(), r.on_step);
    out.composition = method->record();
    return out;
}

nlohmann::json RunSession::model_record(const std::string& scheduler_class_name) const {
    if (model_files_.is_null()) model_files_ = hashed_files(model_.model_files);
    nlohmann::json j = {
        {"layout", model_.layout},
        {"files", model_files_},
        {"vae_files", hashed_files(model_.vae_files)},
        {"tokenizer", model_.tokenizer_source},
        {"unused_tensor_count", model_.unused_tensors.size()},
        {"unet_config", model_.unet->config().to_json()},
        {"vae_config", model_.vae->config().to_json()},
        {"text_encoder_config", model_.text_encoder->config().to_json()},
        {"scheduler_config", model_.scheduler_config},
        {"model_config", model_.model_config.empty() ? nlohmann::json(nullptr) : nlohmann::json(model_.model_config)},
        {"embeddings", model_.embeddings},
    };
    if (!scheduler_class_name.empty()) j["scheduler_class"] = scheduler_class_name;
    return j;
}

std::string RunSession::model_hash() const {
    if (model_files_.is_null()) model_files_ = hashed_files(model_.model_files);
    return model_files_.empty() ? std::string(64, '0') : model_files_[0]["sha256"].get<std::string>();
}

nlohmann::json RunSession::lora_record(int slot) const {
    const lora::LoraSummary& summary = adapters_->summaries().at(slot);
    auto it = lora_sha_.find(slot);
    if (it == lora_sha_.end()) it = lora_sha_.emplace(slot, file_sha256(summary.path)).first;
    nlohmann::json j = summary.to_json();
    j["sha256"] = it->second;
    return j;
}

std::string scheduler_class(const std::string& scheduler, const nlohmann::json& scheduler_config) {
    return sampling::make_scheduler(scheduler, scheduler_config)->diffusers_class();
}

}  // namespace multilora::pipeline
