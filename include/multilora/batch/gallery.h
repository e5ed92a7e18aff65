// {out}/index.html: a static gallery with one row per ComposLoRA set (prompt, LoRAs with their triggers,
// the images by method linking to their manifests). Each batch writes {out}/{style}/plan.json, the data
// of its rows; the gallery is rendered from every style's plan.json under {out}, so configs for several
// styles can share one out folder.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "multilora/batch/plan.h"

namespace multilora::batch {

// {out}/{style}/plan.json
std::string gallery_plan_path(const BatchConfig& config);
nlohmann::ordered_json gallery_plan(const BatchConfig& config, const BatchPlan& plan);

// Renders the gallery of every {out}/*/plan.json; an image counts as present when its PNG and manifest
// exist. Deterministic: the same files give the same bytes.
std::string render_gallery(const std::string& out_dir);

}  // namespace multilora::batch
