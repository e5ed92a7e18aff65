// W-Composite (arXiv 2606.03792; GeorgeTsoumplekas/PromptAware-Multi-LoRA-Composition f148887,
// "weighted_composite_adaptive" with "triggers" weights). Composite with prompt weights
// (compose/prompt_aware.h): ε = Σᵢ wᵢ·(εᵢ(∅) + g·(εᵢ(c) − εᵢ(∅))) / max(Σᵢ wᵢ, 1e-6), in that order of
// operations. The text encoder has every LoRA active, as Composite; the weights are read on the base text
// encoder (the reference reads them with whichever LoRA was left active).
#include <torch/torch.h>

#include "multilora/compose/lora_rows.h"
#include "multilora/compose/prompt_aware.h"
#include "multilora/compose/registry.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/util/error.h"

namespace multilora::compose {
namespace {

class WCompositeMethod final : public CompositionMethod {
public:
    explicit WCompositeMethod(const MethodSetup& setup)
        : model_(setup.model),
          adapters_(setup.adapters),
          slots_(composition_slots(setup)),
          triggers_(setup.triggers),
          max_batch_rows_(setup.args.get_int("max_batch_rows")) {
        triggers_.resize(slots_.size());
        bool any = false;
        for (const auto& t : triggers_) any = any || !t.empty();
        if (!any)
            throw UsageError("--method w-composite weights the LoRAs by their trigger words, and none is known "
                             "(give --triggers for each --lora, or use a batch config's lora_info)");
    }

    text::EncodedPrompts encode(const PromptText& text) override {
        adapters_->activate_text({});
        weights_ = prompt_aware::trigger_weights(model_, text.prompt, triggers_);
        total_ = 0;
        for (double w : weights_) total_ += w;
        adapters_->activate_text(slots_);
        text::EncodedPrompts prompts = encode_text(model_, text);
        adapters_->activate_text({});
        adapters_->activate_unet({});
        return prompts;
    }

    at::Tensor predict(const StepContext& ctx) override {
        const int64_t n = ctx.scaled_latents.size(0);
        const bool cfg = ctx.guidance_scale > 1.0;
        at::Tensor sum;
        for_each_lora_rows(model_.unet, *adapters_, slots_, ctx, max_batch_rows_, [&](int64_t first, const at::Tensor& eps) {
            for (int64_t i = 0; i < eps.size(0); ++i) {
                at::Tensor guided = eps[i];
                if (cfg) {
                    at::Tensor u = eps[i].narrow(0, 0, n), c = eps[i].narrow(0, n, n);
                    guided = u + (c - u) * ctx.guidance_scale;
                }
                at::Tensor t = guided * static_cast<float>(weights_[first + i]);
                sum = sum.defined() ? sum + t : t;
            }
        });
        return sum / std::max(total_, 1e-6);
    }

    nlohmann::json record() const override {
        return {{"method", "w-composite"}, {"max_batch_rows", max_batch_rows_}, {"weights", weights_}};
    }

private:
    ModelParts model_;
    lora::AdapterSet* adapters_;
    std::vector<int> slots_;
    std::vector<std::vector<std::string>> triggers_;
    int max_batch_rows_;
    std::vector<double> weights_;
    double total_ = 0;
};

}  // namespace
}  // namespace multilora::compose

MULTILORA_COMPOSITION_METHOD(w_composite) {
    using namespace multilora::compose;
    MethodInfo info;
    info.name = "w-composite";
    info.summary = "Composite weighted by how close each LoRA's trigger words are to the prompt (CLIP text "
                   "encoder).";
    info.source = "arXiv 2606.03792 (GeorgeTsoumplekas/PromptAware-Multi-LoRA-Composition f148887)";
    info.order = 35;
    info.params = {int_param("max_batch_rows", 0, 0, 1 << 20,
                             "most UNet batch rows per forward (0: all 2k rows in one batch)")
                       .output_neutral()};
    info.unet_rows = [](int k, bool cfg) { return (cfg ? 2 : 1) * std::max(1, k); };
    info.cost = "2k, as Composite (one batched forward with per-row adapters; 1 + k text-encoder passes once)";
    info.bench_k = {2, 5};
    registry.add(info, [](const MethodSetup& s) { return std::make_unique<WCompositeMethod>(s); });
}
