#include "sampling/schedule_common.h"

#include <algorithm>
#include <cmath>
#include <set>

#include <ATen/ATen.h>

#include "multilora/util/error.h"
#include "sampling/numpy_compat.h"

namespace multilora::sampling::detail {

using nlohmann::json;

namespace {

const char* json_type_name(const json& v) { return v.type_name(); }

bool same_kind(const json& def, const json& v) {
    if (def.is_null()) return true;  // keys defaulting to None accept whatever the class would
    if (def.is_boolean()) return v.is_boolean();
    if (def.is_number()) return v.is_number() && !v.is_boolean();
    if (def.is_string()) return v.is_string();
    if (def.is_array()) return v.is_array();
    return true;
}

}  // namespace

json resolve_config(const json& config, const json& class_defaults, const json& overrides,
                    const std::vector<std::string>& hidden_keys) {
    if (!config.is_object()) {
        throw UsageError(std::string("scheduler config must be a JSON object, got ") + json_type_name(config));
    }
    std::set<std::string> used_defaults;
    if (auto it = config.find("_use_default_values"); it != config.end() && it->is_array()) {
        for (const auto& k : *it) {
            if (k.is_string()) used_defaults.insert(k.get<std::string>());
        }
    }
    json out = class_defaults;
    for (auto it = class_defaults.begin(); it != class_defaults.end(); ++it) {
        const std::string& key = it.key();
        const json* src = nullptr;
        if (auto o = overrides.find(key); o != overrides.end()) {
            src = &*o;
        } else if (auto c = config.find(key); c != config.end() && !c->is_null() && !used_defaults.count(key)) {
            src = &*c;
        }
        if (src == nullptr) continue;
        if (!same_kind(it.value(), *src)) {
            throw UsageError("scheduler config key '" + key + "' has JSON type " + json_type_name(*src) +
                             ", expected " + json_type_name(it.value()));
        }
        out[key] = *src;
    }
    for (const auto& key : hidden_keys) {
        if (out.contains(key)) continue;
        if (auto c = config.find(key); c != config.end() && !c->is_null() && !used_defaults.count(key)) {
            out[key] = *c;
        }
    }
    return out;
}

double cfg_double(const json& cfg, const char* key) {
    const json& v = cfg.at(key);
    if (!v.is_number() || v.is_boolean()) {
        throw UsageError(std::string("scheduler config key '") + key + "' must be a number");
    }
    return v.get<double>();
}

int64_t cfg_int(const json& cfg, const char* key) {
    const json& v = cfg.at(key);
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float()) {
        const double d = v.get<double>();
        if (std::floor(d) == d) return static_cast<int64_t>(d);
    }
    throw UsageError(std::string("scheduler config key '") + key + "' must be an integer");
}

bool cfg_bool(const json& cfg, const char* key) {
    const json& v = cfg.at(key);
    if (v.is_null()) return false;
    if (!v.is_boolean()) throw UsageError(std::string("scheduler config key '") + key + "' must be a boolean");
    return v.get<bool>();
}

std::string cfg_string(const json& cfg, const char* key) {
    const json& v = cfg.at(key);
    if (!v.is_string()) throw UsageError(std::string("scheduler config key '") + key + "' must be a string");
    return v.get<std::string>();
}

bool cfg_optional_double(const json& cfg, const char* key, double* out) {
    auto it = cfg.find(key);
    if (it == cfg.end() || it->is_null()) return false;
    if (!it->is_number() || it->is_boolean()) {
        throw UsageError(std::string("scheduler config key '") + key + "' must be a number or null");
    }
    *out = it->get<double>();
    return true;
}

at::Tensor scalar_f32(double v) { return at::scalar_tensor(v, at::TensorOptions().dtype(at::kFloat)); }

namespace {

// Nichol & Dhariwal (2021) cosine schedule: alpha_bar(t) = cos(((t + s) / (1 + s)) * pi / 2)^2, s = 0.008,
// beta_i = min(1 - alpha_bar((i + 1) / N) / alpha_bar(i / N), 0.999), evaluated in float64.
at::Tensor cosine_betas(int64_t n) {
    const double pi = 3.141592653589793;
    auto alpha_bar = [pi](double t) {
        const double c = std::cos((t + 0.008) / 1.008 * pi / 2);
        return std::pow(c, 2.0);
    };
    std::vector<float> betas(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        const double t1 = static_cast<double>(i) / static_cast<double>(n);
        const double t2 = static_cast<double>(i + 1) / static_cast<double>(n);
        betas[static_cast<size_t>(i)] = static_cast<float>(std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999));
    }
    return at::tensor(betas, at::TensorOptions().dtype(at::kFloat));
}

// Lin et al. (2023), "Common Diffusion Noise Schedules and Sample Steps are Flawed", algorithm 1: shift
// and scale sqrt(alpha_bar) so that the last step has zero SNR, in float32 torch ops.
at::Tensor rescale_to_zero_terminal_snr(const at::Tensor& betas) {
    at::Tensor alphas = at::rsub(betas, 1.0);
    at::Tensor abar = at::cumprod(alphas, 0);
    at::Tensor abar_sqrt = abar.sqrt();
    at::Tensor first = abar_sqrt[0].clone();
    at::Tensor last = abar_sqrt[-1].clone();
    abar_sqrt.sub_(last);
    abar_sqrt.mul_(first / (first - last));
    at::Tensor abar2 = abar_sqrt.pow(2);
    at::Tensor ratios = abar2.slice(0, 1) / abar2.slice(0, 0, -1);
    at::Tensor new_alphas = at::cat({abar2.slice(0, 0, 1), ratios});
    return at::rsub(new_alphas, 1);
}

}  // namespace

NoiseTable make_noise_table(const json& cfg, bool pin_zero_snr_tail) {
    const int64_t n = cfg_int(cfg, "num_train_timesteps");
    if (n < 2) throw UsageError("scheduler config: num_train_timesteps must be at least 2");
    const auto opts = at::TensorOptions().dtype(at::kFloat);
    NoiseTable t;
    const json& trained = cfg.at("trained_betas");
    if (!trained.is_null()) {
        if (!trained.is_array() || static_cast<int64_t>(trained.size()) != n) {
            throw UsageError("scheduler config: trained_betas must be an array of num_train_timesteps numbers");
        }
        std::vector<float> b;
        for (const auto& v : trained) {
            if (!v.is_number()) throw UsageError("scheduler config: trained_betas must hold numbers");
            b.push_back(static_cast<float>(v.get<double>()));
        }
        t.betas = at::tensor(b, opts);
    } else {
        const std::string schedule = cfg_string(cfg, "beta_schedule");
        const double b0 = cfg_double(cfg, "beta_start");
        const double b1 = cfg_double(cfg, "beta_end");
        if (schedule == "linear") {
            t.betas = at::linspace(b0, b1, n, opts);
        } else if (schedule == "scaled_linear") {
            // linspace over sqrt(beta) (endpoints rounded from float64 square roots), squared in float32
            t.betas = at::linspace(std::pow(b0, 0.5), std::pow(b1, 0.5), n, opts).pow(2);
        } else if (schedule == "squaredcos_cap_v2") {
            t.betas = cosine_betas(n);
        } else {
            throw UsageError("scheduler config: beta_schedule '" + schedule +
                             "' is not supported (linear, scaled_linear, squaredcos_cap_v2)");
        }
    }
    const bool zero_snr = cfg.contains("rescale_betas_zero_snr") && cfg_bool(cfg, "rescale_betas_zero_snr");
    if (zero_snr) t.betas = rescale_to_zero_terminal_snr(t.betas);
    at::Tensor alphas = at::rsub(t.betas, 1.0);
    t.alphas_cumprod = at::cumprod(alphas, 0);
    if (zero_snr && pin_zero_snr_tail) t.alphas_cumprod[-1] = std::ldexp(1.0, -24);
    at::Tensor sig = (at::rsub(t.alphas_cumprod, 1) / t.alphas_cumprod).pow(0.5).contiguous();
    const float* p = sig.data_ptr<float>();
    t.sigmas.assign(p, p + sig.numel());
    return t;
}

std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t n) {
    const double rho = 7.0;
    const std::vector<double> ramp = np_linspace(0.0, 1.0, n);
    const double min_inv_rho = std::pow(sigma_min, 1 / rho);
    const double max_inv_rho = std::pow(sigma_max, 1 / rho);
    const double span = min_inv_rho - max_inv_rho;
    std::vector<double> out(ramp.size());
    for (size_t k = 0; k < ramp.size(); ++k) out[k] = std::pow(max_inv_rho + mul_no_fma(ramp[k], span), rho);
    return out;
}

std::vector<float> log_sigma_table(const std::vector<double>& sigmas) {
    std::vector<float> out(sigmas.size());
    for (size_t i = 0; i < sigmas.size(); ++i) out[i] = std::log(static_cast<float>(sigmas[i]));
    return out;
}

double sigma_to_t(double sigma, const std::vector<float>& log_sigmas) {
    const double log_sigma = std::log(std::max(sigma, 1e-10));
    const auto n = static_cast<int64_t>(log_sigmas.size());
    // low = last index whose log-sigma does not exceed log(sigma) (0 when none does), kept below n - 1
    int64_t low = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (log_sigma - static_cast<double>(log_sigmas[static_cast<size_t>(i)]) >= 0) low = i;
    }
    low = std::min(low, n - 2);
    const int64_t high = low + 1;
    const double lo = log_sigmas[static_cast<size_t>(low)];
    const double hi = log_sigmas[static_cast<size_t>(high)];
    double w = (lo - log_sigma) / (lo - hi);
    w = std::clamp(w, 0.0, 1.0);
    return mul_no_fma(1 - w, static_cast<double>(low)) + mul_no_fma(w, static_cast<double>(high));
}

void check_steps(int num_inference_steps, int64_t num_train_timesteps, bool cap) {
    if (num_inference_steps < 1) {
        throw UsageError("number of inference steps must be at least 1, got " + std::to_string(num_inference_steps));
    }
    if (cap && num_inference_steps > num_train_timesteps) {
        throw UsageError("number of inference steps (" + std::to_string(num_inference_steps) +
                         ") cannot exceed num_train_timesteps (" + std::to_string(num_train_timesteps) + ")");
    }
}

std::vector<double> spaced_timesteps(const std::string& spacing, int64_t num_train_timesteps, int64_t n,
                                     int64_t steps_offset, bool round_linspace) {
    std::vector<double> ts;
    if (spacing == "linspace") {
        ts = np_linspace(0.0, static_cast<double>(num_train_timesteps - 1), n);
        if (round_linspace) {
            for (auto& v : ts) v = np_round(v);
        }
        std::reverse(ts.begin(), ts.end());
    } else if (spacing == "leading") {
        const int64_t ratio = num_train_timesteps / n;
        for (int64_t k = n - 1; k >= 0; --k) ts.push_back(static_cast<double>(k * ratio + steps_offset));
    } else if (spacing == "trailing") {
        const double ratio = static_cast<double>(num_train_timesteps) / static_cast<double>(n);
        ts = np_arange(static_cast<double>(num_train_timesteps), 0.0, -ratio);
        for (auto& v : ts) v = np_round(v) - 1;
    } else {
        throw UsageError("scheduler config: timestep_spacing '" + spacing +
                         "' is not supported (linspace, leading, trailing)");
    }
    return ts;
}

at::Tensor float_tensor(const std::vector<double>& values) {
    std::vector<float> f(values.begin(), values.end());
    return at::tensor(f, at::TensorOptions().dtype(at::kFloat));
}

double euler_init_noise_sigma(const at::Tensor& sigmas, const std::string& spacing) {
    at::Tensor max_sigma = sigmas.max();
    if (spacing == "linspace" || spacing == "trailing") return max_sigma.item<float>();
    return (max_sigma.pow(2) + 1).pow(0.5).item<float>();
}

at::Tensor scale_by_sigma(const at::Tensor& sample, const at::Tensor& sigma) {
    return sample / (sigma.pow(2) + 1).pow(0.5);
}

std::vector<double> float_values(const at::Tensor& t) {
    if (!t.defined()) return {};
    at::Tensor c = t.to(at::kFloat).contiguous();
    const float* p = c.data_ptr<float>();
    return std::vector<double>(p, p + c.numel());
}

void check_step_index(const std::string& scheduler_class, size_t num_timesteps, int step_index) {
    if (num_timesteps == 0) throw RuntimeError(scheduler_class + ": set_timesteps was not called");
    if (step_index < 0 || step_index >= static_cast<int>(num_timesteps))
        throw RuntimeError(scheduler_class + ": step index " + std::to_string(step_index) + " out of range");
}

std::string final_sigmas_type(const nlohmann::json& cfg) {
    std::string type = cfg_string(cfg, "final_sigmas_type");
    if (type != "zero" && type != "sigma_min")
        throw UsageError("scheduler config: final_sigmas_type must be 'zero' or 'sigma_min', got '" + type + "'");
    return type;
}

}  // namespace multilora::sampling::detail
