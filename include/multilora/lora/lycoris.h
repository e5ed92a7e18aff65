// The adapter forms beyond plain LoRA that SD1.5 users share, as the LyCORIS library (KohakuBlueleaf/LyCORIS)
// and A1111's extensions-builtin/Lora/network_*.py define them: each form's ΔW, its shape checks, and DoRA's
// weight decomposition. A plain LoRA stays factored (up·down, applied low-rank or fused by the layer); every
// other form has a full-rank ΔW, built here on demand in float32.
#pragma once

#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "multilora/lora/lora_file.h"

namespace multilora::lora {

// The form's name as `inspect` prints it: "lora", "locon-tucker", "loha", "loha-tucker", "lokr", "lokr-tucker",
// "ia3", "full", with "+dora" when the group carries a DoRA magnitude.
std::string form_name(const LoraGroup& g);

// Checks the factors of one group against each other (ranks, Tucker cores, Kronecker factors); "" when they
// agree, else what is wrong. Used when the file is read, before any model is known.
std::string factor_problem(const LoraGroup& g);

// The shape ΔW would have ([out, in] or [out, in, kh, kw]; LoHa's flattened convolution [out, in·kh·kw]).
std::vector<int64_t> delta_shape(const LoraGroup& g);

// Does the group's ΔW fit a layer weight of this shape? "" when it does, else why not.
std::string fit_problem(const LoraGroup& g, const std::vector<int64_t>& weight_shape);

// True when the group is applied as a full-rank ΔW (every form but plain LoRA without DoRA).
bool is_full_rank(const LoraGroup& g);

// The group's ΔW for a layer whose base weight is `base` (float32, in base's shape), the form's own scale
// (alpha/rank where the form has one) included and the user's weight not: LoRA/LoCon up·down (Tucker:
// the mid core between them), LoHa (w1a·w1b)∘(w2a·w2b), LoKr w1 ⊗ w2, IA3 W∘w, a full diff as stored.
// With DoRA: m·(W+ΔW)/‖W+ΔW‖ − W, the norm over each output row (or input column, for the older
// [1, in] magnitude), plus float32 eps as LyCORIS adds it.
at::Tensor form_delta(const LoraGroup& g, const at::Tensor& base);

}  // namespace multilora::lora
