// No composition: the base model, with every attached adapter off (the paper's "no LoRA" reference).
#include <torch/torch.h>

#include "multilora/compose/registry.h"
#include "multilora/lora/adapter_set.h"

namespace multilora::compose {
namespace {

class NoneMethod final : public CompositionMethod {
public:
    explicit NoneMethod(const MethodSetup& setup) : model_(setup.model), adapters_(setup.adapters) {}

    text::EncodedPrompts encode(const PromptText& text) override {
        if (adapters_) adapters_->activate_text({});
        text::EncodedPrompts prompts = encode_text(model_, text);
        if (adapters_) adapters_->activate_unet({});
        return prompts;
    }
    at::Tensor predict(const StepContext& ctx) override { return cfg_predict(model_.unet, ctx); }
    StepRows step_rows(const StepContext& ctx) override { return cfg_rows(ctx, {}); }
    at::Tensor combine(const StepContext& ctx, const at::Tensor& eps) override { return cfg_combine(ctx, eps); }
    nlohmann::json record() const override { return {{"method", "none"}}; }

private:
    ModelParts model_;
    lora::AdapterSet* adapters_;
};

}  // namespace
}  // namespace multilora::compose

MULTILORA_COMPOSITION_METHOD(none) {
    using namespace multilora::compose;
    MethodInfo info;
    info.name = "none";
    info.summary = "the base model alone (no LoRA active).";
    info.source = "baseline";
    info.order = 0;
    info.min_loras = 0;
    info.unet_rows = [](int, bool cfg) { return cfg ? 2 : 1; };
    info.cost = "2 (1 without guidance)";
    info.mixes_sets = true;
    registry.add(info, [](const MethodSetup& s) { return std::make_unique<NoneMethod>(s); });
}
