// W-Switch (arXiv 2606.03792; GeorgeTsoumplekas/PromptAware-Multi-LoRA-Composition f148887,
// "weighted_switch_adaptive_tailed" with "ablated" weights). Switch whose blocks follow the LoRAs' prompt
// weights (compose/prompt_aware.h): LoRA i stays active for max(1, round(τ·wᵢ/max w)) steps, cycling in
// composition order; the last `reserved` steps go to the first LoRA (ComposLoRA's character). As in the
// reference, the first LoRA holds step 0 and the block schedule starts at step 1 (a callback at the end of
// each step sets the next LoRA), so its entry for the last step is never used; schedule=paper reads entry
// s at step s instead. The text encoder encodes with the first LoRA only, as Switch. The weights are read
// on the base text encoder (the reference reads them with whichever LoRA was left active).
#include <torch/torch.h>

#include "multilora/compose/prompt_aware.h"
#include "multilora/compose/registry.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/util/error.h"

namespace multilora::compose {
namespace {

class WSwitchMethod final : public CompositionMethod {
public:
    explicit WSwitchMethod(const MethodSetup& setup)
        : model_(setup.model),
          adapters_(setup.adapters),
          slots_(composition_slots(setup)),
          triggers_(setup.triggers),
          tau_(setup.args.get_int("tau")),
          reserved_(setup.args.get_int("reserved")),
          reference_(setup.args.get_string("schedule") == "reference") {
        triggers_.resize(slots_.size());
    }

    text::EncodedPrompts encode(const PromptText& text) override {
        adapters_->activate_text({});
        weights_ = prompt_aware::ablation_weights(model_, text.prompt, triggers_);
        blocks_ = prompt_aware::block_sizes(weights_, tau_);
        adapters_->activate_text({slots_.front()});
        text::EncodedPrompts prompts = encode_text(model_, text);
        adapters_->activate_text({});
        adapters_->activate_unet({});
        trace_.clear();
        schedule_.clear();
        last_ = -1;
        return prompts;
    }

    at::Tensor predict(const StepContext& ctx) override {
        if (schedule_.empty())
            schedule_ = prompt_aware::block_schedule(blocks_, std::max(1, ctx.num_steps), reserved_, 0);
        const int active = prompt_aware::active_at(schedule_, ctx.step, reference_);
        if (active != last_) {
            adapters_->activate_unet({slots_[active]}, blocks_[active]);
            last_ = active;
        }
        trace_.push_back(active);
        return cfg_predict(model_.unet, ctx);
    }

    nlohmann::json record() const override {
        return {{"method", "w-switch"},  {"tau", tau_},       {"reserved", reserved_},
                {"schedule", reference_ ? "reference" : "paper"}, {"weights", weights_},
                {"blocks", blocks_},     {"active_lora_per_step", trace_}};
    }

private:
    ModelParts model_;
    lora::AdapterSet* adapters_;
    std::vector<int> slots_;
    std::vector<std::vector<std::string>> triggers_;
    int tau_, reserved_;
    bool reference_;
    std::vector<double> weights_;
    std::vector<int> blocks_, schedule_, trace_;
    int last_ = -1;
};

}  // namespace
}  // namespace multilora::compose

MULTILORA_COMPOSITION_METHOD(w_switch) {
    using namespace multilora::compose;
    MethodInfo info;
    info.name = "w-switch";
    info.summary = "Switch with blocks sized by each LoRA's prompt weight (its trigger words' importance); the "
                   "first LoRA also takes the last steps.";
    info.source = "arXiv 2606.03792 (GeorgeTsoumplekas/PromptAware-Multi-LoRA-Composition f148887)";
    info.order = 50;
    info.params = {
        int_param("tau", 5, 1, 1000, "steps of the heaviest LoRA's block"),
        int_param("reserved", 5, 0, 100000, "the last steps, given to the first LoRA (0: none)"),
        choice_param("schedule", "reference", {"reference", "paper"},
                     "reference: the code's order (the first LoRA holds step 0, entry s-1 at step s); paper: entry s"),
    };
    info.unet_rows = [](int, bool cfg) { return cfg ? 2 : 1; };
    info.cost = "2, as without LoRA (plus a re-fuse at each switch, and 1 + k text-encoder passes once)";
    info.period_steps = [](int, const MethodArgs& a) { return a.get_int("tau"); };
    info.bench_k = {5};
    registry.add(info, [](const MethodSetup& s) { return std::make_unique<WSwitchMethod>(s); });
}
