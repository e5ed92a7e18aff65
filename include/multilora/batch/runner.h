// Running a batch: survey what is finished, load the model and every LoRA once, generate what is left in
// plan order with shared initial noise per set, write each image atomically with its manifest, log it to
// {out}/batch.jsonl, and keep comparison sheets and the gallery up to date.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "multilora/batch/plan.h"
#include "multilora/batch/state.h"

namespace multilora::batch {

// UNet rows one denoising step evaluates: 2 with classifier-free guidance (1 without); Composite k times that.
int unet_rows(const std::string& method, int k, double guidance_scale);

// Seconds per image from measured step costs.
struct StepCost {
    double row_step_s = -1;  // seconds per UNet row per step (-1: unknown)
    double overhead_s = 0;   // per image: prompt encoding, VAE decode, writing
    std::map<std::pair<std::string, int>, double> step_s;  // measured seconds per step by (method, k)
    int samples = 0;
    std::string source;  // "batch.jsonl (12 images)", "measured", ...
    bool known() const { return row_step_s > 0 || !step_s.empty(); }
    double image_seconds(const BatchConfig& config, const PlanImage& image) const;  // -1 when unknown
    void observe(const std::string& method, int k, int rows, double mean_step_s, double overhead_s);

private:
    std::map<std::pair<std::string, int>, int> key_counts_;
    double step_sum_ = 0, rows_sum_ = 0;
};

// From earlier lines of {out}/batch.jsonl with the same size, steps and style (none: unknown).
StepCost cost_from_log(const BatchConfig& config);
// Loads the model and times a few plain denoising steps at the config's size (for --dry-run summaries).
StepCost measure_step_cost(const BatchConfig& config, int threads);

// The state of every image of a shard (indices into plan.images).
struct Survey {
    std::vector<size_t> images;  // the shard's images, in plan order
    std::map<size_t, ImageCheck> checks;
    int finished = 0, pending = 0, stale = 0;
};
Survey survey(const BatchConfig& config, const BatchPlan& plan, const Shard& shard);

// "mid-image" after each step (`step` set), "mid-png" before the PNG is written (`png_path` and `png`
// set), "before-manifest" after it, "before-log" before the batch.jsonl line, "after-image" after it.
// `finished` counts the images this run had finished at that point.
struct BatchCheckpoint {
    const char* point = "";
    int finished = 0;
    int step = -1;
    const std::string* png_path = nullptr;
    const std::string* png = nullptr;
};

// What the runner reports while it works (the CLI draws progress bars from it).
class BatchObserver {
public:
    virtual ~BatchObserver() = default;
    // `index` counts from 0 among the `todo` images this run generates; eta_s is -1 while unknown.
    virtual void image_started(const PlanImage&, int /*index*/, int /*todo*/, double /*eta_s*/) {}
    virtual void step(int /*step*/, int /*total*/, double /*seconds*/) {}
    virtual void image_finished(const PlanImage&, int /*index*/, int /*todo*/, double /*seconds*/, double /*eta_s*/) {}
    // Points in the making of one image, for fault-injection tests (the CLI's MULTILORA_TEST_CRASH observer
    // kills the process at one of them); the runner itself does nothing at them.
    virtual void checkpoint(const BatchCheckpoint&) {}
};

struct BatchOptions {
    Shard shard;
    bool overwrite = false;  // regenerate stale images instead of stopping
    int threads = -1;        // -1: the config's
    // Images that share each UNet forward (a set's seeds of one method; images of any set, method and k for the
    // methods that mix sets; any sampler). 1 (and 0): one at a time, the exact default. Shared forwards are
    // faster on small images but not bit-identical on the CPU: oneDNN's and OpenBLAS's products round a row
    // differently with the number of rows around it.
    int batch_images = 1;
};

struct BatchReport {
    int generated = 0;
    int skipped = 0;  // finished before this run
    int sheets = 0;
    double seconds = 0;
};

// Throws UsageError / RuntimeError. Work finished before an error stays on disk (and in batch.jsonl).
BatchReport run_batch(const BatchConfig& config, const BatchPlan& plan, const BatchOptions& options,
                      BatchObserver& observer);

// Writes the sheets of this shard's complete sets (missing ones, or all with `rewrite`), plan.json and
// {out}/index.html, generating nothing. Returns the number of sheets written.
int write_sheets_and_gallery(const BatchConfig& config, const BatchPlan& plan, const Shard& shard, bool rewrite);

}  // namespace multilora::batch
