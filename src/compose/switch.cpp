// Switch (arXiv 2402.16843, §3): one LoRA active in the UNet at a time, rotating every τ steps; the text
// encoder encodes with the first LoRA only, as the paper's code does. The multistep solver's history is
// kept across switches, as in the reference.
#include "multilora/compose/switch.h"

#include <torch/torch.h>

#include "multilora/compose/registry.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/util/error.h"

namespace multilora::compose {

SwitchSchedule parse_switch_schedule(const std::string& name) {
    if (name == "paper") return SwitchSchedule::Paper;
    if (name == "reference") return SwitchSchedule::Reference;
    throw UsageError("unknown switch schedule \"" + name + "\" (choose paper or reference)");
}

std::string switch_schedule_name(SwitchSchedule s) { return s == SwitchSchedule::Paper ? "paper" : "reference"; }

int switch_active_lora(int step, int k, int interval, SwitchSchedule schedule) {
    if (k <= 0) return -1;
    if (interval < 1) interval = 1;
    if (schedule == SwitchSchedule::Paper) return (step % (k * interval)) / interval;
    // The public code switches after finishing step i when i % τ == 0 and i > 0.
    if (step <= interval) return 0;
    return ((step - 1) / interval) % k;
}

namespace {

class SwitchMethod final : public CompositionMethod {
public:
    explicit SwitchMethod(const MethodSetup& setup)
        : model_(setup.model),
          adapters_(setup.adapters),
          slots_(composition_slots(setup)),
          interval_(setup.args.get_int("tau")),
          schedule_(parse_switch_schedule(setup.args.get_string("schedule"))) {}

    text::EncodedPrompts encode(const PromptText& text) override {
        // The reference encodes the prompt once, with only the first LoRA in the text encoder.
        adapters_->activate_text({slots_.front()});
        text::EncodedPrompts prompts = encode_text(model_, text);
        adapters_->activate_text({});
        adapters_->activate_unet({});
        trace_.clear();
        last_ = -1;
        return prompts;
    }

    at::Tensor predict(const StepContext& ctx) override {
        const int active = advance(ctx);
        if (active != last_) {
            // Each layer fuses the newly active LoRA only if that pays off over one switch interval.
            adapters_->activate_unet({slots_[active]}, interval_);
            last_ = active;
        }
        return cfg_predict(model_.unet, ctx);
    }
    StepRows step_rows(const StepContext& ctx) override { return cfg_rows(ctx, {slots_[advance(ctx)]}); }
    at::Tensor combine(const StepContext& ctx, const at::Tensor& eps) override { return cfg_combine(ctx, eps); }

    nlohmann::json record() const override {
        return {{"method", "switch"},
                {"switch_interval", interval_},
                {"switch_schedule", switch_schedule_name(schedule_)},
                {"active_lora_per_step", trace_}};
    }

private:
    // The composition index of this step's LoRA, recorded in the trace.
    int advance(const StepContext& ctx) {
        const int active = switch_active_lora(ctx.step, static_cast<int>(slots_.size()), interval_, schedule_);
        trace_.push_back(active);
        return active;
    }

    ModelParts model_;
    lora::AdapterSet* adapters_;
    std::vector<int> slots_;
    int interval_;
    SwitchSchedule schedule_;
    std::vector<int> trace_;
    int last_ = -1;
};

}  // namespace
}  // namespace multilora::compose

MULTILORA_COMPOSITION_METHOD(switch) {
    using namespace multilora::compose;
    MethodInfo info;
    info.name = "switch";
    info.summary = "one LoRA active at a time, rotating every tau steps (text encoder: the first LoRA).";
    info.source = "arXiv 2402.16843 (maszhongming/Multi-LoRA-Composition)";
    info.order = 20;
    info.params = {
        int_param("tau", 5, 1, 1000, "steps each LoRA stays active")
            .alias_flag("--switch-interval")
            .alias_config_key("switch_interval"),
        choice_param("schedule", "paper", {"paper", "reference"},
                     "paper: LoRA floor((t mod k*tau)/tau) at step t; reference: the public code's order "
                     "(first LoRA tau+1 steps)")
            .alias_flag("--switch-schedule")
            .alias_config_key("switch_schedule"),
    };
    info.unet_rows = [](int, bool cfg) { return cfg ? 2 : 1; };
    info.cost = "2, as without LoRA (plus a re-fuse at each switch)";
    info.period_steps = [](int, const MethodArgs& a) { return a.get_int("tau"); };
    info.bench_k = {5};
    info.mixes_sets = true;
    registry.add(info, [](const MethodSetup& s) { return std::make_unique<SwitchMethod>(s); });
}
