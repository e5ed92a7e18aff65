// Batch progress on stderr. On a terminal: an overall bar (images done / total, ETA) redrawn above the
// per-image step bar. Otherwise plain lines: one per image started and finished, and a step line every
// tenth of an image.
#pragma once

#include <chrono>
#include <string>

#include "multilora/batch/runner.h"

namespace multilora::cli {

class BatchProgress : public batch::BatchObserver {
public:
    // `shard_total`: images in this shard; `already_done`: finished before this run.
    BatchProgress(bool enabled, int shard_total, int already_done);
    ~BatchProgress() override;

    void image_started(const batch::PlanImage& image, int index, int todo, double eta_s) override;
    void step(int step, int total, double seconds) override;
    void image_finished(const batch::PlanImage& image, int index, int todo, double seconds, double eta_s) override;
    void finish();

private:
    std::string overall_line(double eta_s) const;
    void draw(const std::string& overall, const std::string& step_line);

    bool enabled_;
    bool tty_;
    int shard_total_;
    int done_;
    int todo_ = 0;
    int index_ = 0;
    bool drawn_ = false;
    std::string label_;
    double image_eta_start_ = -1;
    double image_elapsed_ = 0;
    int last_plain_step_ = -1;
};

}  // namespace multilora::cli
