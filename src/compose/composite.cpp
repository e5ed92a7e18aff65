// Composite (arXiv 2402.16843, §3): each LoRA alone gives its unconditional and conditional prediction,
// and the predictions are averaged: ε = mean ε(∅) + g·(mean ε(c) − mean ε(∅)). The text encoder has every
// LoRA active. All 2k rows run in one batched UNet forward with per-row adapters (compose/lora_rows.h).
#include <torch/torch.h>

#include "multilora/compose/lora_rows.h"
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

    StepRows step_rows(const StepContext& ctx) override {
        LoraRowBatch b = lora_row_batch(ctx, slots_);
        return {b.input, b.context, std::move(b.row_slots)};
    }

    at::Tensor combine(const StepContext& ctx, const at::Tensor& eps) override {
        const auto& s = ctx.scaled_latents.sizes();
        const int64_t k = static_cast<int64_t>(slots_.size());
        BranchSums sums;
        sums.add(eps.view({k, eps.size(0) / k, s[1], s[2], s[3]}), ctx);
        return sums.guided_mean(k, ctx);
    }

    nlohmann::json record() const override { return {{"method", "composite"}, {"max_batch_rows", max_batch_rows_}}; }

private:
    // The unconditional and conditional predictions summed over LoRAs, forward by forward.
    struct BranchSums {
        at::Tensor uncond, cond;
        // eps: [loras, rows per LoRA, C, h, w] of one forward.
        void add(const at::Tensor& eps, const StepContext& ctx) {
            const int64_t n = ctx.scaled_latents.size(0);
            const bool cfg = ctx.guidance_scale > 1.0;
            at::Tensor eps_uncond = cfg ? eps.narrow(1, 0, n).sum(0) : at::Tensor();
            at::Tensor eps_cond = (cfg ? eps.narrow(1, n, n) : eps).sum(0);
            if (cfg) uncond = uncond.defined() ? uncond + eps_uncond : eps_uncond;
            cond = cond.defined() ? cond + eps_cond : eps_cond;
        }
        at::Tensor guided_mean(int64_t k, const StepContext& ctx) const {
            at::Tensor mean_cond = cond / static_cast<double>(k);
            if (ctx.guidance_scale <= 1.0) return mean_cond;
            at::Tensor mean_uncond = uncond / static_cast<double>(k);
            return mean_uncond + ctx.guidance_scale * (mean_cond - mean_uncond);
        }
    };

    ModelParts model_;
    lora::AdapterSet* adapters_;
    std::vector<int> slots_;
    int max_batch_rows_;
};

// Sums each forward's predictions per branch, then averages over the k LoRAs.
at::Tensor CompositeMethod::predict(const StepContext& ctx) {
    BranchSums sums;
    for_each_lora_rows(model_.unet, *adapters_, slots_, ctx, max_batch_rows_,
                       [&](int64_t, const at::Tensor& eps) { sums.add(eps, ctx); });
    return sums.guided_mean(static_cast<int64_t>(slots_.size()), ctx);
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
    info.params = {int_param("max_batch_rows", 0, 0, 1 << 20,
                             "most UNet batch rows per forward (0: all 2k rows in one batch)")
                       .alias_flag("--max-batch-rows")
                       .alias_config_key("max_batch_rows")
                       .output_neutral()};
    info.unet_rows = [](int k, bool cfg) { return (cfg ? 2 : 1) * std::max(1, k); };
    info.cost = "2k (one batched forward with per-row adapters)";
    info.bench_k = {2, 3, 4, 5};
    info.mixes_sets = true;
    registry.add(info, [](const MethodSetup& s) { return std::make_unique<CompositeMethod>(s); });
}
