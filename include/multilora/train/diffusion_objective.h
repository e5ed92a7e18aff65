// The ε-prediction objective Stable Diffusion was trained with: x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε at a
// uniformly drawn training timestep t, and the mean squared error between the UNet's prediction and ε.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace at {
class Generator;
}

namespace multilora::models {
class UNet2DConditionModelImpl;
}

namespace multilora::train {

// The generator of training step `step` in a run seeded with `seed`: each step draws from its own, so a
// resumed run replays the steps an uninterrupted one takes, and a world build is the same on every machine.
at::Generator step_generator(uint64_t seed, int step);

class DiffusionObjective {
public:
    // `alphas_cumprod`: the scheduler's training table (sampling::training_alphas_cumprod).
    explicit DiffusionObjective(at::Tensor alphas_cumprod);

    // diffusers' DDPMScheduler.add_noise: √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, per batch row.
    at::Tensor add_noise(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& timesteps) const;

    // One batch's loss. Timesteps and noise are drawn from `generator` (timesteps first, then noise), so
    // a run reseeded per step replays exactly. `noise_offset` > 0: kohya's --noise_offset, a per-image,
    // per-channel constant offset·N(0, 1) added to the noise (drawn after it), which lets a model shift an
    // image's mean colour (the all-over palette of a style) that the plain objective barely teaches.
    at::Tensor loss(models::UNet2DConditionModelImpl& unet, const at::Tensor& latents, const at::Tensor& context,
                    at::Generator& generator, double noise_offset = 0) const;

    int64_t num_timesteps() const { return alphas_cumprod_.size(0); }

private:
    at::Tensor alphas_cumprod_;
};

}  // namespace multilora::train
