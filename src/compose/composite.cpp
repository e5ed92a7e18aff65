// Composite (arXiv 2402.16843, §3): each LoRA alone gives its unconditional and conditional prediction,
// and the predictions are averaged: ε = mean ε(∅) + g·(mean ε(c) − mean ε(∅)). The text encoder has every
// LoRA active. All 2k rows run in one batched UNet forward with per-row adapters.
#include <torch/torch.h>

#include "multilora/compose/registry.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/models/unet.h"

namespace multilora::compose {
namespace {

class CompositeMethod final : public CompositionMethod {
public:
    explicit CompositeMethod(const MethodSetup& setup)
        : model_(setup.model),
          adapters_(setup.adapters),
          slots_(composition_slots(setup)),
          max_batch_rows_(setup.args.get_int("max_batch_rows")) {}

    text::EncodedPrompts encode(const PromptText& text) override {
        adapters_->activate_text(slots_);
        text::EncodedPrompts prompts = encode_text(model_, text);
        adapters_->activate_text({});
        adapters_->activate_unet({});
        return prompts;
    }

    at::Tensor predict(const StepContext& ctx) override;

    nlohmann::json record() const override { return {{"method", "composite"}, {"max_batch_rows", max_batch_rows_}}; }

private:
    ModelParts model_;
    lora::AdapterSet* adapters_;
    std::vector<int> slots_;
    int max_batch_rows_;
};

// The batch is laid out as [LoRA 0: uncond×n, cond×n | LoRA 1: uncond×n, cond×n | ...], each row with its
// own adapter; as many LoRAs per forward as the row budget allows (all of them by default).
at::Tensor CompositeMethod::predict(const StepContext& ctx) {
    const int64_t k = static_cast<int64_t>(slots_.size());
    const int64_t n = ctx.scaled_latents.size(0);
    const bool cfg = ctx.guidance_scale > 1.0;
    const int64_t per_lora = cfg ? 2 * n : n;
    at::Tensor uncond = ctx.prompts.uncond.expand({n, -1, -1});
    at::Tensor cond = ctx.prompts.cond.expand({n, -1, -1});
    at::Tensor lora_ctx = cfg ? at::cat({uncond, cond}, 0) : cond;
    at::Tensor lora_in = cfg ? at::cat({ctx.scaled_latents, ctx.scaled_latents}, 0) : ctx.scaled_latents;

    int64_t loras_per_chunk = k;
    if (max_batch_rows_ > 0) loras_per_chunk = std::max<int64_t>(1, max_batch_rows_ / per_lora);
    at::Tensor sum_uncond, sum_cond;
    for (int64_t first = 0; first < k; first += loras_per_chunk) {
        const int64_t count = std::min<int64_t>(loras_per_chunk, k - first);
        std::vector<std::vector<int>> rows;
        for (int64_t i = 0; i < count; ++i)
            for (int64_t r = 0; r < per_lora; ++r) rows.push_back({slots_[first + i]});
        adapters_->activate_unet_rows(rows);
        at::Tensor input = count == 1 ? lora_in : lora_in.repeat({count, 1, 1, 1});
        at::Tensor context = count == 1 ? lora_ctx : lora_ctx.repeat({count, 1, 1});
        at::Tensor eps = model_.unet.forward(input, ctx.timestep, context)
                             .view({count, per_lora, lora_in.size(1), lora_in.size(2), lora_in.size(3)});
        at::Tensor eps_uncond = cfg ? eps.narrow(1, 0, n).sum(0) : at::Tensor();
        at::Tensor eps_cond = (cfg ? eps.narrow(1, n, n) : eps).sum(0);
        if (cfg) sum_uncond = sum_uncond.defined() ? sum_uncond + eps_uncond : eps_uncond;
        sum_cond = sum_cond.defined() ? sum_cond + eps_cond : eps_cond;
    }
    adapters_->activate_unet({});
    at::Tensor mean_cond = sum_cond / static_cast<double>(k);
    if (!cfg) return mean_cond;
    at::Tensor mean_uncond = sum_uncond / static_cast<double>(k);
    return mean_uncond + ctx.guidance_scale * (mean_cond - mean_uncond);
}

}  // namespace
}  // namespace multilora::compose

MULTILORA_COMPOSITION_METHOD(composite) {
    using namespace multilora::compose;
    MethodInfo info;
    info.name = "composite";
    info.summary = "each LoRA alone gives its guided prediction; the predictions are averaged.";
    info.source = "arXiv 2402.16843 (maszhongming/Multi-LoRA-Composition)";
    info.order = 30;
    ParamSpec rows;
    rows.name = "max_batch_rows";
    rows.type = ParamSpec::Type::Int;
    rows.help = "most UNet batch rows per forward (0: all 2k rows in one batch)";
    rows.default_value = 0;
    rows.min = 0;
    rows.max = 1 << 20;
    rows.cli_flag = "--max-batch-rows";
    rows.config_key = "max_batch_rows";
    rows.affects_output = false;
    info.params = {rows};
    info.unet_rows = [](int k, bool cfg) { return (cfg ? 2 : 1) * std::max(1, k); };
    info.cost = "2k (one batched forward with per-row adapters)";
    info.bench_k = {2, 3, 4, 5};
    registry.add(info, [](const MethodSetup& s) { return std::make_unique<CompositeMethod>(s); });
}
