// Pieces shared by the scheduler implementations: diffusers' from_config key resolution, the training
// noise table (betas, alphas_cumprod, sigmas) built with the same float32 torch ops as diffusers, and the
// Karras sigma ramp / sigma-to-timestep interpolation that diffusers computes with numpy in float64.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

namespace multilora::sampling::detail {

// from_config semantics for one scheduler class. `class_defaults` holds every keyword of the class's
// __init__ with its default value; the result holds the same keys with:
//   overrides[key]  if present (keyword arguments to from_config win), else
//   config[key]     if present, non-null and not listed in config["_use_default_values"], else
//   the class default.
// Keys of `config` the class does not take are dropped, as from_config does, except those named in
// `hidden_keys` (diffusers re-registers such leftover keys on the instance's config, where e.g. the Karras
// conversion looks up "sigma_min"/"sigma_max"); they are copied when present and non-null.
// Throws UsageError when `config` is not a JSON object or a value has the wrong JSON type.
nlohmann::json resolve_config(const nlohmann::json& config, const nlohmann::json& class_defaults,
                              const nlohmann::json& overrides = nlohmann::json::object(),
                              const std::vector<std::string>& hidden_keys = {});

// Typed accessors on a resolved config (UsageError naming the key on a type mismatch).
double cfg_double(const nlohmann::json& cfg, const char* key);
int64_t cfg_int(const nlohmann::json& cfg, const char* key);
bool cfg_bool(const nlohmann::json& cfg, const char* key);
std::string cfg_string(const nlohmann::json& cfg, const char* key);
// Optional float (null -> false).
bool cfg_optional_double(const nlohmann::json& cfg, const char* key, double* out);

// The training noise schedule, all float32 CPU tensors computed with torch ops in diffusers' order.
struct NoiseTable {
    at::Tensor betas;           // [N]
    at::Tensor alphas_cumprod;  // [N], cumprod(1 - betas)
    std::vector<double> sigmas;  // [N] float32 values of ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
};

// Reads num_train_timesteps, beta_start, beta_end, beta_schedule, trained_betas and (when the class takes
// it) rescale_betas_zero_snr. `pin_zero_snr_tail` sets alphas_cumprod[-1] = 2**-24 after the zero-SNR
// rescale, which the sigma-based schedulers (Euler, Euler ancestral, DPM-Solver) do and DDIM does not.
NoiseTable make_noise_table(const nlohmann::json& cfg, bool pin_zero_snr_tail);

// Karras et al. (2022) eq. 5 noise levels, rho = 7, evaluated in float64 as
// (max^(1/rho) + ramp_k * (min^(1/rho) - max^(1/rho)))^rho with ramp = linspace(0, 1, n).
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t n);

// Fractional training timestep whose (linearly interpolated) log-sigma equals log(sigma), using the
// float32 log of the training sigma table; clamps to the table's range.
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas);
std::vector<float> log_sigma_table(const std::vector<double>& sigmas);

// A float32 CPU tensor of `values` rounded to float32 (how diffusers stores its numpy-built sigmas).
at::Tensor float_tensor(const std::vector<double>& values);

// Euler-family init_noise_sigma: the largest sigma for "linspace"/"trailing" spacing, sqrt(max² + 1)
// otherwise, evaluated in float32 as diffusers does.
double euler_init_noise_sigma(const at::Tensor& sigmas, const std::string& spacing);

// Euler-family scale_model_input: sample / sqrt(sigma² + 1) with `sigma` a 0-dim float32 tensor.
at::Tensor scale_by_sigma(const at::Tensor& sample, const at::Tensor& sigma);

// The values of a float32 CPU tensor as doubles (empty for an undefined tensor).
std::vector<double> float_values(const at::Tensor& t);

// Throws RuntimeError unless set_timesteps ran and `step_index` indexes its grid of `num_timesteps`.
void check_step_index(const std::string& scheduler_class, size_t num_timesteps, int step_index);

// The config's final_sigmas_type, "zero" or "sigma_min" (UsageError otherwise).
std::string final_sigmas_type(const nlohmann::json& cfg);

// A 0-dim float32 CPU tensor holding `v` rounded to float32.
at::Tensor scalar_f32(double v);

// Validates a num_inference_steps argument (UsageError if < 1 or above num_train_timesteps when `cap`).
void check_steps(int num_inference_steps, int64_t num_train_timesteps, bool cap);

// diffusers' timestep grids for timestep_spacing "linspace" | "leading" | "trailing".
// DDIM / Euler style (n points): linspace over [0, N-1] rounded, leading k*(N//n)+offset, trailing
// round(arange(N, 0, -N/n)) - 1. Values are doubles before the class's own rounding / casting.
std::vector<double> spaced_timesteps(const std::string& spacing, int64_t num_train_timesteps, int64_t n,
                                     int64_t steps_offset, bool round_linspace);

}  // namespace multilora::sampling::detail
