// CMLoRA (arXiv 2502.04923; code Yqcca/CMLoRA 5e79e41, LoRA_Cache/, the offline pipeline). Composite in
// which one dominant LoRA gets a larger share, rotating at each cache refresh, and each LoRA's deep UNet
// features are reused between refreshes (DeepCache, cut after the first down block's layers: only the
// shallow branch runs). As the code has it: the LoRAs are ordered by category (the background last) rather
// than profiled at run time; every LoRA is evaluated at every step; at step 0 every LoRA runs a full pass,
// at a refresh step the new dominant does, at other steps every LoRA runs the shallow pass on its own cache.
// ε = ū + g·(c̄ − ū) over the weighted predictions, ū = (1/N) Σ wᵢ εᵢ(∅). The text encoder has every LoRA.
#include "multilora/compose/cmlora.h"

#include <torch/torch.h>

#include <algorithm>

#include "multilora/compose/lora_rows.h"
#include "multilora/compose/registry.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/models/unet.h"

namespace multilora::compose {
namespace cmlora {

std::vector<int> refresh_steps(int interval, int steps) {
    std::vector<int> s;
    if (interval >= 1) {
        for (int i = 0; i < steps; i += interval) s.push_back(i);
        return s;
    }
    const int a = static_cast<int>(0.375 * steps), b = static_cast<int>(0.875 * steps);
    for (int i = 0; i < a; i += 2) s.push_back(i);
    for (int i = a; i < b; i += 3) s.push_back(i);
    for (int i = b; i < steps; i += 2) s.push_back(i);
    return s;
}

Weights weights(int n) {
    const double coeff = n - 0.5;
    const double other = n / (coeff + n - 1);
    return {other * coeff, other};
}

StepPlan Rotation::step(int i, bool refresh_step) {
    const bool first_phase = background_ == 0 || i <= phase_;
    StepPlan p;
    if (refresh_step) {
        if (first_phase) p.refresh = indicator_ % real_;
        ++indicator_;
    }
    const int d = ((indicator_ - 1) % real_ + real_) % real_;  // Python's modulo
    p.dominant = first_phase ? d : d + 1;
    return p;
}

}  // namespace cmlora

namespace {

class CmloraMethod final : public CompositionMethod {
public:
    explicit CmloraMethod(const MethodSetup& setup);

    text::EncodedPrompts encode(const PromptText& text) override {
        adapters_->activate_text(slots_);
        text::EncodedPrompts prompts = encode_text(model_, text);
        adapters_->activate_text({});
        adapters_->activate_unet({});
        caches_.assign(order_.size(), at::Tensor());
        rotation_ = cmlora::Rotation(real_, static_cast<int>(order_.size()) - real_, phase_step_);
        refresh_.clear();
        dominant_trace_.clear();
        full_trace_.clear();
        return prompts;
    }

    at::Tensor predict(const StepContext& ctx) override;

    nlohmann::json record() const override {
        return {{"method", "cmlora"},          {"interval", interval_},
                {"phase_step", phase_step_},   {"order", order_},
                {"dominant_per_step", dominant_trace_}, {"full_passes_per_step", full_trace_}};
    }

private:
    // One UNet forward for the listed LoRAs (indices into order_): full passes store their caches.
    at::Tensor run_group(const StepContext& ctx, const std::vector<int>& loras, bool full);

    ModelParts model_;
    lora::AdapterSet* adapters_;
    std::vector<int> slots_;
    std::vector<int> order_;  // composition indices, real LoRAs first, then the background
    int real_ = 0;
    int interval_, phase_step_;
    cmlora::Rotation rotation_{1, 0, 0};
    std::vector<int> refresh_;
    std::vector<at::Tensor> caches_;  // per ordered LoRA: the input of the last up block, [rows, C, h, w]
    std::vector<int> dominant_trace_;
    std::vector<std::vector<int>> full_trace_;
};

CmloraMethod::CmloraMethod(const MethodSetup& setup)
    : model_(setup.model),
      adapters_(setup.adapters),
      slots_(composition_slots(setup)),
      interval_(setup.args.get_int("interval")),
      phase_step_(setup.args.get_int("phase_step")) {
    std::vector<int> background;
    for (int i = 0; i < static_cast<int>(slots_.size()); ++i) {
        const bool bg = i < static_cast<int>(setup.categories.size()) && setup.categories[i] == "background";
        (bg ? background : order_).push_back(i);
    }
    real_ = static_cast<int>(order_.size());
    if (real_ == 0) real_ = static_cast<int>(background.size());  // only backgrounds: one rotation over all
    order_.insert(order_.end(), background.begin(), background.end());
}

at::Tensor CmloraMethod::run_group(const StepContext& ctx, const std::vector<int>& loras, bool full) {
    std::vector<int> slots;
    std::vector<at::Tensor> deep_in;
    for (int l : loras) {
        slots.push_back(slots_[order_[l]]);
        if (!full) deep_in.push_back(caches_[l]);
    }
    const LoraRowBatch b = lora_row_batch(ctx, slots);
    adapters_->activate_unet_rows(b.row_slots);
    at::Tensor eps, deep;
    if (full) eps = model_.unet.forward(b.input, ctx.timestep, b.context, &deep);
    else eps = model_.unet.forward_shallow(b.input, ctx.timestep, b.context, at::cat(deep_in, 0));
    adapters_->activate_unet({});
    const int64_t count = static_cast<int64_t>(loras.size());
    if (full)
        for (int64_t i = 0; i < count; ++i) caches_[loras[i]] = deep.narrow(0, i * b.rows_per_lora, b.rows_per_lora);
    const auto& s = ctx.scaled_latents.sizes();
    return eps.view({count, b.rows_per_lora, s[1], s[2], s[3]});
}

at::Tensor CmloraMethod::predict(const StepContext& ctx) {
    if (refresh_.empty()) refresh_ = cmlora::refresh_steps(interval_, std::max(1, ctx.num_steps));
    const bool refresh_step = std::binary_search(refresh_.begin(), refresh_.end(), ctx.step);
    const cmlora::StepPlan plan = rotation_.step(ctx.step, refresh_step);
    if (plan.refresh >= 0) caches_[plan.refresh] = at::Tensor();
    const bool quick = interval_ > 1;
    std::vector<int> full, shallow;
    for (int l = 0; l < static_cast<int>(order_.size()); ++l) (quick && caches_[l].defined() ? shallow : full).push_back(l);
    std::vector<at::Tensor> eps(order_.size());
    for (const auto* group : {&full, &shallow}) {
        if (group->empty()) continue;
        at::Tensor out = run_group(ctx, *group, group == &full);
        for (size_t i = 0; i < group->size(); ++i) eps[(*group)[i]] = out[static_cast<int64_t>(i)];
    }
    const cmlora::Weights w = cmlora::weights(static_cast<int>(order_.size()));
    at::Tensor sum;
    for (size_t l = 0; l < order_.size(); ++l) {
        at::Tensor e = eps[l] * static_cast<float>(static_cast<int>(l) == plan.dominant ? w.dominant : w.other);
        sum = sum.defined() ? sum + e : e;
    }
    at::Tensor mean = sum / static_cast<double>(order_.size());
    dominant_trace_.push_back(order_[plan.dominant]);
    std::vector<int> full_ids;
    for (int l : full) full_ids.push_back(order_[l]);
    full_trace_.push_back(full_ids);
    const int64_t n = ctx.scaled_latents.size(0);
    if (ctx.guidance_scale <= 1.0) return mean;
    at::Tensor u = mean.narrow(0, 0, n), c = mean.narrow(0, n, n);
    return u + ctx.guidance_scale * (c - u);
}

}  // namespace
}  // namespace multilora::compose

MULTILORA_COMPOSITION_METHOD(cmlora) {
    using namespace multilora::compose;
    MethodInfo info;
    info.name = "cmlora";
    info.summary = "Composite with a dominant LoRA (larger share, rotating at each cache refresh) and each "
                   "LoRA's deep UNet features reused between refreshes (DeepCache).";
    info.source = "arXiv 2502.04923 (Yqcca/CMLoRA 5e79e41, LoRA_Cache/pipeline_offline.py)";
    info.order = 45;
    info.params = {
        int_param("interval", 2, 0, 1000,
                  "cache refresh every N steps (1: no cache, rotation every step; 0: the code's non-uniform "
                  "2/3/2 schedule, which never uses the cache)"),
        int_param("phase_step", 120, 0, 1000000,
                  "with a background LoRA: after this step the rotation moves to LoRAs 2..k and no cache is "
                  "refreshed (the code's fixed 120)"),
    };
    info.unet_rows = [](int k, bool cfg) { return (cfg ? 2 : 1) * std::max(1, k); };
    info.cost = "2k, shallow (DeepCache) except at step 0 and for each refresh step's new dominant LoRA";
    info.period_steps = [](int k, const MethodArgs& a) { return std::max(1, a.get_int("interval")) * std::max(1, k); };
    info.bench_k = {2, 5};
    registry.add(info, [](const MethodSetup& s) { return std::make_unique<CmloraMethod>(s); });
}
