// summary.md (tables in the paper's form) and report.html (the same tables, SVG bar charts of the mean
// scores by k, win/tie/loss stacks, CLIPScore, and one row per set linking its comparison sheet), both
// rendered from the summary.json object alone.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace multilora::eval {

std::string render_summary_markdown(const nlohmann::json& summary);
std::string render_report_html(const nlohmann::json& summary);

// The world scorer's sections (the summary's "world" object; empty when it is null).
std::string render_world_markdown(const nlohmann::json& world);
std::string render_world_html(const nlohmann::json& world);

}  // namespace multilora::eval
