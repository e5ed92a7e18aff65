#include "multilora/pipeline/mixed_methods.h"

#include <torch/torch.h>

#include "multilora/lora/adapter_set.h"
#include "multilora/models/unet.h"
#include "multilora/util/error.h"

namespace multilora::pipeline {

MixedMethods::MixedMethods(compose::ModelParts model, lora::AdapterSet* adapters,
                           std::vector<std::unique_ptr<compose::CompositionMethod>> images)
    : model_(model), adapters_(adapters), images_(std::move(images)) {
    if (images_.empty()) throw RuntimeError("internal: a mixed generation needs at least one image");
}

text::EncodedPrompts MixedMethods::encode(const compose::PromptText&) {
    throw RuntimeError("internal: a mixed generation encodes each image's prompt with its own method");
}

text::EncodedPrompts stack_image_prompts(const std::vector<text::EncodedPrompts>& each) {
    text::EncodedPrompts all;
    std::vector<at::Tensor> cond, uncond;
    for (size_t b = 0; b < each.size(); ++b) {
        const text::EncodedPrompts& p = each[b];
        if (b > 0 && p.cond.sizes() != cond.front().sizes())
            throw RuntimeError("images that share a forward must encode to prompts of one length (image " +
                               std::to_string(b) + "'s has " + std::to_string(p.chunks) + " chunk(s), image 0's " +
                               std::to_string(all.chunks) + ")");
        all.prompt_truncated = all.prompt_truncated || p.prompt_truncated;
        all.negative_truncated = all.negative_truncated || p.negative_truncated;
        if (b == 0) all.chunks = p.chunks;
        cond.push_back(p.cond);
        uncond.push_back(p.uncond);
    }
    all.cond = at::cat(cond, 0);
    all.uncond = at::cat(uncond, 0);
    return all;
}

text::EncodedPrompts MixedMethods::encode_images(const std::vector<compose::PromptText>& texts) {
    if (texts.size() != images_.size()) throw RuntimeError("internal: one prompt per image of a mixed generation");
    prompts_.clear();
    for (size_t b = 0; b < images_.size(); ++b) prompts_.push_back(images_[b]->encode(texts[b]));
    return stack_image_prompts(prompts_);
}

namespace {

// Image b's view of a step: its latents rows, its own prompts, the step's timestep and settings.
struct ImageSteps {
    std::vector<at::Tensor> latents;
    std::vector<compose::StepContext> contexts;
};

ImageSteps image_steps(const compose::StepContext& ctx, const std::vector<text::EncodedPrompts>& prompts) {
    const int64_t n = static_cast<int64_t>(prompts.size()), m = ctx.scaled_latents.size(0) / n;
    ImageSteps s;
    for (int64_t b = 0; b < n; ++b) s.latents.push_back(ctx.scaled_latents.narrow(0, b * m, m));
    s.contexts.reserve(prompts.size());  // the contexts hold references to s.latents' tensors
    for (int64_t b = 0; b < n; ++b)
        s.contexts.push_back({s.latents[b], ctx.timestep, ctx.step, prompts[b], ctx.guidance_scale, ctx.num_steps});
    return s;
}

}  // namespace

at::Tensor MixedMethods::predict(const compose::StepContext& ctx) {
    if (prompts_.size() != images_.size()) throw RuntimeError("internal: a mixed generation predicts before encoding");
    // Gather: every image's rows, in image order, with the slots each row composes.
    const ImageSteps steps = image_steps(ctx, prompts_);
    std::vector<at::Tensor> inputs, contexts;
    std::vector<std::vector<int>> row_slots;
    std::vector<int64_t> counts;
    for (size_t b = 0; b < images_.size(); ++b) {
        compose::StepRows rows = images_[b]->step_rows(steps.contexts[b]);
        counts.push_back(rows.input.size(0));
        inputs.push_back(rows.input);
        contexts.push_back(rows.context);
        row_slots.insert(row_slots.end(), rows.row_slots.begin(), rows.row_slots.end());
    }
    // One forward over all of them. Each of these methods' row groups holds one guided prediction's rows of an
    // image (Composite: one per LoRA), which is what each group's fuse-or-low-rank choice counts, as alone.
    const int64_t image_rows = steps.contexts.front().scaled_latents.size(0) * compose::cfg_rows_per_latent(ctx.guidance_scale);
    if (adapters_) adapters_->activate_unet_rows(row_slots, image_rows);
    const at::Tensor eps = model_.unet.forward(at::cat(inputs, 0), ctx.timestep, at::cat(contexts, 0));
    // Each image's prediction from its own rows.
    std::vector<at::Tensor> predictions;
    int64_t first = 0;
    for (size_t b = 0; b < images_.size(); ++b) {
        predictions.push_back(images_[b]->combine(steps.contexts[b], eps.narrow(0, first, counts[b])));
        first += counts[b];
    }
    return at::cat(predictions, 0);
}

nlohmann::json MixedMethods::record() const {
    nlohmann::json each = nlohmann::json::array();
    for (const auto& m : images_) each.push_back(m->record());
    return {{"method", "mixed"}, {"images", each}};
}

}  // namespace multilora::pipeline
