// LoRAtorio's weighting (arXiv 2508.11624), as pure tensor functions so that tests can work them by hand.
// Shapes: N LoRAs, n images, latents [C, H, W]; `lora_*` are [N, n, C, H, W], `base_*` [n, C, H, W].
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace multilora::compose::loratorio {

// Cosine similarity of each LoRA's d×d patch (flattened over channels and pixels) with the same patch of
// the base prediction: [N, n, H/d, W/d]. d = 0: the whole latent is one patch. Throws UsageError when d
// does not divide H and W.
at::Tensor patch_similarity(const at::Tensor& lora_cond, const at::Tensor& base_cond, int64_t patch);

// SoftMin over the LoRAs (dim 0): Ω = exp(−S/τ) / Σⱼ exp(−Sⱼ/τ); LoRAs whose `keep` entry is false get 0.
at::Tensor softmin_weights(const at::Tensor& similarity, double tau, const std::vector<bool>& keep = {});

// The dynamic setting's choice, per image: the k LoRAs that diverge most from the base, by mean(1 − S)
// over the patches; keep[i][b] for LoRA i and image b.
std::vector<std::vector<bool>> top_k_divergent(const at::Tensor& similarity, int k);

// Ω on the patch grid, repeated over each d×d block and broadcast over channels: [N, n, 1, H, W].
at::Tensor upsample(const at::Tensor& weights, int64_t patch, int64_t height, int64_t width);

struct Scores {
    at::Tensor cond;    // Σᵢ Ω̂ᵢ ⊙ εᵢ(c)
    at::Tensor uncond;  // λ·ε_base(∅) + (1 − λ)·Σᵢ Ω̂ᵢ ⊙ εᵢ(∅); undefined without guidance
};

struct Settings {
    int64_t patch = 8;
    double tau = 0.1;
    double lambda = 0.5;
    int top_k = 0;  // 0: every LoRA (the static setting)
};

// The composed conditional and re-centred unconditional scores. `lora_uncond` / `base_uncond` may be
// undefined (no guidance).
Scores combine(const at::Tensor& lora_cond, const at::Tensor& base_cond, const at::Tensor& lora_uncond,
               const at::Tensor& base_uncond, const Settings& s);

}  // namespace multilora::compose::loratorio
