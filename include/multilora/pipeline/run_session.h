// One run session: the model and every LoRA loaded once, then any number of generations with any
// composition method, and the parts of the run manifest that `generate` and `batch` share (model block,
// LoRA records, composition record). The commands add only what is theirs (settings, batch block, timings).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "multilora/compose/method_args.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/pipeline/generation.h"
#include "multilora/pipeline/model_loader.h"

namespace multilora::pipeline {

struct SessionOptions {
    LoadOptions load;
    std::vector<lora::LoraSpec> loras;  // attached once, slot i = loras[i]
    double lora_scale = 0.8;
};

// What one generation of a session asks for.
struct SessionRun {
    GenerationRequest request;
    std::string method = "none";
    compose::MethodArgs args;  // the method's parameters (defaults when default-constructed)
    std::vector<int> slots;    // the LoRAs composed, in order (empty: all attached)
    std::vector<std::vector<std::string>> triggers;  // per composed LoRA (prompt-aware methods)
    std::vector<std::string> categories;             // per composed LoRA, when known
    StepCallback on_step;
};

struct SessionResult {
    GenerationResult generation;
    nlohmann::json composition;  // the method's record()
    // run_images: each image's own truncation flags (the generation's flags say whether any was cut).
    struct PromptCut {
        bool prompt = false, negative = false;
    };
    std::vector<PromptCut> image_prompt_cuts;
    // run_images with several methods: each image's record() (`composition` then holds them all).
    std::vector<nlohmann::json> image_compositions;
};

class RunSession {
public:
    // Loads the model and attaches every LoRA (throws RuntimeError naming the file on failure).
    explicit RunSession(const SessionOptions& options);
    ~RunSession();

    // Runs one generation; the adapters are back on the base weights afterwards, also after an error.
    SessionResult run(const SessionRun& run);
    // Several images in one generation, sharing each UNet forward: each with its own request (prompt, initial
    // noise), method and LoRAs, and runs[0]'s settings (size, steps, sampler, guidance). When every run names
    // one method and as many LoRAs, that method runs with runs[0]'s arguments: images with the same LoRAs and
    // prompts (a set's seeds) are one run of several images, the prompt encoded once; otherwise the method
    // must be a MethodInfo::mixes_sets one: each image's prompts are encoded with its own LoRAs, and the
    // adapters give each image's rows its own (AdapterSet::map_images). Runs of several methods or LoRA counts
    // must all name mixes_sets methods: each image gets its own method with its own arguments, and one forward
    // a step runs every image's rows (MixedMethods). Throws RuntimeError when the runs do not fit together
    // (a method that cannot mix, prompts of different lengths).
    SessionResult run_images(const std::vector<SessionRun>& runs);

    StableDiffusionModel& model() { return model_; }
    lora::AdapterSet* adapters() { return adapters_.get(); }
    double load_seconds() const { return load_seconds_; }
    double lora_scale() const { return options_.lora_scale; }

    // The manifest's "model" block (layouts, hashed weight files, configs); `scheduler_class` adds the
    // diffusers class of that scheduler name, as batch manifests record it.
    nlohmann::json model_record(const std::string& scheduler_class = "") const;
    // SHA-256 of the model's first weight file (64 zeros without one), for A1111's "Model hash".
    std::string model_hash() const;
    // The manifest record of attached LoRA `slot`: its summary plus the file's SHA-256.
    nlohmann::json lora_record(int slot) const;

private:
    // run_images for runs of several methods or LoRA counts.
    SessionResult run_mixed(const std::vector<SessionRun>& runs);

    SessionOptions options_;
    StableDiffusionModel model_;
    std::unique_ptr<lora::AdapterSet> adapters_;
    double load_seconds_ = 0;
    mutable nlohmann::json model_files_;  // hashed once
    mutable std::map<int, std::string> lora_sha_;
};

// The diffusers class a scheduler name mirrors under this model's scheduler config.
std::string scheduler_class(const std::string& scheduler, const nlohmann::json& scheduler_config);

}  // namespace multilora::pipeline
