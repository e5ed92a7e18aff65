// `evaluate --scorer world`: the trained world's ground truth as a composition benchmark. Every image of a
// batch run over the world (models/world/) goes through the world's element detector (world/detector.h);
// the set's LoRAs say which concepts the image should show.
//
// Per image:
//   - recall: the share of the set's elements the detector finds (its category head names that concept);
//   - success: every element found;
//   - leakage: the detector finds a concept the set does not contain (any category; counted per image, and
//     the leaked concepts are listed);
//   - in-world: the detector's in-world head says the image is a scene of this world (image quality).
// Per (style, k, method), and for k "all": the means, each with a 95% percentile bootstrap interval over sets
// and seeds (two levels: the sets are resampled, then each drawn set's seeds; `bootstrap` resamples, a fixed
// generator seed, so a rerun gives the same intervals); per (style, k) and
// compared method, the win/tie/loss of its recall against the base's per set (seeds pooled: each method's
// recall averaged over the seeds where both have an image), as the paper reports its judge; the same for
// every pair of methods; and a typical set per k (the one whose mean recall over all methods is nearest to
// the k's overall mean) with its comparison sheet.
//
// Checks before anything is written (UsageError): every LoRA of the selected sets is a concept of the world
// (matched by trigger word or name through the lora_info); the detector exists (--detector, else
// detector.safetensors beside the model the images' manifests name); the model the manifests name is the
// world the detector was trained for (its metadata's world_model_sha256, when it has one, must match the
// manifests' model sha256); every image is kImageSize square.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "multilora/eval/run_index.h"

namespace multilora::eval {

struct WorldScoreOptions {
    std::string detector;  // empty: detector.safetensors beside the manifests' model
    std::string base = "merge";
    std::vector<std::string> compares;  // the methods compared with the base, in report order
    int bootstrap = 2000;               // resamples per interval (0: no intervals)
    uint64_t bootstrap_seed = 20240226;
    std::string eval_dir;  // image paths in the result are relative to it
};

// The summary's "world" object: {"detector", "images": [per-image verdicts], "groups", "win_tie_loss",
// "pairwise", "typical"}. `sets` carry their elements (LoraCatalog::describe). `on_image(done, total)` follows
// the detector.
nlohmann::json score_world(const std::vector<CompositionSet>& sets, const WorldScoreOptions& options,
                           const std::function<void(size_t, size_t)>& on_image = {});

// The bootstrap behind every interval, on two levels: `units` are composition sets, each with its values (one per
// seed); a resample draws the sets with replacement and, within each drawn set, its values with replacement.
// Returns the 2.5% and 97.5% percentiles (numpy's linear rule) of the resamples' means. Exposed for tests.
std::pair<double, double> bootstrap_interval(const std::vector<std::vector<double>>& units, int resamples, uint64_t seed);

// What more seeds could do for an interval over composition sets: the one-way random-effects variance
// components of `units` (sets, each with its per-seed values). With S sets, n̄ values per set on average,
// v = the sample variance of the set means and w = the mean within-set sample variance, the between-set
// component is b = max(0, v − w/n̄); the normal-approximation half-widths are 1.96·√(v/S) as run and
// 1.96·√(b/S) with unlimited seeds (only more sets narrow that). NaN with fewer than 2 sets or no set of
// 2 values.
struct SeedLimit {
    double half_width = 0, unlimited_seeds = 0;
};
SeedLimit seed_limit(const std::vector<std::vector<double>>& units);

// Pearson's r and Spearman's rho (Pearson's r of the ranks, ties given their mean rank) of paired values; NaN
// when there are fewer than 2 pairs or a side has no variance. For the judge's agreement with the scorer.
double pearson(const std::vector<double>& x, const std::vector<double>& y);
double spearman(const std::vector<double>& x, const std::vector<double>& y);

// recall against k, one line per method, as a PNG (the summary's "world" object is the input).
void write_world_recall_plot(const std::string& path, const nlohmann::json& world);

}  // namespace multilora::eval
