// The state and code that diffusers' EulerDiscreteScheduler and EulerAncestralDiscreteScheduler share: the
// float32 timestep grid of timestep_spacing with the training sigmas interpolated at it, init_noise_sigma,
// scale_model_input (x / sqrt(sigma^2 + 1)), the denoised estimate of the epsilon / v_prediction / sample
// branches of step(), and the config handling. Each concrete scheduler adds its step() update rule and the
// options only it takes.
#pragma once

#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "multilora/sampling/scheduler.h"
#include "sampling/schedule_common.h"

namespace multilora::sampling::detail {

class EulerFamily : public Scheduler {
public:
    void set_timesteps(int num_inference_steps) final;
    std::vector<double> timesteps() const final { return timesteps_; }
    double init_noise_sigma() const final;
    at::Tensor scale_model_input(const at::Tensor& sample, int step_index) final;
    bool timestep_is_integral() const final { return false; }
    std::string name() const final { return name_; }
    std::string diffusers_class() const final { return diffusers_class_; }
    std::vector<double> sigmas() const final { return float_values(sigmas_); }
    nlohmann::json config() const final { return cfg_; }

protected:
    // Checks of the options only one class takes, run on the resolved config after the prediction type was
    // validated and before the training schedule is read (the order in which diffusers' classes fail).
    using OptionCheck = void (*)(const nlohmann::json& cfg, const std::string& prediction_type);

    // `cfg` is the config resolved against the class's defaults. `prediction_types` lists the prediction
    // types the class supports; when it includes "sample", diffusers' old name "original_sample" is taken
    // for it.
    EulerFamily(std::string name, std::string diffusers_class, nlohmann::json cfg,
                const std::vector<std::string>& prediction_types, OptionCheck check_options = nullptr);

    // set_timesteps hooks. remap_sigmas gets the float32 spaced timesteps and the training sigmas interpolated
    // at them (one per step) and may replace both (EulerDiscrete's Karras sigmas); final_sigma is the sigma
    // appended after them, the one the last step lands on.
    virtual void remap_sigmas(int /*num_inference_steps*/, std::vector<double>& /*timesteps*/,
                              std::vector<double>& /*sigmas*/) const {}
    virtual double final_sigma() const { return 0.0; }

    // RuntimeError unless set_timesteps ran and `step_index` indexes its grid.
    void check_index(int step_index) const;

    // The denoised sample (diffusers' pred_original_sample) of step() for model output `model_output` at
    // float32 sample `x`: x - sigma_hat * model_output for epsilon, the v_prediction conversion at `sigma`,
    // or the model output itself for sample. diffusers' EulerDiscreteScheduler scales the epsilon branch by
    // sigma_hat (= sigma with no churn) and the v_prediction branch by sigma; the ancestral one uses sigma for
    // both.
    at::Tensor denoised(const at::Tensor& model_output, const at::Tensor& x, const at::Tensor& sigma,
                        const at::Tensor& sigma_hat) const;

    const nlohmann::json& resolved_config() const { return cfg_; }
    const NoiseTable& noise_table() const { return table_; }
    const std::string& prediction_type() const { return prediction_type_; }
    // diffusers' `sigmas` (float32, one more than the timesteps) after set_timesteps.
    const at::Tensor& sigma_grid() const { return sigmas_; }

private:
    std::string name_, diffusers_class_;
    nlohmann::json cfg_;
    NoiseTable table_;
    std::string prediction_type_, spacing_;
    int64_t steps_offset_ = 0;
    std::vector<double> timesteps_;
    at::Tensor sigmas_;
    double init_noise_sigma_ = 1.0;
};

}  // namespace multilora::sampling::detail
