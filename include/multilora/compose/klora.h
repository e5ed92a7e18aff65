// K-LoRA's per-layer choice (arXiv 2502.18461, HVision-NKU/K-LoRA klora.py), as pure functions for tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace multilora::compose::klora {

// The authors' two scale patterns: "s" rises linearly, α·u + β; "s*" wraps it, (α·u + β) mod α.
enum class Pattern { Linear, Wrapped };

// The time scale at global call number n (1-based; one call per hooked layer per step) of a run of T calls:
// α·(n mod T)/T + β, then mod α for the wrapped pattern.
double time_scale(int64_t n, int64_t T, double alpha, double beta, Pattern pattern);

// The sum of the K largest |entries| of ΔW.
float top_k_sum(const at::Tensor& delta, int64_t k);

// γ: the mean of the per-layer ratios Σ|ΔW_content| / Σ|ΔW_style|, over the layers whose ratio is below
// three times the mean of all of them (infinity when none is).
double gamma(const std::vector<double>& ratios);

// True when the content LoRA wins: (S_content / γ) / (S_style · scale) > 1, in float as the reference
// computes it (ties and NaN go to the style LoRA).
bool content_wins(float content_sum, float style_sum, double gamma, double scale);

// The position of an attention projection of the UNet in execution order (down blocks, mid, up blocks;
// attn1 before attn2; to_q, to_k, to_v, to_out.0), or an empty key for any other layer.
std::vector<int64_t> execution_key(const std::string& path);

}  // namespace multilora::compose::klora
