// Euler's method on the probability-flow ODE in the variance-exploding parameterisation of Karras et al.
// (2022, "Elucidating the Design Space...", algorithm 1 with S_churn = 0): with the "VE" sigma
// sigma = sqrt((1 - alpha_bar) / alpha_bar) and x scaled so that x = x0 + sigma * eps,
//   denoised = x - sigma * eps_pred,  d = (x - denoised) / sigma,  x_next = x + d * (sigma_next - sigma).
// The network sees x / sqrt(sigma^2 + 1) (scale_model_input). Numerically follows diffusers'
// EulerDiscreteScheduler: timesteps are float32 (fractional for the linspace spacing), sigmas are the
// training sigmas linearly interpolated at those timesteps in float64 and rounded to float32, with a final
// sigma of 0 ("zero", the default of final_sigmas_type) or the training sigma at t = 0 ("sigma_min").
//
// diffusers versions: the EulerDiscreteScheduler code that SD1.5 exercises gives the same numbers in 0.26.3
// and in current releases. Two later changes do not alter results: since 0.31 step() only draws its
// (unused, s_churn = 0) noise when gamma > 0, which only changed how far the generator advanced after the
// initial latents; and final_sigmas_type was added to this class with default "zero", the value 0.26.3
// hard-wired.
// Known limit: with use_karras_sigmas (not part of SD1.5's config) the fractional timesteps come from the
// float32 log of the training sigmas; diffusers takes that log with numpy, whose SIMD float32 log differs from
// libm's in the last bit for ~20% of the table (and numpy 1.x also rounds the interpolation weight to float32,
// numpy 2.x does not), so such timesteps can differ from diffusers' by about one float32 ulp. The sigmas, and
// the rounded timesteps of the DPM-Solver Karras grid (checked for 1..500 steps), are not affected.

#include <ATen/ATen.h>

#include "multilora/util/error.h"
#include "sampling/euler_family.h"
#include "sampling/schedule_common.h"
#include "sampling/scheduler_impls.h"

namespace multilora::sampling::detail {

using nlohmann::json;

namespace {

// Every keyword of EulerDiscreteScheduler.__init__ (diffusers main, 2026) with its default.
json euler_defaults() {
    return json{
        {"num_train_timesteps", 1000},
        {"beta_start", 0.0001},
        {"beta_end", 0.02},
        {"beta_schedule", "linear"},
        {"trained_betas", nullptr},
        {"prediction_type", "epsilon"},
        {"interpolation_type", "linear"},
        {"use_karras_sigmas", false},
        {"use_exponential_sigmas", false},
        {"use_beta_sigmas", false},
        {"sigma_min", nullptr},
        {"sigma_max", nullptr},
        {"timestep_spacing", "linspace"},
        {"timestep_type", "discrete"},
        {"steps_offset", 0},
        {"rescale_betas_zero_snr", false},
        {"final_sigmas_type", "zero"},
    };
}

// The options of EulerDiscreteScheduler that the ancestral scheduler does not take.
void check_euler_options(const json& cfg, const std::string& prediction_type) {
    if (cfg_string(cfg, "interpolation_type") != "linear") {
        throw UsageError("scheduler config: interpolation_type '" + cfg_string(cfg, "interpolation_type") +
                         "' is not supported (linear)");
    }
    for (const char* key : {"use_exponential_sigmas", "use_beta_sigmas"}) {
        if (cfg_bool(cfg, key)) throw UsageError(std::string("scheduler config: ") + key + "=true is not supported");
    }
    if (cfg_string(cfg, "timestep_type") == "continuous" && prediction_type == "v_prediction") {
        throw UsageError("scheduler config: timestep_type 'continuous' with v_prediction is not supported");
    }
    final_sigmas_type(cfg);  // throws for a value other than "zero" / "sigma_min"
}

class EulerDiscrete final : public EulerFamily {
public:
    EulerDiscrete(std::string name, json cfg)
        : EulerFamily(std::move(name), "EulerDiscreteScheduler", std::move(cfg), {"epsilon", "v_prediction", "sample"},
                      &check_euler_options) {
        final_sigmas_type_ = final_sigmas_type(resolved_config());
        karras_ = cfg_bool(resolved_config(), "use_karras_sigmas");
    }

    at::Tensor step(const at::Tensor& model_output, int step_index, const at::Tensor& sample,
                    at::Generator* /*generator*/) override {
        check_index(step_index);
        const at::Tensor& sigmas = sigma_grid();
        at::Tensor x = sample.to(at::kFloat);
        const at::Tensor sigma = sigmas[step_index];
        const double gamma = 0.0;  // s_churn = 0: no noise is added back
        const at::Tensor sigma_hat = sigma * (gamma + 1);
        const at::Tensor pred_original = denoised(model_output, x, sigma, sigma_hat);
        const at::Tensor derivative = (x - pred_original) / sigma_hat;
        const at::Tensor dt = sigmas[step_index + 1] - sigma_hat;
        const at::Tensor prev = x + derivative * dt;
        return prev.to(model_output.scalar_type());
    }

private:
    // use_karras_sigmas: Karras sigmas between the interpolated grid's ends (or the config's sigma_min /
    // sigma_max), with the fractional timesteps whose training sigmas they are.
    void remap_sigmas(int num_inference_steps, std::vector<double>& timesteps,
                      std::vector<double>& sigmas) const override {
        if (!karras_) return;
        double smin = sigmas.back();
        double smax = sigmas.front();
        double v;
        if (cfg_optional_double(resolved_config(), "sigma_min", &v)) smin = v;
        if (cfg_optional_double(resolved_config(), "sigma_max", &v)) smax = v;
        sigmas = karras_sigmas(smin, smax, num_inference_steps);
        const std::vector<float> log_sigmas = log_sigma_table(noise_table().sigmas);
        timesteps.clear();
        for (double s : sigmas) {
            timesteps.push_back(static_cast<double>(static_cast<float>(sigma_to_t(s, log_sigmas))));
        }
    }

    double final_sigma() const override {
        return final_sigmas_type_ == "sigma_min" ? noise_table().sigmas.front() : 0.0;
    }

    std::string final_sigmas_type_;
    bool karras_ = false;
};

}  // namespace

std::unique_ptr<Scheduler> make_euler_discrete(const std::string& name, const json& config) {
    return std::make_unique<EulerDiscrete>(name, resolve_config(config, euler_defaults()));
}

}  // namespace multilora::sampling::detail
