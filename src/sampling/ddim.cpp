// Deterministic DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models", eq. 12 with eta = 0):
//   x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t),
//   x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma_t^2) eps,  sigma_t = eta * sqrt(variance) = 0,
// where prev = t - num_train_timesteps // num_inference_steps and abar_prev for prev < 0 is 1
// (set_alpha_to_one) or abar_0. Numerically follows diffusers' DDIMScheduler (no behavioural change from
// 0.26.3 to current releases) with the pipeline's default eta = 0: int64 timesteps, 0-dim float32 CPU
// scalars read from alphas_cumprod and combined with the same torch ops as diffusers.

#include <ATen/ATen.h>

#include <cmath>

#include "multilora/util/error.h"
#include "sampling/numpy_compat.h"
#include "sampling/schedule_common.h"
#include "sampling/scheduler_impls.h"

namespace multilora::sampling::detail {

using nlohmann::json;

namespace {

// Every keyword of DDIMScheduler.__init__ (diffusers main, 2026) with its default.
json ddim_defaults() {
    return json{
        {"num_train_timesteps", 1000},
        {"beta_start", 0.0001},
        {"beta_end", 0.02},
        {"beta_schedule", "linear"},
        {"trained_betas", nullptr},
        {"clip_sample", true},
        {"set_alpha_to_one", true},
        {"steps_offset", 0},
        {"prediction_type", "epsilon"},
        {"thresholding", false},
        {"dynamic_thresholding_ratio", 0.995},
        {"clip_sample_range", 1.0},
        {"sample_max_value", 1.0},
        {"timestep_spacing", "leading"},
        {"rescale_betas_zero_snr", false},
    };
}

class Ddim final : public Scheduler {
public:
    Ddim(std::string name, json cfg) : name_(std::move(name)), cfg_(std::move(cfg)) {
        prediction_type_ = cfg_string(cfg_, "prediction_type");
        if (prediction_type_ != "epsilon" && prediction_type_ != "v_prediction" && prediction_type_ != "sample") {
            throw UsageError("scheduler config: prediction_type '" + prediction_type_ +
                             "' is not supported by " + diffusers_class() + " (epsilon, v_prediction, sample)");
        }
        if (cfg_bool(cfg_, "thresholding")) throw UsageError("scheduler config: thresholding=true is not supported");
        clip_sample_ = cfg_bool(cfg_, "clip_sample");
        clip_range_ = cfg_double(cfg_, "clip_sample_range");
        spacing_ = cfg_string(cfg_, "timestep_spacing");
        steps_offset_ = cfg_int(cfg_, "steps_offset");
        table_ = make_noise_table(cfg_, /*pin_zero_snr_tail=*/false);
        final_alpha_cumprod_ = cfg_bool(cfg_, "set_alpha_to_one") ? at::scalar_tensor(1.0, at::kFloat)
                                                                  : table_.alphas_cumprod[0];
        cfg_["_class_name"] = diffusers_class();
    }

    void set_timesteps(int num_inference_steps) override {
        const int64_t N = cfg_int(cfg_, "num_train_timesteps");
        check_steps(num_inference_steps, N, true);
        const std::vector<double> grid =
            spaced_timesteps(spacing_, N, num_inference_steps, steps_offset_, /*round_linspace=*/true);
        timesteps_.clear();
        for (double t : grid) {
            const auto ti = static_cast<int64_t>(t);
            if (ti < 0 || ti >= N) {
                throw UsageError("DDIM timestep " + std::to_string(ti) + " falls outside the training range; check "
                                 "steps_offset / timestep_spacing in the scheduler config");
            }
            timesteps_.push_back(ti);
        }
        num_inference_steps_ = num_inference_steps;
    }

    std::vector<double> timesteps() const override {
        return std::vector<double>(timesteps_.begin(), timesteps_.end());
    }

    double init_noise_sigma() const override { return 1.0; }

    at::Tensor scale_model_input(const at::Tensor& sample, int step_index) override {
        check_index(step_index);
        return sample;
    }

    at::Tensor step(const at::Tensor& model_output, int step_index, const at::Tensor& sample,
                    at::Generator* /*generator*/) override {
        check_index(step_index);
        const int64_t N = cfg_int(cfg_, "num_train_timesteps");
        const int64_t t = timesteps_[static_cast<size_t>(step_index)];
        const int64_t prev_t = t - N / num_inference_steps_;
        const at::Tensor a_t = table_.alphas_cumprod[t];
        const at::Tensor a_prev = prev_t >= 0 ? table_.alphas_cumprod[prev_t] : final_alpha_cumprod_;
        const at::Tensor b_t = at::rsub(a_t, 1);

        at::Tensor x0, eps;
        if (prediction_type_ == "epsilon") {
            x0 = (sample - b_t.pow(0.5) * model_output) / a_t.pow(0.5);
            eps = model_output;
        } else if (prediction_type_ == "sample") {
            x0 = model_output;
            eps = (sample - a_t.pow(0.5) * x0) / b_t.pow(0.5);
        } else {  // v_prediction
            x0 = a_t.pow(0.5) * sample - b_t.pow(0.5) * model_output;
            eps = a_t.pow(0.5) * model_output + b_t.pow(0.5) * sample;
        }
        if (clip_sample_) x0 = x0.clamp(-clip_range_, clip_range_);

        // eta = 0: the variance term vanishes (computed as diffusers does, so that 0 * sqrt(var) is a 0 tensor)
        const at::Tensor b_prev = at::rsub(a_prev, 1);
        const at::Tensor variance = (b_prev / b_t) * at::rsub(a_t / a_prev, 1);
        const double eta = 0.0;
        const at::Tensor std_dev_t = variance.pow(0.5) * eta;
        const at::Tensor direction = (at::rsub(a_prev, 1) - std_dev_t.pow(2)).pow(0.5) * eps;
        return a_prev.pow(0.5) * x0 + direction;
    }

    std::string name() const override { return name_; }
    std::string diffusers_class() const override { return "DDIMScheduler"; }
    std::vector<double> sigmas() const override { return {}; }
    json config() const override { return cfg_; }

private:
    void check_index(int step_index) const { check_step_index(diffusers_class(), timesteps_.size(), step_index); }

    std::string name_;
    json cfg_;
    NoiseTable table_;
    std::string prediction_type_, spacing_;
    bool clip_sample_ = false;
    double clip_range_ = 1.0;
    int64_t steps_offset_ = 0;
    at::Tensor final_alpha_cumprod_;
    std::vector<int64_t> timesteps_;
    int64_t num_inference_steps_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> make_ddim(const std::string& name, const json& config) {
    return std::make_unique<Ddim>(name, resolve_config(config, ddim_defaults()));
}

}  // namespace multilora::sampling::detail
