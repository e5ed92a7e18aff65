// Ancestral Euler sampling (the "euler_ancestral" sampler of k-diffusion, Karras et al. 2022 notation):
// each step from sigma to sigma_next is split into a deterministic Euler step down to
//   sigma_down = sqrt(sigma_next^2 - sigma_up^2),  sigma_up = sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2)
// followed by fresh Gaussian noise of standard deviation sigma_up. Numerically follows diffusers'
// EulerAncestralDiscreteScheduler (unchanged in behaviour from 0.26.3 to current releases): float32 timesteps
// and sigmas as for EulerDiscreteScheduler (always ending at sigma 0), and the noise drawn like diffusers'
// randn_tensor: torch.randn of the model output's shape and dtype on the generator's device, then moved to
// the model output's device. The noise is drawn on every step, the last one included (where sigma_up = 0).

#include <ATen/ATen.h>

#include "sampling/euler_family.h"
#include "sampling/scheduler_impls.h"

namespace multilora::sampling::detail {

using nlohmann::json;

namespace {

// Every keyword of EulerAncestralDiscreteScheduler.__init__ (diffusers main, 2026) with its default.
json euler_a_defaults() {
    return json{
        {"num_train_timesteps", 1000},
        {"beta_start", 0.0001},
        {"beta_end", 0.02},
        {"beta_schedule", "linear"},
        {"trained_betas", nullptr},
        {"prediction_type", "epsilon"},
        {"timestep_spacing", "linspace"},
        {"steps_offset", 0},
        {"rescale_betas_zero_snr", false},
    };
}

class EulerAncestral final : public EulerFamily {
public:
    EulerAncestral(std::string name, json cfg)
        : EulerFamily(std::move(name), "EulerAncestralDiscreteScheduler", std::move(cfg),
                      {"epsilon", "v_prediction"}) {}

    at::Tensor step(const at::Tensor& model_output, int step_index, const at::Tensor& sample,
                    at::Generator* generator) override {
        check_index(step_index);
        const at::Tensor& sigmas = sigma_grid();
        const at::Tensor sigma = sigmas[step_index];
        at::Tensor x = sample.to(at::kFloat);
        const at::Tensor pred_original = denoised(model_output, x, sigma, sigma);
        const at::Tensor sigma_from = sigmas[step_index];
        const at::Tensor sigma_to = sigmas[step_index + 1];
        const at::Tensor sigma_up =
            (sigma_to.pow(2) * (sigma_from.pow(2) - sigma_to.pow(2)) / sigma_from.pow(2)).pow(0.5);
        const at::Tensor sigma_down = (sigma_to.pow(2) - sigma_up.pow(2)).pow(0.5);
        const at::Tensor derivative = (x - pred_original) / sigma;
        const at::Tensor dt = sigma_down - sigma;
        at::Tensor prev = x + derivative * dt;

        at::Tensor noise;
        auto opts = model_output.options();
        if (generator != nullptr && generator->defined()) {
            noise = at::randn(model_output.sizes(), *generator, opts.device(generator->device()))
                        .to(model_output.device());
        } else {
            noise = at::randn(model_output.sizes(), opts);
        }
        prev = prev + noise * sigma_up;
        return prev.to(model_output.scalar_type());
    }
};

}  // namespace

std::unique_ptr<Scheduler> make_euler_ancestral(const std::string& name, const json& config) {
    return std::make_unique<EulerAncestral>(name, resolve_config(config, euler_a_defaults()));
}

}  // namespace multilora::sampling::detail
