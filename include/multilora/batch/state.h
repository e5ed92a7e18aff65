// What is already on disk for a batch: which images are finished (PNG + manifest whose recorded PNG hash
// matches), which were made with other settings (stale), and leftovers of an interrupted run.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "multilora/batch/plan.h"

namespace multilora::batch {

// The settings an image's manifest records under "settings"; an existing image whose manifest holds other
// values was made by another config and is stale. Threads, device and max_batch_rows are left out (they
// do not change what is computed); the model and VAE are compared by file or folder name.
nlohmann::ordered_json expected_settings(const BatchConfig& config, const PlanImage& image);

enum class ImageState { Pending, Finished, Stale };

struct ImageCheck {
    ImageState state = ImageState::Pending;
    std::string reason;                   // Pending: why it is not finished ("no manifest", ...)
    std::vector<std::string> differences;  // Stale: "steps: 20 -> 200", ...
    std::string png_sha256;                // Finished / Stale: the verified PNG hash
};

// Finished: PNG and manifest exist, the manifest parses and its outputs[0].sha256 is the PNG's SHA-256,
// and its settings equal expected_settings. Same files with other settings: Stale. Anything else: Pending.
ImageCheck check_image(const BatchConfig& config, const PlanImage& image);

// Removes the temporary files (NAME.tmp-PID-N) that a killed run left beside the given final paths, which
// only this process writes (its shard's images, manifests and sheets). Returns how many were removed.
int remove_leftover_temp_files(const std::vector<std::string>& final_paths);
// For files several processes may write (index.html, plan.json) and the write probes in `probe_dirs`:
// removes NAME.tmp-PID-N / .multilora-write-probe-PID-N whose process is gone from this host, or that are
// older than `min_age_seconds` (a live process on another host finishes its write in well under that).
int remove_abandoned_temp_files(const std::vector<std::string>& shared_paths, const std::vector<std::string>& probe_dirs,
                                double min_age_seconds);

}  // namespace multilora::batch
