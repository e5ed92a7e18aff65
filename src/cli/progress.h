// Step progress on stderr: a redrawn bar with s/it and ETA on a terminal, plain lines otherwise.
#pragma once

#include <string>

namespace multilora::cli {

class StepProgress {
public:
    // `label` prefixes every line (e.g. "image 1/4").
    explicit StepProgress(std::string label, bool enabled = true);
    ~StepProgress();
    void update(int step, int total, double step_seconds);
    // Text shown after the ETA from the next update on (e.g. "loss 0.1234").
    void set_detail(std::string detail) { detail_ = std::move(detail); }
    void finish();

private:
    std::string label_;
    std::string detail_;
    bool enabled_;
    bool tty_;
    bool open_line_ = false;
    double elapsed_ = 0;
};

std::string format_duration(double seconds);

// "#####....." of `width` characters, filled in proportion to done/total (full when total is 0).
std::string progress_bar(int done, int total, int width);

}  // namespace multilora::cli
