#include "sampling/euler_family.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "multilora/util/error.h"
#include "sampling/numpy_compat.h"

namespace multilora::sampling::detail {

using nlohmann::json;

EulerFamily::EulerFamily(std::string name, std::string diffusers_class, json cfg,
                         const std::vector<std::string>& prediction_types, OptionCheck check_options)
    : name_(std::move(name)), diffusers_class_(std::move(diffusers_class)), cfg_(std::move(cfg)) {
    const auto supports = [&](const std::string& type) {
        return std::find(prediction_types.begin(), prediction_types.end(), type) != prediction_types.end();
    };
    prediction_type_ = cfg_string(cfg_, "prediction_type");
    if (prediction_type_ == "original_sample" && supports("sample")) prediction_type_ = "sample";
    if (!supports(prediction_type_)) {
        std::string choices;
        for (const auto& t : prediction_types) choices += (choices.empty() ? "" : ", ") + t;
        throw UsageError("scheduler config: prediction_type '" + prediction_type_ + "' is not supported by " +
                         diffusers_class_ + " (" + choices + ")");
    }
    if (check_options != nullptr) check_options(cfg_, prediction_type_);
    spacing_ = cfg_string(cfg_, "timestep_spacing");
    steps_offset_ = cfg_int(cfg_, "steps_offset");
    table_ = make_noise_table(cfg_, /*pin_zero_snr_tail=*/true);
    cfg_["_class_name"] = diffusers_class_;
}

void EulerFamily::set_timesteps(int num_inference_steps) {
    const int64_t N = cfg_int(cfg_, "num_train_timesteps");
    check_steps(num_inference_steps, N, false);
    std::vector<double> grid =
        spaced_timesteps(spacing_, N, num_inference_steps, steps_offset_, /*round_linspace=*/false);
    // the grid is handed on as float32
    for (auto& t : grid) t = static_cast<double>(static_cast<float>(t));
    std::vector<double> sig = np_interp_unit_grid(grid, table_.sigmas);
    remap_sigmas(num_inference_steps, grid, sig);
    sig.push_back(final_sigma());
    timesteps_ = grid;
    sigmas_ = float_tensor(sig);
    init_noise_sigma_ = euler_init_noise_sigma(sigmas_, spacing_);
}

double EulerFamily::init_noise_sigma() const {
    if (!sigmas_.defined()) throw RuntimeError(diffusers_class_ + ": set_timesteps was not called");
    return init_noise_sigma_;
}

at::Tensor EulerFamily::scale_model_input(const at::Tensor& sample, int step_index) {
    check_index(step_index);
    const at::Tensor sigma = sigmas_[step_index];
    return scale_by_sigma(sample, sigma);
}

void EulerFamily::check_index(int step_index) const {
    check_step_index(diffusers_class_, timesteps_.size(), step_index);
}

at::Tensor EulerFamily::denoised(const at::Tensor& model_output, const at::Tensor& x, const at::Tensor& sigma,
                                 const at::Tensor& sigma_hat) const {
    if (prediction_type_ == "epsilon") return x - sigma_hat * model_output;
    if (prediction_type_ == "v_prediction") {
        return model_output * (-sigma / (sigma.pow(2) + 1).pow(0.5)) + (x / (sigma.pow(2) + 1));
    }
    return model_output;  // sample
}

}  // namespace multilora::sampling::detail
