// MultLFG's frequency-domain fusion (arXiv 2505.20525, no public code), as pure tensor functions so that
// tests can work them by hand: a multi-level orthonormal Haar DWT and its inverse, per-subband relevance
// scores, the top-k subband weights and the fusion. The method itself is src/compose/multlfg.cpp; the
// equations and every choice the paper leaves open are in docs/methods.md.
// Shapes: N LoRAs, n images, latents [C, H, W]; per-LoRA predictions are [N, n, C, H, W].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace multilora::compose::multlfg {

// Orthonormal 2-D Haar DWT over the last two dimensions, `levels` times on the approximation. Each 2×2
// block [[a, b], [c, d]] gives LL = (a+b+c+d)/2, LH = (a+b−c−d)/2, HL = (a−b+c−d)/2, HH = (a−b−c+d)/2.
// Returns 3·levels + 1 subbands, coarse to fine: LL_L, LH_L, HL_L, HH_L, LH_{L−1}, ..., HH_1.
// Throws UsageError when 2^levels does not divide H and W.
std::vector<at::Tensor> haar_dwt(const at::Tensor& x, int levels);
// The inverse: haar_idwt(haar_dwt(x, L)) == x (exactly for small integers, else up to rounding).
at::Tensor haar_idwt(const std::vector<at::Tensor>& bands);
// "LL2", "LH2", "HL2", "HH2", "LH1", "HL1", "HH1" for levels = 2 (the order of haar_dwt).
std::vector<std::string> subband_names(int levels);

// r[b][i][m] = ‖W_b(now_i) − W_b(ref_i)‖₂ over channels and the subband's positions, for subband b, LoRA i,
// image m: [3L + 1, N, n].
at::Tensor subband_scores(const at::Tensor& now, const at::Tensor& ref, int levels);

enum class Weighting { Proportional, Uniform };

// Per subband and image: the top_k LoRAs by score (0 or ≥ N: all; ties keep the LoRA order) share the
// subband, w_i = r_i / Σ_kept r_j (Proportional; uniform over the kept ones when Σ r = 0) or 1/k
// (Uniform); the others get 0. [3L + 1, N, n].
at::Tensor subband_weights(const at::Tensor& scores, int top_k, Weighting weighting);

// IDWT of Σ_i w[b][i] · W_b(pred_i) per subband: [n, C, H, W].
at::Tensor fuse(const at::Tensor& preds, const at::Tensor& weights, int levels);

struct Settings {
    int levels = 2;
    int top_k = 2;  // 0: every LoRA
    Weighting weighting = Weighting::Proportional;
};

// The fused prediction from each LoRA's guided prediction now and at the reference ("t − 1"); an undefined
// `ref` (the first step) gives every LoRA the weight 1/N in every subband. `weights`, when given, receives
// the [3L + 1, N, n] weights used. Computed in float32, returned in `now`'s dtype.
at::Tensor compose(const at::Tensor& now, const at::Tensor& ref, const Settings& s, at::Tensor* weights = nullptr);

}  // namespace multilora::compose::multlfg
