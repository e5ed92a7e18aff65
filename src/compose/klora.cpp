// K-LoRA (CVPR 2025, arXiv 2502.18461; code HVision-NKU/K-LoRA, klora.py / utils.py / inference_sd.py at
// 893d0f9). Two LoRAs, content then style. In every attention projection of the UNet (to_q, to_k, to_v,
// to_out.0 of attn1 and attn2) and at every call, the sums of the K = r_content·r_style largest |ΔW|
// entries are compared: content wins when (S_c/γ) / (S_s·scale) > 1, with γ a global content/style
// magnitude ratio and scale a function of the call count; the layer then runs W + ΔW_winner. The text
// encoder keeps its base weights. The reference counts calls across layers (n = L·step + j + 1 for the
// j-th projection in execution order, T = L·steps), which is reproduced here per step, exactly.
#include "multilora/compose/klora.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "multilora/compose/registry.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/lora/layer_adapters.h"
#include "multilora/util/error.h"
#include "multilora/util/strings.h"

namespace multilora::compose {
namespace klora {

double time_scale(int64_t n, int64_t T, double alpha, double beta, Pattern pattern) {
    const double tr = static_cast<double>(n % T);
    const double scale = alpha * tr / static_cast<double>(T) + beta;
    return pattern == Pattern::Wrapped ? std::fmod(scale, alpha) : scale;
}

float top_k_sum(const at::Tensor& delta, int64_t k) {
    at::Tensor flat = delta.abs().flatten();
    return std::get<0>(at::topk(flat, std::min<int64_t>(k, flat.numel()))).sum().item<float>();
}

double gamma(const std::vector<double>& ratios) {
    if (ratios.empty()) return std::numeric_limits<double>::infinity();
    double total = 0;
    for (double r : ratios) total += r;
    const double mean = total / static_cast<double>(ratios.size());
    double kept = 0;
    int count = 0;
    for (double r : ratios)
        if (r < 3 * mean) {
            kept += r;
            ++count;
        }
    return count == 0 ? std::numeric_limits<double>::infinity() : kept / count;
}

bool content_wins(float content_sum, float style_sum, double gamma, double scale) {
    const float c = content_sum / static_cast<float>(gamma);
    const float s = style_sum * static_cast<float>(scale);
    return c / s > 1.0f;
}

std::vector<int64_t> execution_key(const std::string& path) {
    const std::vector<std::string> parts = split(path, '.');
    auto number_after = [&](const std::string& name) -> int64_t {
        for (size_t i = 0; i + 1 < parts.size(); ++i)
            if (parts[i] == name) return std::stoll(parts[i + 1]);
        return -1;
    };
    int64_t section = starts_with(path, "down_blocks.") ? 0 : starts_with(path, "mid_block.") ? 1
                      : starts_with(path, "up_blocks.") ? 2 : -1;
    int64_t attn = path.find(".attn1.") != std::string::npos ? 1 : path.find(".attn2.") != std::string::npos ? 2 : -1;
    static const std::vector<std::string> projections{"to_q", "to_k", "to_v", "to_out.0"};
    int64_t proj = -1;
    for (size_t i = 0; i < projections.size(); ++i)
        if (ends_with(path, "." + projections[i])) proj = static_cast<int64_t>(i);
    if (section < 0 || attn < 0 || proj < 0) return {};
    const int64_t block = section == 1 ? 0 : number_after(section == 0 ? "down_blocks" : "up_blocks");
    return {section, block, number_after("attentions"), number_after("transformer_blocks"), attn, proj};
}

}  // namespace klora

namespace {

// One hooked layer: its adapters, the two LoRAs' top-K sums, in execution order.
struct HookedLayer {
    std::vector<int64_t> key;
    lora::LayerAdapters* adapters = nullptr;
    float content_sum = 0, style_sum = 0;
};

const lora::LayerDelta* delta_of(const lora::LayerAdapters& l, int slot) {
    for (const auto& d : l.deltas())
        if (d.slot == slot) return &d;
    return nullptr;
}

// up·down in float32 as [out, in] (no α/r, no weight: the reference's ΔW). A full-rank form (LoHa, LoKr,
// DoRA, ...) gives its ΔW with the form's own scale, which K-LoRA's authors never defined.
at::Tensor raw_delta(const lora::LayerDelta& d) {
    if (!d.factored()) {
        at::Tensor w = d.dense();
        return w.reshape({w.size(0), -1});
    }
    at::Tensor up = d.up.to(at::kFloat).reshape({d.up.size(0), -1});
    return up.mm(d.down.to(at::kFloat).reshape({d.down.size(0), -1}));
}

class KloraMethod final : public CompositionMethod {
public:
    explicit KloraMethod(const MethodSetup& setup);

    text::EncodedPrompts encode(const PromptText& text) override {
        adapters_->activate_text({});
        text::EncodedPrompts prompts = encode_text(model_, text);
        adapters_->activate_unet({});
        winners_.assign(layers_.size(), -1);
        content_per_step_.clear();
        return prompts;
    }

    at::Tensor predict(const StepContext& ctx) override;

    nlohmann::json record() const override {
        return {{"method", "klora"},           {"pattern", pattern_name_},
                {"alpha", alpha_},             {"beta", beta_},
                {"strength", raw_ ? "raw" : "scaled"}, {"gamma", gamma_},
                {"hooked_layers", layers_.size()}, {"content_layers_per_step", content_per_step_}};
    }

private:
    void hook_layers(const lora::AdapterSet& set);
    void compute_gamma(const lora::AdapterSet& set);

    ModelParts model_;
    lora::AdapterSet* adapters_;
    int content_, style_;
    klora::Pattern pattern_;
    std::string pattern_name_;
    double alpha_, beta_, gamma_ = 1.0;
    bool raw_;
    std::vector<HookedLayer> layers_;
    std::vector<int> winners_;
    std::vector<int> content_per_step_;
};

KloraMethod::KloraMethod(const MethodSetup& setup)
    : model_(setup.model), adapters_(setup.adapters) {
    const std::vector<int> slots = composition_slots(setup);
    if (slots.size() != 2)
        throw UsageError("--method klora is defined for exactly two LoRAs, content then style (got " +
                         std::to_string(slots.size()) + ")");
    content_ = slots[0];
    style_ = slots[1];
    pattern_name_ = setup.args.get_string("pattern");
    pattern_ = pattern_name_ == "linear" ? klora::Pattern::Linear : klora::Pattern::Wrapped;
    alpha_ = setup.args.get_real("alpha");
    beta_ = setup.args.get_real("beta");
    if (beta_ < 0) beta_ = pattern_ == klora::Pattern::Linear ? 0.5 : alpha_ * 0.85;
    raw_ = setup.args.get_string("strength") == "raw";
    hook_layers(*adapters_);
    compute_gamma(*adapters_);
}

// Every attention projection either LoRA adapts, in execution order, with both top-K sums; under raw
// strength each delta's gain cancels its scale, so the layer adds up·down itself.
void KloraMethod::hook_layers(const lora::AdapterSet& set) {
    for (const auto& l : set.unet_layers()) {
        std::vector<int64_t> key = klora::execution_key(l.path);
        if (key.empty()) continue;
        const lora::LayerDelta* c = delta_of(*l.adapters, content_);
        const lora::LayerDelta* s = delta_of(*l.adapters, style_);
        if (!c && !s) continue;
        HookedLayer h{key, l.adapters.get()};
        auto rank = [](const lora::LayerDelta* d) { return d ? (d->factored() ? d->down.size(0) : std::max<int64_t>(d->rank, 1)) : 0; };
        const int64_t k = rank(c) * rank(s);
        if (c) h.content_sum = klora::top_k_sum(raw_delta(*c), std::max<int64_t>(k, 1));
        if (s) h.style_sum = klora::top_k_sum(raw_delta(*s), std::max<int64_t>(k, 1));
        for (const lora::LayerDelta* d : {c, s})
            if (d && raw_) l.adapters->set_gain(d->slot, 1.0 / d->scale);
        layers_.push_back(h);
    }
    std::sort(layers_.begin(), layers_.end(), [](const HookedLayer& a, const HookedLayer& b) { return a.key < b.key; });
}

// γ over every layer both LoRAs adapt (UNet and text encoder, as the reference reads whole files), in path
// order.
void KloraMethod::compute_gamma(const lora::AdapterSet& set) {
    std::map<std::string, double> ratios;
    for (const auto* list : {&set.unet_layers(), &set.text_layers()})
        for (const auto& l : *list) {
            const lora::LayerDelta* c = delta_of(*l.adapters, content_);
            const lora::LayerDelta* s = delta_of(*l.adapters, style_);
            if (!c || !s) continue;
            const double num = raw_delta(*c).abs().sum().item<float>(), den = raw_delta(*s).abs().sum().item<float>();
            ratios[(list == &set.unet_layers() ? "unet." : "text.") + l.path] = num / den;
        }
    std::vector<double> values;
    for (const auto& [path, r] : ratios) values.push_back(r);
    gamma_ = klora::gamma(values);
}

at::Tensor KloraMethod::predict(const StepContext& ctx) {
    const int64_t L = static_cast<int64_t>(layers_.size());
    const int64_t T = L * std::max(1, ctx.num_steps);
    int content = 0;
    for (int64_t j = 0; j < L; ++j) {
        const HookedLayer& h = layers_[j];
        const double scale = klora::time_scale(L * ctx.step + j + 1, T, alpha_, beta_, pattern_);
        const int winner = klora::content_wins(h.content_sum, h.style_sum, gamma_, scale) ? content_ : style_;
        content += winner == content_;
        if (winner == winners_[j]) continue;
        h.adapters->set_fused({winner}, std::max(1, ctx.num_steps));
        winners_[j] = winner;
    }
    content_per_step_.push_back(content);
    return cfg_predict(model_.unet, ctx);
}

}  // namespace
}  // namespace multilora::compose

MULTILORA_COMPOSITION_METHOD(klora) {
    using namespace multilora::compose;
    MethodInfo info;
    info.name = "klora";
    info.summary = "two LoRAs (content, then style): each attention projection uses the LoRA whose top-K |dW| "
                   "wins against a time-dependent scale, per layer and step.";
    info.source = "arXiv 2502.18461 (HVision-NKU/K-LoRA 893d0f9, klora.py)";
    info.order = 60;
    info.min_loras = 2;
    info.max_loras = 2;
    info.params = {
        choice_param("pattern", "wrapped", {"wrapped", "linear"},
                     "the scale over the run: wrapped = the authors' s* ((alpha u + beta) mod alpha), linear = s"),
        real_param("alpha", 1.5, 0.0, 100.0, "the scale's slope"),
        real_param("beta", -1.0, -1.0, 100.0, "the scale's offset (-1: the pattern's, 0.85 alpha wrapped, 0.5 linear)"),
        choice_param("strength", "raw", {"raw", "scaled"},
                     "raw: W + up.down as the authors apply it; scaled: with alpha/rank, weight and --lora-scale"),
    };
    info.unet_rows = [](int, bool cfg) { return cfg ? 2 : 1; };
    info.cost = "2, as without LoRA (plus a re-fuse where a layer's winner changes)";
    info.bench_k = {2};
    registry.add(info, [](const MethodSetup& s) { return std::make_unique<KloraMethod>(s); });
}
