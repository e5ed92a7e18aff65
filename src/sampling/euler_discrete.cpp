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

#include <algorithm>
#include <cmath>

#include "multilora/util/error.h"
#include "sampling/numpy_compat.h"
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

class EulerDiscrete final : public Scheduler {
public:
    EulerDiscrete(std::string name, json cfg) : name_(std::move(name)), cfg_(std::move(cfg)) {
        prediction_type_ = cfg_string(cfg_, "prediction_type");
        if (prediction_type_ == "original_sample") prediction_type_ = "sample";
        if (prediction_type_ != "epsilon" && prediction_type_ != "v_prediction" && prediction_type_ != "sample") {
            throw UsageError("scheduler config: prediction_type '" + prediction_type_ +
                             "' is not supported by " + diffusers_class() + " (epsilon, v_prediction, sample)");
        }
        if (cfg_string(cfg_, "interpolation_type") != "linear") {
            throw UsageError("scheduler config: interpolation_type '" + cfg_string(cfg_, "interpolation_type") +
                             "' is not supported (linear)");
        }
        for (const char* key : {"use_exponential_sigmas", "use_beta_sigmas"}) {
            if (cfg_bool(cfg_, key)) {
                throw UsageError(std::string("scheduler config: ") + key + "=true is not supported");
            }
        }
        if (cfg_string(cfg_, "timestep_type") == "continuous" && prediction_type_ == "v_prediction") {
            throw UsageError("scheduler config: timestep_type 'continuous' with v_prediction is not supported");
        }
        final_sigmas_type_ = final_sigmas_type(cfg_);
        karras_ = cfg_bool(cfg_, "use_karras_sigmas");
        spacing_ = cfg_string(cfg_, "timestep_spacing");
        steps_offset_ = cfg_int(cfg_, "steps_offset");
        table_ = make_noise_table(cfg_, /*pin_zero_snr_tail=*/true);
        cfg_["_class_name"] = diffusers_class();
    }

    void set_timesteps(int num_inference_steps) override {
        const int64_t N = cfg_int(cfg_, "num_train_timesteps");
        check_steps(num_inference_steps, N, false);
        std::vector<double> grid =
            spaced_timesteps(spacing_, N, num_inference_steps, steps_offset_, /*round_linspace=*/false);
        // the grid is handed on as float32
        for (auto& t : grid) t = static_cast<double>(static_cast<float>(t));
        std::vector<double> sig = np_interp_unit_grid(grid, table_.sigmas);
        if (karras_) {
            double smin = sig.back();
            double smax = sig.front();
            double v;
            if (cfg_optional_double(cfg_, "sigma_min", &v)) smin = v;
            if (cfg_optional_double(cfg_, "sigma_max", &v)) smax = v;
            sig = karras_sigmas(smin, smax, num_inference_steps);
            const std::vector<float> log_sigmas = log_sigma_table(table_.sigmas);
            grid.clear();
            for (double s : sig) grid.push_back(static_cast<double>(static_cast<float>(sigma_to_t(s, log_sigmas))));
        }
        sig.push_back(final_sigmas_type_ == "sigma_min" ? table_.sigmas.front() : 0.0);
        timesteps_ = grid;
        sigmas_ = float_tensor(sig);
        init_noise_sigma_ = euler_init_noise_sigma(sigmas_, spacing_);
    }

    std::vector<double> timesteps() const override { return timesteps_; }

    double init_noise_sigma() const override {
        if (!sigmas_.defined()) throw RuntimeError(diffusers_class() + ": set_timesteps was not called");
        return init_noise_sigma_;
    }

    at::Tensor scale_model_input(const at::Tensor& sample, int step_index) override {
        check_index(step_index);
        const at::Tensor sigma = sigmas_[step_index];
        return scale_by_sigma(sample, sigma);
    }

    at::Tensor step(const at::Tensor& model_output, int step_index, const at::Tensor& sample,
                    at::Generator* /*generator*/) override {
        check_index(step_index);
        at::Tensor x = sample.to(at::kFloat);
        const at::Tensor sigma = sigmas_[step_index];
        const double gamma = 0.0;  // s_churn = 0: no noise is added back
        const at::Tensor sigma_hat = sigma * (gamma + 1);
        at::Tensor denoised;
        if (prediction_type_ == "epsilon") {
            denoised = x - sigma_hat * model_output;
        } else if (prediction_type_ == "v_prediction") {
            denoised = model_output * (-sigma / (sigma.pow(2) + 1).pow(0.5)) + (x / (sigma.pow(2) + 1));
        } else {
            denoised = model_output;
        }
        const at::Tensor derivative = (x - denoised) / sigma_hat;
        const at::Tensor dt = sigmas_[step_index + 1] - sigma_hat;
        const at::Tensor prev = x + derivative * dt;
        return prev.to(model_output.scalar_type());
    }

    std::string name() const override { return name_; }
    std::string diffusers_class() const override { return "EulerDiscreteScheduler"; }

    std::vector<double> sigmas() const override { return float_values(sigmas_); }

    json config() const override { return cfg_; }

private:
    void check_index(int step_index) const { check_step_index(diffusers_class(), timesteps_.size(), step_index); }

    std::string name_;
    json cfg_;
    NoiseTable table_;
    std::string prediction_type_, final_sigmas_type_, spacing_;
    bool karras_ = false;
    int64_t steps_offset_ = 0;
    std::vector<double> timesteps_;
    at::Tensor sigmas_;
    double init_noise_sigma_ = 1.0;
};

}  // namespace

std::unique_ptr<Scheduler> make_euler_discrete(const std::string& name, const json& config) {
    return std::make_unique<EulerDiscrete>(name, resolve_config(config, euler_defaults()));
}

}  // namespace multilora::sampling::detail
