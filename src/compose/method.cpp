#include "multilora/compose/method.h"

#include <torch/torch.h>

#include <numeric>

#include "multilora/lora/adapter_set.h"
#include "multilora/models/unet.h"
#include "multilora/util/error.h"

namespace multilora::compose {

int cfg_rows_per_latent(double guidance_scale) { return guidance_scale > 1.0 ? 2 : 1; }

at::Tensor cfg_latents(const StepContext& ctx) {
    if (ctx.guidance_scale <= 1.0) return ctx.scaled_latents;
    return at::cat({ctx.scaled_latents, ctx.scaled_latents}, 0);
}

at::Tensor cfg_context(const text::EncodedPrompts& prompts, const StepContext& ctx) {
    const int64_t n = ctx.scaled_latents.size(0);
    at::Tensor cond = prompts.cond.expand({n, -1, -1});
    if (ctx.guidance_scale <= 1.0) return cond;
    return at::cat({prompts.uncond.expand({n, -1, -1}), cond}, 0);
}

at::Tensor cfg_predict(models::UNet2DConditionModelImpl& unet, const StepContext& ctx) {
    return cfg_combine(ctx, unet.forward(cfg_latents(ctx), ctx.timestep, cfg_context(ctx.prompts, ctx)));
}

StepRows cfg_rows(const StepContext& ctx, const std::vector<int>& slots) {
    StepRows rows{cfg_latents(ctx), cfg_context(ctx.prompts, ctx), {}};
    rows.row_slots.assign(static_cast<size_t>(rows.input.size(0)), slots);
    return rows;
}

at::Tensor cfg_combine(const StepContext& ctx, const at::Tensor& eps) {
    if (ctx.guidance_scale <= 1.0) return eps;
    auto halves = eps.chunk(2, 0);
    return halves[0] + ctx.guidance_scale * (halves[1] - halves[0]);
}

namespace {

[[noreturn]] void cannot_share(const CompositionMethod& method) {
    throw RuntimeError("internal: " + method.record().value("method", std::string("this method")) +
                       " cannot share a UNet forward with other methods");
}

}  // namespace

StepRows CompositionMethod::step_rows(const StepContext&) { cannot_share(*this); }

at::Tensor CompositionMethod::combine(const StepContext&, const at::Tensor&) { cannot_share(*this); }

text::EncodedPrompts encode_text(const ModelParts& model, const PromptText& text) {
    return text::encode_prompts(model.tokenizer, model.text_encoder, text.prompt, text.negative_prompt,
                                text.long_prompt, text.syntax);
}

std::vector<int> composition_slots(const MethodSetup& setup) {
    const int count = setup.adapters ? setup.adapters->count() : 0;
    if (setup.slots.empty()) {
        std::vector<int> all(count);
        std::iota(all.begin(), all.end(), 0);
        return all;
    }
    for (int s : setup.slots)
        if (s < 0 || s >= count)
            throw RuntimeError("internal: LoRA slot " + std::to_string(s) + " is not attached (" +
                               std::to_string(count) + " LoRAs attached)");
    return setup.slots;
}

}  // namespace multilora::compose
