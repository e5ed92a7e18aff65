// Fault injection for the batch tests: MULTILORA_TEST_CRASH=POINT:N[:STEP] SIGKILLs the process once N
// images were finished by this run, at POINT: "after-image" (right after the N-th), "mid-image" (at step
// STEP of the next), "before-manifest" (next image's PNG written, manifest not yet), "mid-png" (half of the
// next PNG written to its temporary file), "before-log" (next image's PNG and manifest written, batch.jsonl
// line not yet). Without the variable it only forwards to the observer it wraps.
#pragma once

#include <string>

#include "multilora/batch/runner.h"

namespace multilora::cli {

class CrashInjector : public batch::BatchObserver {
public:
    explicit CrashInjector(batch::BatchObserver& inner);

    void image_started(const batch::PlanImage& im, int index, int todo, double eta_s) override {
        inner_.image_started(im, index, todo, eta_s);
    }
    void step(int step, int total, double seconds) override { inner_.step(step, total, seconds); }
    void image_finished(const batch::PlanImage& im, int index, int todo, double seconds, double eta_s) override {
        inner_.image_finished(im, index, todo, seconds, eta_s);
    }
    void checkpoint(const batch::BatchCheckpoint& point) override;

private:
    batch::BatchObserver& inner_;
    bool active_ = false;
    std::string point_;
    int after_ = -1;
    int step_ = -1;
};

}  // namespace multilora::cli
