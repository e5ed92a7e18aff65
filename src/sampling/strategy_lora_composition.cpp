#include "multilora/sampling/lora_composition.h"

#include <torch/torch.h>

#include <numeric>

#include "multilora/lora/adapter_set.h"
#include "multilora/pipeline/model_loader.h"
#include "multilora/util/error.h"

namespace multilora::sampling {

CompositionMethod parse_method(const std::string& name) {
    if (name == "none") return CompositionMethod::None;
    if (name == "merge") return CompositionMethod::Merge;
    if (name == "switch") return CompositionMethod::Switch;
    if (name == "composite") return CompositionMethod::Composite;
    throw UsageError("unknown method \"" + name + "\" (choose none, merge, switch or composite)");
}

std::string method_name(CompositionMethod m) {
    switch (m) {
        case CompositionMethod::None: return "none";
        case CompositionMethod::Merge: return "merge";
        case CompositionMethod::Switch: return "switch";
        case CompositionMethod::Composite: return "composite";
    }
    return "none";
}

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

LoraComposer::LoraComposer(pipeline::StableDiffusionModel& model, lora::AdapterSet* adapters,
                           CompositionSettings settings)
    : model_(model), adapters_(adapters), settings_(settings) {
    const int count = adapters ? adapters->count() : 0;
    if (settings_.slots.empty()) {
        slots_.resize(count);
        std::iota(slots_.begin(), slots_.end(), 0);
    } else {
        for (int s : settings_.slots)
            if (s < 0 || s >= count)
                throw RuntimeError("internal: LoRA slot " + std::to_string(s) + " is not attached (" +
                                   std::to_string(count) + " LoRAs attached)");
        slots_ = settings_.slots;
    }
    k_ = static_cast<int>(slots_.size());
    if (settings_.method != CompositionMethod::None && k_ == 0)
        throw UsageError("--method " + method_name(settings_.method) + " needs at least one --lora");
    if (settings_.switch_interval < 1) throw UsageError("--switch-interval must be at least 1");
}

pipeline::EncodedPrompts LoraComposer::encode(const pipeline::GenerationRequest& r) {
    const std::vector<int>& all = slots_;
    if (adapters_) {
        switch (settings_.method) {
            case CompositionMethod::None: adapters_->activate_text({}); break;
            case CompositionMethod::Merge:
            case CompositionMethod::Composite: adapters_->activate_text(all); break;
            // The reference encodes the prompt once, with only the first LoRA in the text encoder.
            case CompositionMethod::Switch: adapters_->activate_text({all.front()}); break;
        }
    }
    auto prompts = pipeline::encode_prompts(*model_.tokenizer, *model_.text_encoder, r.prompt, r.negative_prompt,
                                            r.long_prompt);
    if (adapters_) {
        adapters_->activate_text({});
        if (settings_.method == CompositionMethod::Merge) adapters_->activate_unet(all);
        else adapters_->activate_unet({});
    }
    switch_trace_.clear();
    last_switch_lora_ = -1;
    return prompts;
}

at::Tensor LoraComposer::predict(const pipeline::NoiseContext& ctx) {
    switch (settings_.method) {
        case CompositionMethod::None:
        case CompositionMethod::Merge: return pipeline::predict_noise_cfg(model_, ctx);
        case CompositionMethod::Switch: {
            int active = switch_active_lora(ctx.step, k_, settings_.switch_interval, settings_.switch_schedule);
            if (active != last_switch_lora_) {
                // Re-fusing the newly active LoRA costs ~r/rows of one step per layer; the multistep solver's
                // history is kept across the switch, as in the reference.
                // Each layer fuses the newly active LoRA only if that pays off over one switch interval.
                adapters_->activate_unet({slots_[active]}, settings_.switch_interval);
                last_switch_lora_ = active;
            }
            switch_trace_.push_back(active);
            return pipeline::predict_noise_cfg(model_, ctx);
        }
        case CompositionMethod::Composite: break;
    }
    // Composite: every LoRA alone in the UNet, all in one batch laid out as
    // [LoRA 0: uncond×n, cond×n | LoRA 1: uncond×n, cond×n | ...], each row with its own adapter.
    const int64_t n = ctx.scaled_latents.size(0);
    const bool cfg = ctx.guidance_scale > 1.0;
    const int64_t per_lora = cfg ? 2 * n : n;
    at::Tensor uncond = ctx.prompts.uncond.expand({n, -1, -1});
    at::Tensor cond = ctx.prompts.cond.expand({n, -1, -1});
    at::Tensor lora_ctx = cfg ? at::cat({uncond, cond}, 0) : cond;
    at::Tensor lora_in = cfg ? at::cat({ctx.scaled_latents, ctx.scaled_latents}, 0) : ctx.scaled_latents;

    // As many LoRAs per forward as the row budget allows (all of them by default).
    int64_t loras_per_chunk = k_;
    if (settings_.max_batch_rows > 0)
        loras_per_chunk = std::max<int64_t>(1, settings_.max_batch_rows / per_lora);
    at::Tensor sum_uncond, sum_cond;
    for (int64_t first = 0; first < k_; first += loras_per_chunk) {
        const int64_t count = std::min<int64_t>(loras_per_chunk, k_ - first);
        std::vector<std::vector<int>> rows;
        for (int64_t i = 0; i < count; ++i)
            for (int64_t r = 0; r < per_lora; ++r) rows.push_back({slots_[first + i]});
        adapters_->activate_unet_rows(rows);
        at::Tensor input = count == 1 ? lora_in : lora_in.repeat({count, 1, 1, 1});
        at::Tensor context = count == 1 ? lora_ctx : lora_ctx.repeat({count, 1, 1});
        at::Tensor eps = model_.unet->forward(input, ctx.timestep, context).view(
            {count, per_lora, lora_in.size(1), lora_in.size(2), lora_in.size(3)});
        at::Tensor eps_uncond = cfg ? eps.narrow(1, 0, n).sum(0) : at::Tensor();
        at::Tensor eps_cond = (cfg ? eps.narrow(1, n, n) : eps).sum(0);
        if (cfg) sum_uncond = sum_uncond.defined() ? sum_uncond + eps_uncond : eps_uncond;
        sum_cond = sum_cond.defined() ? sum_cond + eps_cond : eps_cond;
    }
    adapters_->activate_unet({});
    at::Tensor mean_cond = sum_cond / static_cast<double>(k_);
    if (!cfg) return mean_cond;
    at::Tensor mean_uncond = sum_uncond / static_cast<double>(k_);
    return mean_uncond + ctx.guidance_scale * (mean_cond - mean_uncond);
}

nlohmann::json LoraComposer::record() const {
    nlohmann::json j{{"method", method_name(settings_.method)}};
    if (settings_.method == CompositionMethod::Switch) {
        j["switch_interval"] = settings_.switch_interval;
        j["switch_schedule"] = switch_schedule_name(settings_.switch_schedule);
        j["active_lora_per_step"] = switch_trace_;
    }
    if (settings_.method == CompositionMethod::Composite) j["max_batch_rows"] = settings_.max_batch_rows;
    return j;
}

}  // namespace multilora::sampling
