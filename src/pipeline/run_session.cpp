#include "multilora/pipeline/run_session.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <numeric>

#include "multilora/compose/registry.h"
#include "multilora/pipeline/file_hashes.h"
#include "multilora/pipeline/mixed_methods.h"
#include "multilora/sampling/scheduler.h"
#include "multilora/util/clock.h"
#include "multilora/util/error.h"

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

namespace {

// Puts the adapters back on the base weights (and drops an image map) when a generation ends, also after an error.
struct ClearAdapters {
    lora::AdapterSet* set;
    ~ClearAdapters() {
        if (set) set->clear();
    }
};

// The run's method arguments, or the method's defaults when it gave none.
compose::MethodArgs method_args(const SessionRun& r) {
    return r.args.params().empty() ? compose::default_args(r.method) : r.args;
}

// The run's method on its own slots, arguments, triggers and categories ("none": the base model, no adapters).
std::unique_ptr<compose::CompositionMethod> create_method(StableDiffusionModel& model, lora::AdapterSet* adapters,
                                                          const SessionRun& r) {
    compose::MethodSetup setup{model_parts(model), r.method == "none" ? nullptr : adapters, r.slots,
                               method_args(r), r.triggers, r.categories};
    return compose::registry().create(r.method, setup);
}

}  // namespace

SessionResult RunSession::run(const SessionRun& r) {
    std::unique_ptr<compose::CompositionMethod> method = create_method(model_, adapters_.get(), r);
    ClearAdapters clear{adapters_.get()};
    SessionResult out;
    out.generation = generate(model_, r.request, method.get(), r.on_step);
    out.composition = method->record();
    return out;
}

namespace {

// The runs' prompts encoded one image at a time (each with its own LoRAs in the text encoder), stacked as rows.
text::EncodedPrompts encode_each_image(compose::CompositionMethod& method, lora::AdapterSet* adapters,
                                       const std::vector<SessionRun>& runs, SessionResult& out) {
    std::vector<text::EncodedPrompts> each;
    for (size_t b = 0; b < runs.size(); ++b) {
        if (adapters) adapters->set_text_image(b);
        each.push_back(method.encode(runs[b].request.prompt_text()));
        out.image_prompt_cuts.push_back({each.back().prompt_truncated, each.back().negative_truncated});
    }
    return stack_image_prompts(each);
}

// Whether every run names runs[0]'s method and as many LoRAs.
bool one_method(const std::vector<SessionRun>& runs) {
    return std::all_of(runs.begin(), runs.end(), [&](const SessionRun& r) {
        return r.method == runs.front().method && r.slots.size() == runs.front().slots.size();
    });
}

// The runs as one request: runs[0]'s settings, every image's initial noise stacked.
GenerationRequest joint_request(const std::vector<SessionRun>& runs) {
    GenerationRequest request = runs.front().request;
    std::vector<at::Tensor> noises;
    for (const SessionRun& r : runs) {
        if (!r.request.initial_noise.defined() ||
            r.request.initial_noise.sizes() != runs.front().request.initial_noise.sizes())
            throw RuntimeError("images that share a forward need their initial noise, of one shape");
        noises.push_back(r.request.initial_noise);
        request.image_seeds.push_back(r.request.seed);  // euler-a: each run's step noise from its own seed
    }
    request.initial_noise = at::cat(noises, 0);
    request.num_images = static_cast<int>(noises.front().size(0) * static_cast<int64_t>(runs.size()));
    return request;
}

}  // namespace

SessionResult RunSession::run_images(const std::vector<SessionRun>& runs) {
    if (!one_method(runs)) return run_mixed(runs);
    const SessionRun& first = runs.front();
    const GenerationRequest request = joint_request(runs);
    const bool one_set = std::all_of(runs.begin(), runs.end(), [&](const SessionRun& r) {
        return r.slots == first.slots && r.request.prompt == first.request.prompt &&
               r.request.negative_prompt == first.request.negative_prompt;
    });
    if (one_set) {  // the same LoRAs and prompt: encoded once, as one run of several images
        SessionRun joint = first;
        joint.request = request;
        return run(joint);
    }
    if (!compose::registry().get(first.method).mixes_sets)
        throw RuntimeError("method " + first.method + " cannot run images of different LoRAs or prompts in one "
                           "generation (it reads more of its LoRAs than their composition slots)");
    lora::AdapterSet* adapters = first.method == "none" ? nullptr : adapters_.get();
    std::vector<int> composition(first.slots.size());
    std::iota(composition.begin(), composition.end(), 0);
    compose::MethodSetup setup{model_parts(model_), adapters, composition, method_args(first), {}, {}};
    ClearAdapters clear{adapters_.get()};
    if (adapters) {
        std::vector<std::vector<int>> image_slots;
        for (const SessionRun& r : runs) image_slots.push_back(r.slots);
        adapters->map_images(image_slots, compose::cfg_rows_per_latent(request.guidance_scale));
    }
    std::unique_ptr<compose::CompositionMethod> method = compose::registry().create(first.method, setup);
    SessionResult out;
    out.generation = generate(model_, request, method.get(), first.on_step, [&](compose::CompositionMethod& m) {
        return encode_each_image(m, adapters, runs, out);
    });
    out.composition = method->record();
    return out;
}

SessionResult RunSession::run_mixed(const std::vector<SessionRun>& runs) {
    std::vector<std::unique_ptr<compose::CompositionMethod>> methods;
    std::vector<compose::PromptText> texts;
    for (const SessionRun& r : runs) {
        if (!compose::registry().get(r.method).mixes_sets)
            throw RuntimeError("method " + r.method + " cannot share a UNet forward with other methods' images");
        methods.push_back(create_method(model_, adapters_.get(), r));
        texts.push_back(r.request.prompt_text());
    }
    const GenerationRequest request = joint_request(runs);
    ClearAdapters clear{adapters_.get()};
    MixedMethods mixed(model_parts(model_), adapters_.get(), std::move(methods));
    SessionResult out;
    out.generation = generate(model_, request, &mixed, runs.front().on_step,
                              [&](compose::CompositionMethod&) { return mixed.encode_images(texts); });
    for (size_t b = 0; b < mixed.images(); ++b) {
        out.image_prompt_cuts.push_back({mixed.image_prompts(b).prompt_truncated, mixed.image_prompts(b).negative_truncated});
        out.image_compositions.push_back(mixed.image(b).record());
    }
    out.composition = mixed.record();
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
