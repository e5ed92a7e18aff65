// LoRAtorio (arXiv 2508.11624; no public code). Each LoRA's conditional prediction is cut into d×d
// patches and compared with the base model's by cosine similarity; a SoftMin over the LoRAs gives spatial
// weights Ω that favour the LoRAs that move furthest from the base, and the conditional predictions are
// summed with them. The unconditional score is re-centred: λ·ε_base(∅) + (1 − λ)·Σ Ω̂ᵢ εᵢ(∅). The
// dynamic setting keeps, per step, the top-k most divergent LoRAs of the pool. Equations and the guessed
// constants (τ, d) are written out in docs/methods.md.
//
// One UNet forward per step, with per-row adapters: [base ∅, base c | LoRA 1 ∅, c | ...] (2N + 2 rows).
// The base rows read the prompt encoded without LoRAs; the LoRA rows read it encoded with all of them (as
// Composite encodes it, the default) or, with text_encoder=each, with their own LoRA only.
#include "multilora/compose/loratorio.h"

#include <torch/torch.h>

#include <algorithm>
#include <numeric>

#include "multilora/compose/registry.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/models/unet.h"
#include "multilora/util/error.h"

namespace multilora::compose {
namespace loratorio {

// [N, n, C, H, W] -> [N, n, H/d, W/d, C·d·d] (d = 0: one patch).
static at::Tensor patches(const at::Tensor& x, int64_t patch) {
    const int64_t N = x.size(0), n = x.size(1), C = x.size(2), H = x.size(3), W = x.size(4);
    if (patch == 0) return x.reshape({N, n, 1, 1, C * H * W});
    return x.reshape({N, n, C, H / patch, patch, W / patch, patch})
        .permute({0, 1, 3, 5, 2, 4, 6})
        .reshape({N, n, H / patch, W / patch, C * patch * patch});
}

at::Tensor patch_similarity(const at::Tensor& lora_cond, const at::Tensor& base_cond, int64_t patch) {
    const int64_t H = lora_cond.size(3), W = lora_cond.size(4);
    if (patch < 0 || (patch > 0 && (H % patch != 0 || W % patch != 0)))
        throw UsageError("loratorio: patch " + std::to_string(patch) + " does not divide the latent size " +
                         std::to_string(H) + "x" + std::to_string(W) + " (image size / 8); use a divisor or 0");
    at::Tensor a = patches(lora_cond.to(at::kFloat), patch);
    at::Tensor b = patches(base_cond.to(at::kFloat).unsqueeze(0), patch);
    return at::cosine_similarity(a, b, -1, 1e-8);
}

at::Tensor softmin_weights(const at::Tensor& similarity, double tau, const std::vector<bool>& keep) {
    at::Tensor logits = -similarity / tau;
    if (!keep.empty()) {
        std::vector<float> mask(keep.size());
        for (size_t i = 0; i < keep.size(); ++i) mask[i] = keep[i] ? 0.0f : -INFINITY;
        std::vector<int64_t> shape(similarity.dim(), 1);
        shape[0] = static_cast<int64_t>(keep.size());
        logits = logits + torch::tensor(mask).view(shape).to(similarity.device());
    }
    return at::softmax(logits, 0);
}

std::vector<std::vector<bool>> top_k_divergent(const at::Tensor& similarity, int k) {
    const int64_t N = similarity.size(0), n = similarity.size(1);
    at::Tensor divergence = (1 - similarity).reshape({N, n, -1}).mean(-1).to(at::kDouble).cpu().contiguous();
    std::vector<std::vector<bool>> keep(N, std::vector<bool>(n, false));
    for (int64_t b = 0; b < n; ++b) {
        std::vector<int64_t> order(N);
        std::iota(order.begin(), order.end(), 0);
        // Most divergent first; ties keep the LoRA order.
        std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) {
            return divergence[x][b].item<double>() > divergence[y][b].item<double>();
        });
        for (int64_t i = 0; i < std::min<int64_t>(k, N); ++i) keep[order[i]][b] = true;
    }
    return keep;
}

at::Tensor upsample(const at::Tensor& weights, int64_t patch, int64_t height, int64_t width) {
    if (patch == 0) return weights.expand({weights.size(0), weights.size(1), height, width}).unsqueeze(2);
    return weights.repeat_interleave(patch, 2).repeat_interleave(patch, 3).unsqueeze(2);
}

// Ω per image: the SoftMin over the kept LoRAs of each image.
static at::Tensor weights_for(const at::Tensor& similarity, const Settings& s) {
    const int64_t N = similarity.size(0);
    if (s.top_k <= 0 || s.top_k >= N) return softmin_weights(similarity, s.tau);
    const auto keep = top_k_divergent(similarity, s.top_k);
    std::vector<at::Tensor> per_image;
    for (int64_t b = 0; b < similarity.size(1); ++b) {
        std::vector<bool> k(N);
        for (int64_t i = 0; i < N; ++i) k[i] = keep[i][b];
        per_image.push_back(softmin_weights(similarity.narrow(1, b, 1), s.tau, k));
    }
    return at::cat(per_image, 1);
}

Scores combine(const at::Tensor& lora_cond, const at::Tensor& base_cond, const at::Tensor& lora_uncond,
               const at::Tensor& base_uncond, const Settings& s) {
    at::Tensor sim = patch_similarity(lora_cond, base_cond, s.patch);
    at::Tensor omega = upsample(weights_for(sim, s), s.patch, lora_cond.size(3), lora_cond.size(4))
                           .to(lora_cond.scalar_type());
    Scores out;
    out.cond = (omega * lora_cond).sum(0);
    if (lora_uncond.defined()) out.uncond = s.lambda * base_uncond + (1 - s.lambda) * (omega * lora_uncond).sum(0);
    return out;
}

}  // namespace loratorio

namespace {

class LoratorioMethod final : public CompositionMethod {
public:
    explicit LoratorioMethod(const MethodSetup& setup)
        : model_(setup.model), adapters_(setup.adapters), slots_(composition_slots(setup)) {
        settings_.patch = setup.args.get_int("patch");
        settings_.tau = setup.args.get_real("tau");
        settings_.lambda = setup.args.get_real("lambda");
        settings_.top_k = setup.args.get_int("top_k");
        each_text_ = setup.args.get_string("text_encoder") == "each";
    }

    text::EncodedPrompts encode(const PromptText& text) override {
        adapters_->activate_text({});
        base_prompts_ = encode_text(model_, text);
        lora_prompts_.clear();
        if (each_text_)
            for (int slot : slots_) {
                adapters_->activate_text({slot});
                lora_prompts_.push_back(encode_text(model_, text));
            }
        adapters_->activate_text(slots_);
        text::EncodedPrompts prompts = encode_text(model_, text);
        adapters_->activate_text({});
        adapters_->activate_unet({});
        kept_.clear();
        return prompts;
    }

    at::Tensor predict(const StepContext& ctx) override;

    nlohmann::json record() const override {
        nlohmann::json r = {{"method", "loratorio"},
                            {"patch", settings_.patch},
                            {"tau", settings_.tau},
                            {"lambda", settings_.lambda},
                            {"top_k", settings_.top_k},
                            {"text_encoder", each_text_ ? "each" : "all"}};
        if (!kept_.empty()) r["kept_loras_per_step"] = kept_;
        return r;
    }

private:
    // Each row's adapters and text: [base ∅ ×n, base c ×n, LoRA i ∅ ×n, c ×n, ...] (no ∅ rows without CFG).
    void lay_out_rows(const StepContext& ctx, int64_t n, bool cfg, at::Tensor& input, at::Tensor& context);
    void record_kept(const at::Tensor& lora_cond, const at::Tensor& base_cond);

    ModelParts model_;
    lora::AdapterSet* adapters_;
    std::vector<int> slots_;
    loratorio::Settings settings_;
    bool each_text_ = false;
    text::EncodedPrompts base_prompts_;
    std::vector<text::EncodedPrompts> lora_prompts_;  // text_encoder=each: per composed LoRA
    std::vector<std::vector<int>> kept_;  // dynamic setting: the kept LoRAs (composition indices) per step
};

void LoratorioMethod::lay_out_rows(const StepContext& ctx, int64_t n, bool cfg, at::Tensor& input,
                                   at::Tensor& context) {
    const int64_t groups = 1 + static_cast<int64_t>(slots_.size());
    const int64_t per_group = cfg ? 2 * n : n;
    const at::Tensor lora_text = cfg_context(ctx.prompts, ctx);
    std::vector<at::Tensor> contexts{cfg_context(base_prompts_, ctx)};
    std::vector<std::vector<int>> rows(per_group);  // the base group: no adapter
    for (size_t i = 0; i < slots_.size(); ++i) {
        const int slot = slots_[i];
        contexts.push_back(each_text_ ? cfg_context(lora_prompts_[i], ctx) : lora_text);
        for (int64_t r = 0; r < per_group; ++r) rows.push_back({slot});
    }
    adapters_->activate_unet_rows(rows);
    input = cfg_latents(ctx).repeat({groups, 1, 1, 1});
    context = at::cat(contexts, 0);
}

at::Tensor LoratorioMethod::predict(const StepContext& ctx) {
    const int64_t n = ctx.scaled_latents.size(0), N = static_cast<int64_t>(slots_.size());
    const bool cfg = ctx.guidance_scale > 1.0;
    at::Tensor input, context;
    lay_out_rows(ctx, n, cfg, input, context);
    at::Tensor eps = model_.unet.forward(input, ctx.timestep, context);
    adapters_->activate_unet({});
    const auto& s = ctx.scaled_latents.sizes();
    eps = eps.view({1 + N, cfg ? 2 : 1, n, s[1], s[2], s[3]});
    at::Tensor base_cond = eps[0][cfg ? 1 : 0], lora_cond = eps.narrow(0, 1, N).select(1, cfg ? 1 : 0);
    at::Tensor base_uncond = cfg ? eps[0][0] : at::Tensor();
    at::Tensor lora_uncond = cfg ? eps.narrow(0, 1, N).select(1, 0) : at::Tensor();
    if (settings_.top_k > 0 && settings_.top_k < N) record_kept(lora_cond, base_cond);
    loratorio::Scores scores = loratorio::combine(lora_cond, base_cond, lora_uncond, base_uncond, settings_);
    if (!cfg) return scores.cond;
    return scores.uncond + ctx.guidance_scale * (scores.cond - scores.uncond);
}

void LoratorioMethod::record_kept(const at::Tensor& lora_cond, const at::Tensor& base_cond) {
    const auto keep =
        loratorio::top_k_divergent(loratorio::patch_similarity(lora_cond, base_cond, settings_.patch), settings_.top_k);
    std::vector<int> kept;
    for (size_t i = 0; i < keep.size(); ++i)
        if (keep[i][0]) kept.push_back(static_cast<int>(i));
    kept_.push_back(kept);
}

}  // namespace
}  // namespace multilora::compose

MULTILORA_COMPOSITION_METHOD(loratorio) {
    using namespace multilora::compose;
    MethodInfo info;
    info.name = "loratorio";
    info.summary = "patchwise SoftMin of each LoRA's cosine similarity to the base prediction weights the LoRAs "
                   "in space; the unconditional score is re-centred on the base's.";
    info.source = "arXiv 2508.11624 (no public code; tau and patch are not published: our defaults)";
    info.order = 40;
    info.params = {
        int_param("patch", 8, 0, 1024, "patch side in latent pixels (0: the whole latent, one global weight)"),
        real_param("tau", 0.1, 1e-6, 1e6, "SoftMin temperature over the cosine similarities"),
        real_param("lambda", 0.5, 0.0, 1.0, "re-centring: the base unconditional's share"),
        int_param("top_k", 0, 0, 1000, "dynamic setting: keep the k most divergent LoRAs per step (0: all)"),
        choice_param("text_encoder", "all", {"all", "each"},
                     "the LoRA rows' prompt: encoded with every LoRA (as Composite) or with the row's own LoRA"),
    };
    info.unet_rows = [](int k, bool cfg) { return (cfg ? 2 : 1) * (std::max(1, k) + 1); };
    info.cost = "2k + 2 (one batched forward: the base rows and each LoRA's, per-row adapters)";
    info.bench_k = {2, 5};
    registry.add(info, [](const MethodSetup& s) { return std::make_unique<LoratorioMethod>(s); });
}
