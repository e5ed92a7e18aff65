// A LoRA composition method: how the text encoder is set up before the prompts are encoded, and how each
// denoising step's guided noise is formed. One method per file in src/compose/, registered by name
// (compose/registry.h); the pipeline drives whichever the request names.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "multilora/compose/method_args.h"
#include "multilora/text/prompt_encoding.h"

namespace multilora::models {
class UNet2DConditionModelImpl;
}
namespace multilora::lora {
class AdapterSet;
}

namespace multilora::compose {

// The parts of a loaded model a method drives.
struct ModelParts {
    models::UNet2DConditionModelImpl& unet;
    text::ClipTextModelImpl& text_encoder;
    const text::ClipTokenizer& tokenizer;
};

// The text a generation encodes.
struct PromptText {
    std::string prompt;
    std::string negative_prompt;
    text::LongPromptMode long_prompt = text::LongPromptMode::Truncate;
    text::PromptSyntax syntax = text::PromptSyntax::Plain;
};

// One denoising step, as the loop hands it to the method.
struct StepContext {
    const at::Tensor& scaled_latents;  // [n, C, h, w], after scale_model_input
    const at::Tensor& timestep;        // 0-d tensor
    int step;                          // 0-based
    const text::EncodedPrompts& prompts;
    double guidance_scale;
    int num_steps = 0;  // steps in the run (weight schedules read step / num_steps)
};

// What a method is built from.
struct MethodSetup {
    ModelParts model;
    lora::AdapterSet* adapters = nullptr;  // null: no LoRA attached
    // The AdapterSet slots that form the composition, in composition order (the first is Switch's first
    // LoRA). Empty: every attached slot, 0..count-1. Lets a batch attach all of its LoRAs once and compose
    // subsets.
    std::vector<int> slots;
    MethodArgs args;  // validated against the method's parameters
    // Each composed LoRA's trigger words, in composition order (empty, or shorter than the composition: no
    // triggers known), for the prompt-aware methods.
    std::vector<std::vector<std::string>> triggers;
    // Each composed LoRA's ComposLoRA category ("character", "background", ...), when known (CMLoRA orders
    // the background last).
    std::vector<std::string> categories;
};

// One step's UNet rows, as a method would run them, for a forward shared with other images' methods (batch
// --batch-images across methods): the latents and prompt embeddings of each row, and the attached slots
// each row composes.
struct StepRows {
    at::Tensor input, context;
    std::vector<std::vector<int>> row_slots;
};

class CompositionMethod {
public:
    virtual ~CompositionMethod() = default;
    // Sets up the text encoder, encodes both prompts, and leaves the UNet ready for the first step.
    virtual text::EncodedPrompts encode(const PromptText& text) = 0;
    // The guided noise prediction ε for one step.
    virtual at::Tensor predict(const StepContext& ctx) = 0;
    // What the method did, for the manifest: {"method": name, and its settings}.
    virtual nlohmann::json record() const = 0;

    // Methods whose images can share a UNet forward with other methods' images (MethodInfo::mixes_sets)
    // split predict() in two: step_rows() says which rows this step needs (and advances the method's own
    // per-step state, as predict does) without running the UNet or touching the adapters; combine() turns
    // those rows' ε into the guided prediction. predict(ctx) equals combine(ctx, ε of step_rows(ctx)'s rows,
    // each with its slots). The others throw RuntimeError.
    virtual StepRows step_rows(const StepContext& ctx);
    virtual at::Tensor combine(const StepContext& ctx, const at::Tensor& eps);
};

// The rows of one model's prediction: the latents and prompt embeddings as [∅ ×n, c ×n] (only the c rows
// when guidance_scale <= 1, as diffusers skips the other branch).
at::Tensor cfg_latents(const StepContext& ctx);
// The rows cfg_latents gives each latent row: 2 with guidance, 1 without.
int cfg_rows_per_latent(double guidance_scale);
at::Tensor cfg_context(const text::EncodedPrompts& prompts, const StepContext& ctx);

// The plain classifier-free-guided prediction: one UNet call on the batched [uncond × n, cond × n] rows
// (only the conditional rows when guidance_scale <= 1, as diffusers skips the other branch).
at::Tensor cfg_predict(models::UNet2DConditionModelImpl& unet, const StepContext& ctx);
// cfg_predict's two halves: its rows, each composing `slots`, and the guidance applied to their ε.
StepRows cfg_rows(const StepContext& ctx, const std::vector<int>& slots);
at::Tensor cfg_combine(const StepContext& ctx, const at::Tensor& eps);

// encode_prompts on the model's tokenizer and text encoder.
text::EncodedPrompts encode_text(const ModelParts& model, const PromptText& text);

// The composition's slots: `setup.slots`, or every attached slot. Throws RuntimeError for a slot that is
// not attached.
std::vector<int> composition_slots(const MethodSetup& setup);

}  // namespace multilora::compose
