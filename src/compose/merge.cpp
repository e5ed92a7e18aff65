// Merge (arXiv 2402.16843, §3): every LoRA active at once in UNet and text encoder; the deltas are summed
// into each layer's weight once for the run: W' = W + Σᵢ sᵢ·Bᵢ·Aᵢ.
//
// With weight schedules (`--lora FILE:1@0,0.2@0.6`, lora/weight_schedule.h) sᵢ becomes sᵢ·wᵢ(i/N) at step
// i of N: the weights are re-applied whenever they change, each layer fusing them when that pays off over
// the steps they hold. The text encoder uses the weights at fraction 0. Switch is one such schedule.
#include <torch/torch.h>

#include "multilora/compose/registry.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/util/error.h"

namespace multilora::compose {
namespace {

class MergeMethod final : public CompositionMethod {
public:
    explicit MergeMethod(const MethodSetup& setup)
        : model_(setup.model), adapters_(setup.adapters), slots_(composition_slots(setup)) {
        for (int s : slots_) scheduled_ = scheduled_ || !adapters_->schedule(s).empty();
    }

    text::EncodedPrompts encode(const PromptText& text) override {
        if (scheduled_) apply_gains(gains_at(0, 1));
        adapters_->activate_text(scheduled_ ? weighted_slots(gains_at(0, 1)) : slots_);
        text::EncodedPrompts prompts = encode_text(model_, text);
        adapters_->activate_text({});
        if (!scheduled_) adapters_->activate_unet(slots_);
        applied_.clear();
        trace_.clear();
        return prompts;
    }

    at::Tensor predict(const StepContext& ctx) override {
        if (scheduled_) follow_schedule(ctx.step, ctx.num_steps);
        return cfg_predict(model_.unet, ctx);
    }
    StepRows step_rows(const StepContext& ctx) override {
        if (scheduled_) throw RuntimeError("merge with a LoRA weight schedule cannot share a UNet forward with other images");
        return cfg_rows(ctx, slots_);
    }
    at::Tensor combine(const StepContext& ctx, const at::Tensor& eps) override { return cfg_combine(ctx, eps); }

    nlohmann::json record() const override {
        nlohmann::json r = {{"method", "merge"}};
        if (scheduled_) r["lora_weights_per_step"] = trace_;
        return r;
    }

private:
    // Each attached slot's gain at step `step` of `steps` (1 for slots without a schedule or outside the
    // composition, which weighted_slots leaves out).
    std::vector<double> gains_at(int step, int steps) const {
        std::vector<double> g(adapters_->count(), 1.0);
        for (int s : slots_) g[s] = adapters_->schedule(s).at_step(step, steps);
        return g;
    }

    std::vector<int> weighted_slots(const std::vector<double>& gains) const {
        std::vector<int> active;
        for (int s : slots_)
            if (gains[s] != 0.0) active.push_back(s);
        return active;
    }

    void apply_gains(const std::vector<double>& gains) { adapters_->set_gains(gains); }

    // Re-activates the UNet's LoRAs when the weights change, for as many steps as they then hold.
    void follow_schedule(int step, int steps) {
        const std::vector<double> gains = gains_at(step, steps);
        std::vector<double> row;
        for (int s : slots_) row.push_back(gains[s]);
        trace_.push_back(row);
        if (gains == applied_) return;
        int hold = 1;
        while (step + hold < steps && gains_at(step + hold, steps) == gains) ++hold;
        apply_gains(gains);
        adapters_->activate_unet(weighted_slots(gains), hold);
        applied_ = gains;
    }

    ModelParts model_;
    lora::AdapterSet* adapters_;
    std::vector<int> slots_;
    bool scheduled_ = false;
    std::vector<double> applied_;             // the gains the UNet runs with (empty: none yet)
    std::vector<std::vector<double>> trace_;  // per step, each composed LoRA's weight factor
};

}  // namespace
}  // namespace multilora::compose

MULTILORA_COMPOSITION_METHOD(merge) {
    using namespace multilora::compose;
    MethodInfo info;
    info.name = "merge";
    info.summary = "every LoRA active at once, fused into the weights (W + sum s_i B_i A_i); a --lora "
                   "FILE:W@F,... weight schedule changes s_i over the run.";
    info.source = "arXiv 2402.16843 (maszhongming/Multi-LoRA-Composition); schedules: ComfyUI hook keyframes "
                  "(step), sd-webui-loractl (linear)";
    info.order = 10;
    info.unet_rows = [](int, bool cfg) { return cfg ? 2 : 1; };
    info.cost = "2, as without LoRA (plus a re-fuse when a schedule changes the weights)";
    info.bench_k = {1, 5};
    info.weight_schedules = true;
    info.mixes_sets = true;
    registry.add(info, [](const MethodSetup& s) { return std::make_unique<MergeMethod>(s); });
}
