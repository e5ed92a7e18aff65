// MultLFG (arXiv 2505.20525, Roy, Suin, Shah, Chellappa; no public code). Each LoRA alone gives its
// unconditional and conditional prediction, as in Composite; each LoRA's guided prediction is split into
// Haar wavelet subbands, and per subband the top-k LoRAs whose prediction changed most between timestep t
// and the reference "t − 1" share it, in proportion to that change; the inverse DWT gives the step's ε.
// Only the paper's abstract, introduction and a summary of its Algorithm 1 could be read here: the
// reconstruction, and every choice it needed, is written out in docs/methods.md.
//
// One UNet forward per step with per-row adapters: [LoRA 1: ∅ ×n, c ×n | LoRA 2 ...] (2k rows), and with
// reference=lookahead the same rows again at timestep t − dt (4k rows).
#include "multilora/compose/multlfg.h"

#include <torch/torch.h>

#include <algorithm>

#include "multilora/compose/lora_rows.h"
#include "multilora/compose/registry.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/models/unet.h"
#include "multilora/util/error.h"

namespace multilora::compose {
namespace multlfg {

namespace {

// One level: the four subbands of each 2×2 block.
std::vector<at::Tensor> haar_level(const at::Tensor& x) {
    const int64_t H = x.size(-2), W = x.size(-1);
    const at::Tensor top = x.slice(-2, 0, H, 2), bottom = x.slice(-2, 1, H, 2);
    const at::Tensor a = top.slice(-1, 0, W, 2), b = top.slice(-1, 1, W, 2);
    const at::Tensor c = bottom.slice(-1, 0, W, 2), d = bottom.slice(-1, 1, W, 2);
    return {(a + b + c + d) / 2, (a + b - c - d) / 2, (a - b + c - d) / 2, (a - b - c + d) / 2};
}

// Interleaves [..., h, w] tensors as x[2i, 2j] = a, x[2i, 2j+1] = b, x[2i+1, 2j] = c, x[2i+1, 2j+1] = d.
at::Tensor interleave(const at::Tensor& a, const at::Tensor& b, const at::Tensor& c, const at::Tensor& d) {
    auto sizes = a.sizes().vec();
    const int64_t h = sizes[sizes.size() - 2], w = sizes.back();
    sizes[sizes.size() - 2] = 2 * h;
    sizes.back() = 2 * w;
    const at::Tensor top = at::stack({a, b}, -1).flatten(-2);     // [..., h, 2w]
    const at::Tensor bottom = at::stack({c, d}, -1).flatten(-2);  // [..., h, 2w]
    return at::stack({top, bottom}, -2).reshape(sizes);          // [..., h, 2, 2w] -> [..., 2h, 2w]
}

}  // namespace

std::vector<at::Tensor> haar_dwt(const at::Tensor& x, int levels) {
    const int64_t H = x.size(-2), W = x.size(-1), step = int64_t{1} << std::max(levels, 0);
    if (levels < 1 || H % step != 0 || W % step != 0)
        throw UsageError("multlfg: " + std::to_string(levels) + " wavelet level(s) need the latent size " +
                         std::to_string(H) + "x" + std::to_string(W) + " (image size / 8) divisible by " +
                         std::to_string(step) + "; use fewer levels");
    std::vector<at::Tensor> details;  // finest level first
    at::Tensor approx = x;
    for (int l = 0; l < levels; ++l) {
        std::vector<at::Tensor> q = haar_level(approx);
        approx = q[0];
        details.insert(details.begin(), q.begin() + 1, q.end());  // coarser levels go in front
    }
    details.insert(details.begin(), approx);
    return details;
}

at::Tensor haar_idwt(const std::vector<at::Tensor>& bands) {
    at::Tensor approx = bands.at(0);
    for (size_t i = 1; i + 2 < bands.size(); i += 3) {
        const at::Tensor &lh = bands[i], &hl = bands[i + 1], &hh = bands[i + 2];
        approx = interleave((approx + lh + hl + hh) / 2, (approx + lh - hl - hh) / 2, (approx - lh + hl - hh) / 2,
                            (approx - lh - hl + hh) / 2);
    }
    return approx;
}

std::vector<std::string> subband_names(int levels) {
    std::vector<std::string> names{"LL" + std::to_string(levels)};
    for (int l = levels; l >= 1; --l)
        for (const char* kind : {"LH", "HL", "HH"}) names.push_back(kind + std::to_string(l));
    return names;
}

at::Tensor subband_scores(const at::Tensor& now, const at::Tensor& ref, int levels) {
    const std::vector<at::Tensor> diff = haar_dwt(now.to(at::kFloat) - ref.to(at::kFloat), levels);
    std::vector<at::Tensor> scores;
    for (const at::Tensor& band : diff) scores.push_back(band.flatten(2).norm(2, {2}));  // [N, n]
    return at::stack(scores, 0);
}

at::Tensor subband_weights(const at::Tensor& scores, int top_k, Weighting weighting) {
    const int64_t N = scores.size(1);
    const int64_t k = (top_k <= 0 || top_k >= N) ? N : top_k;
    // Rank of each LoRA per subband and image (0: largest score; ties keep the LoRA order).
    const at::Tensor order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/1, /*descending=*/true));
    const at::Tensor rank = order.argsort(int64_t{1}, false);  // the inverse permutation
    const at::Tensor kept = (rank < k).to(scores.scalar_type());
    if (weighting == Weighting::Uniform) return kept / static_cast<double>(k);
    const at::Tensor r = scores * kept, total = r.sum(1, /*keepdim=*/true);
    return at::where(total > 0, r / total.clamp_min(1e-30), kept / static_cast<double>(k));
}

at::Tensor fuse(const at::Tensor& preds, const at::Tensor& weights, int levels) {
    const std::vector<at::Tensor> bands = haar_dwt(preds, levels);
    std::vector<at::Tensor> fused;
    for (size_t b = 0; b < bands.size(); ++b) {
        const at::Tensor w = weights[static_cast<int64_t>(b)].to(bands[b].scalar_type())
                                 .reshape({preds.size(0), preds.size(1), 1, 1, 1});
        fused.push_back((w * bands[b]).sum(0));
    }
    return haar_idwt(fused);
}

at::Tensor compose(const at::Tensor& now, const at::Tensor& ref, const Settings& s, at::Tensor* weights) {
    const at::Tensor x = now.to(at::kFloat);
    const int64_t N = x.size(0), n = x.size(1), bands = 3 * s.levels + 1;
    at::Tensor w = ref.defined() ? subband_weights(subband_scores(x, ref, s.levels), s.top_k, s.weighting)
                                 : at::full({bands, N, n}, 1.0 / static_cast<double>(N), x.options());
    if (weights) *weights = w;
    return fuse(x, w, s.levels).to(now.scalar_type());
}

}  // namespace multlfg

namespace {

class MultlfgMethod final : public CompositionMethod {
public:
    explicit MultlfgMethod(const MethodSetup& setup)
        : model_(setup.model), adapters_(setup.adapters), slots_(composition_slots(setup)) {
        settings_.levels = setup.args.get_int("levels");
        settings_.top_k = setup.args.get_int("top_k");
        settings_.weighting = setup.args.get_string("weights") == "uniform" ? multlfg::Weighting::Uniform
                                                                          : multlfg::Weighting::Proportional;
        lookahead_ = setup.args.get_string("reference") == "lookahead";
        dt_ = setup.args.get_real("dt");
    }

    text::EncodedPrompts encode(const PromptText& text) override {
        adapters_->activate_text(slots_);
        text::EncodedPrompts prompts = encode_text(model_, text);
        adapters_->activate_text({});
        adapters_->activate_unet({});
        previous_ = at::Tensor();
        weights_per_step_.clear();
        return prompts;
    }

    at::Tensor predict(const StepContext& ctx) override;

    nlohmann::json record() const override {
        return {{"method", "multlfg"},
                {"levels", settings_.levels},
                {"top_k", settings_.top_k},
                {"weights", settings_.weighting == multlfg::Weighting::Uniform ? "uniform" : "proportional"},
                {"reference", lookahead_ ? "lookahead" : "previous"},
                {"dt", dt_},
                {"subbands", multlfg::subband_names(settings_.levels)},
                {"subband_weights_per_step", weights_per_step_}};
    }

private:
    // Each LoRA's guided prediction at t and, with lookahead, at t − dt: [1 or 2, N, n, C, H, W].
    at::Tensor guided_predictions(const StepContext& ctx);
    void record_weights(const at::Tensor& w);

    ModelParts model_;
    lora::AdapterSet* adapters_;
    std::vector<int> slots_;
    multlfg::Settings settings_;
    bool lookahead_ = false;
    double dt_ = 1.0;
    at::Tensor previous_;  // reference=previous: the last step's guided predictions
    std::vector<std::vector<std::vector<double>>> weights_per_step_;  // [step][subband][LoRA], image 0
};

at::Tensor MultlfgMethod::guided_predictions(const StepContext& ctx) {
    const int64_t N = static_cast<int64_t>(slots_.size()), n = ctx.scaled_latents.size(0);
    const bool cfg = ctx.guidance_scale > 1.0;
    LoraRowBatch b = lora_row_batch(ctx, slots_);
    at::Tensor timesteps = ctx.timestep;
    if (lookahead_) {
        const int64_t rows = b.input.size(0);
        const at::Tensor t = ctx.timestep.to(at::kFloat).reshape({1});
        timesteps = at::cat({t.expand({rows}), (t - dt_).clamp_min(0.0).expand({rows})});
        b.input = at::cat({b.input, b.input});
        b.context = at::cat({b.context, b.context});
        const std::vector<std::vector<int>> once = b.row_slots;
        b.row_slots.insert(b.row_slots.end(), once.begin(), once.end());
    }
    adapters_->activate_unet_rows(b.row_slots);
    at::Tensor eps = model_.unet.forward(b.input, timesteps, b.context);
    adapters_->activate_unet({});
    const auto& s = ctx.scaled_latents.sizes();
    eps = eps.view({lookahead_ ? 2 : 1, N, b.rows_per_lora, s[1], s[2], s[3]});
    if (!cfg) return eps;
    const at::Tensor u = eps.narrow(2, 0, n), c = eps.narrow(2, n, n);
    return u + ctx.guidance_scale * (c - u);
}

at::Tensor MultlfgMethod::predict(const StepContext& ctx) {
    const at::Tensor guided = guided_predictions(ctx);
    const at::Tensor now = guided[0];
    if (ctx.step == 0 && !lookahead_) previous_ = at::Tensor();
    const at::Tensor ref = lookahead_ ? guided[1] : previous_;
    at::Tensor w;
    at::Tensor eps = multlfg::compose(now, ref, settings_, &w);
    if (!lookahead_) previous_ = now;
    record_weights(w);
    return eps;
}

void MultlfgMethod::record_weights(const at::Tensor& w) {
    const at::Tensor first = w.select(2, 0).to(at::kDouble).cpu().contiguous();  // [bands, N], image 0
    std::vector<std::vector<double>> step(first.size(0));
    for (int64_t b = 0; b < first.size(0); ++b)
        for (int64_t i = 0; i < first.size(1); ++i) step[b].push_back(first[b][i].item<double>());
    weights_per_step_.push_back(std::move(step));
}

}  // namespace
}  // namespace multilora::compose

MULTILORA_COMPOSITION_METHOD(multlfg) {
    using namespace multilora::compose;
    MethodInfo info;
    info.name = "multlfg";
    info.summary = "each LoRA's guided prediction is split into Haar wavelet subbands; per subband the top-k LoRAs "
                   "whose prediction changed most since the reference timestep share it, in proportion.";
    info.source = "arXiv 2505.20525 (no public code; method section unread here: reconstructed, docs/methods.md)";
    info.order = 47;
    info.params = {
        int_param("levels", 2, 1, 6, "Haar DWT levels (3*levels + 1 subbands; 2^levels must divide the latent size)"),
        int_param("top_k", 2, 0, 1000, "LoRAs kept per subband, by their change since the reference (0: all)"),
        choice_param("weights", "proportional", {"proportional", "uniform"},
                     "the kept LoRAs' shares of a subband: proportional to their change, or equal"),
        choice_param("reference", "previous", {"previous", "lookahead"},
                     "the \"t - 1\" prediction: the previous step's (no extra rows; step 0 averages) or "
                     "UNet(z_t, t - dt) in the same forward (twice the rows)"),
        real_param("dt", 1.0, 0.0, 1000.0, "reference=lookahead: the reference timestep's offset below t"),
    };
    info.unet_rows = [](int k, bool cfg) { return (cfg ? 2 : 1) * std::max(1, k); };
    info.cost = "2k (one batched forward with per-row adapters; reference=lookahead: 4k)";
    info.bench_k = {2, 5};
    registry.add(info, [](const MethodSetup& s) { return std::make_unique<MultlfgMethod>(s); });
}
