#include "multilora/train/diffusion_objective.h"

#include <torch/torch.h>

#include "multilora/models/unet.h"

namespace multilora::train {

at::Generator step_generator(uint64_t seed, int step) {
    return at::make_generator<at::CPUGeneratorImpl>(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) + 1);
}

DiffusionObjective::DiffusionObjective(at::Tensor alphas_cumprod) : alphas_cumprod_(std::move(alphas_cumprod)) {}

at::Tensor DiffusionObjective::add_noise(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t) const {
    at::Tensor abar = alphas_cumprod_.index_select(0, t.to(at::kLong)).to(x0.options()).view({-1, 1, 1, 1});
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise;
}

at::Tensor DiffusionObjective::loss(models::UNet2DConditionModelImpl& unet, const at::Tensor& latents,
                                    const at::Tensor& context, at::Generator& gen, double noise_offset) const {
    at::Tensor t = at::randint(0, num_timesteps(), {latents.size(0)}, gen, at::TensorOptions().dtype(at::kLong));
    at::Tensor noise = at::randn(latents.sizes(), gen, latents.options());
    if (noise_offset > 0)
        noise = noise + noise_offset * at::randn({latents.size(0), latents.size(1), 1, 1}, gen, latents.options());
    at::Tensor predicted = unet.forward(add_noise(latents, noise, t), t, context);
    return at::mse_loss(predicted, noise);
}

}  // namespace multilora::train
