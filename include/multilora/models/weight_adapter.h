// What a Linear or Conv2d layer asks of whatever adapts its weight (LoRA and its kin, implemented in lora/):
// whether it is active for the next forward, and the layer's output with the adaptation applied. The base
// weight is never modified; the layer runs on it alone when no adapter is set or the adapter is inactive.
// (The shape of stable-diffusion.cpp's WeightAdapter, declared beside the layers it serves.)
#pragma once

#include <ATen/core/Tensor.h>

namespace multilora::models {

class WeightAdapter {
public:
    virtual ~WeightAdapter() = default;
    virtual bool active() const = 0;
    // The layer's output for input `x`: Linear y = x·W'ᵀ + b, Conv2d y = conv(x, W') + b, where W' is the
    // adapted weight (or the equivalent base + low-rank terms). `bias` is the layer's (may be undefined).
    virtual at::Tensor forward(const at::Tensor& x, const at::Tensor& bias) const = 0;
};

}  // namespace multilora::models
