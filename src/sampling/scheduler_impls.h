// Constructors of the concrete schedulers (one .cpp each); make_scheduler() dispatches to them.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "multilora/sampling/scheduler.h"

namespace multilora::sampling::detail {

// `overrides` play the role of from_config's keyword arguments.
std::unique_ptr<Scheduler> make_dpm_solver_multistep(const std::string& name, const nlohmann::json& config,
                                                     const nlohmann::json& overrides);
std::unique_ptr<Scheduler> make_euler_discrete(const std::string& name, const nlohmann::json& config);
std::unique_ptr<Scheduler> make_euler_ancestral(const std::string& name, const nlohmann::json& config);
std::unique_ptr<Scheduler> make_ddim(const std::string& name, const nlohmann::json& config);

}  // namespace multilora::sampling::detail
