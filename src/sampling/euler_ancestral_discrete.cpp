// Ancestral Euler sampling (the "euler_ancestral" sampler of k-diffusion, Karras et al. 2022 notation):
// each step from sigma to sigma_next is split into a deterministic Euler step down to
//   sigma_down = sqrt(sigma_next^2 - sigma_up^2),  sigma_up = sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2)
// followed by fresh Gaussian noise of standard deviation sigma_up. Numerically follows diffusers'
// EulerAncestralDiscreteScheduler (unchanged in behaviour from 0.26.3 to current releases): float32 timesteps
// and sigmas as for EulerDiscreteScheduler (always ending at sigma 0), and the noise drawn like diffusers'
// randn_tensor: torch.randn of the model output's shape and dtype on the generator's device, then moved to
// the model output's device. The noise is drawn on every step, the last one included (where sigma_up = 0).

#include <ATen/ATen.h>

#include <cmath>

#include "multilora/util/error.h"
#include "sampling/numpy_compat.h"
#include "sampling/schedule_common.h"
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

class EulerAncestral final : public Scheduler {
public:
    EulerAncestral(std::string name, json cfg) : name_(std::move(name)), cfg_(std::move(cfg)) {
        prediction_type_ = cfg_string(cfg_, "prediction_type");
        if (prediction_type_ != "epsilon" && prediction_type_ != "v_prediction") {
            throw UsageError("scheduler config: prediction_type '" + prediction_type_ +
                             "' is not supported by " + diffusers_class() + " (epsilon, v_prediction)");
        }
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
        for (auto& t : grid) t = static_cast<double>(static_cast<float>(t));
        std::vector<double> sig = np_interp_unit_grid(grid, table_.sigmas);
        sig.push_back(0.0);
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
                    at::Generator* generator) override {
        check_index(step_index);
        const at::Tensor sigma = sigmas_[step_index];
        at::Tensor x = sample.to(at::kFloat);
        at::Tensor denoised;
        if (prediction_type_ == "epsilon") {
            denoised = x - sigma * model_output;
        } else {  // v_prediction
            denoised = model_output * (-sigma / (sigma.pow(2) + 1).pow(0.5)) + (x / (sigma.pow(2) + 1));
        }
        const at::Tensor sigma_from = sigmas_[step_index];
        const at::Tensor sigma_to = sigmas_[step_index + 1];
        const at::Tensor sigma_up =
            (sigma_to.pow(2) * (sigma_from.pow(2) - sigma_to.pow(2)) / sigma_from.pow(2)).pow(0.5);
        const at::Tensor sigma_down = (sigma_to.pow(2) - sigma_up.pow(2)).pow(0.5);
        const at::Tensor derivative = (x - denoised) / sigma;
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

    std::string name() const override { return name_; }
    std::string diffusers_class() const override { return "EulerAncestralDiscreteScheduler"; }

    std::vector<double> sigmas() const override { return float_values(sigmas_); }

    json config() const override { return cfg_; }

private:
    void check_index(int step_index) const { check_step_index(diffusers_class(), timesteps_.size(), step_index); }

    std::string name_;
    json cfg_;
    NoiseTable table_;
    std::string prediction_type_, spacing_;
    int64_t steps_offset_ = 0;
    std::vector<double> timesteps_;
    at::Tensor sigmas_;
    double init_noise_sigma_ = 1.0;
};

}  // namespace

std::unique_ptr<Scheduler> make_euler_ancestral(const std::string& name, const json& config) {
    return std::make_unique<EulerAncestral>(name, resolve_config(config, euler_a_defaults()));
}

}  // namespace multilora::sampling::detail
