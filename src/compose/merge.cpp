// Merge (arXiv 2402.16843, §3): every LoRA active at once in UNet and text encoder; the deltas are summed
// into each layer's weight once for the run: W' = W + Σᵢ sᵢ·Bᵢ·Aᵢ.
#include <torch/torch.h>

#include "multilora/compose/registry.h"
#include "multilora/lora/adapter_set.h"

namespace multilora::compose {
namespace {

class MergeMethod final : public CompositionMethod {
public:
    explicit MergeMethod(const MethodSetup& setup)
        : model_(setup.model), adapters_(setup.adapters), slots_(composition_slots(setup)) {}

    text::EncodedPrompts encode(const PromptText& text) override {
        adapters_->activate_text(slots_);
        text::EncodedPrompts prompts = encode_text(model_, text);
        adapters_->activate_text({});
        adapters_->activate_unet(slots_);
        return prompts;
    }
    at::Tensor predict(const StepContext& ctx) override { return cfg_predict(model_.unet, ctx); }
    nlohmann::json record() const override { return {{"method", "merge"}}; }

private:
    ModelParts model_;
    lora::AdapterSet* adapters_;
    std::vector<int> slots_;
};

}  // namespace
}  // namespace multilora::compose

MULTILORA_COMPOSITION_METHOD(merge) {
    using namespace multilora::compose;
    MethodInfo info;
    info.name = "merge";
    info.summary = "every LoRA active at once, fused into the weights (W + sum s_i B_i A_i).";
    info.source = "arXiv 2402.16843 (maszhongming/Multi-LoRA-Composition)";
    info.order = 10;
    info.unet_rows = [](int, bool cfg) { return cfg ? 2 : 1; };
    info.cost = "2, as without LoRA";
    info.bench_k = {1, 5};
    registry.add(info, [](const MethodSetup& s) { return std::make_unique<MergeMethod>(s); });
}
