#include "cli/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>

namespace multilora::cli {

std::string format_duration(double seconds) {
    long s = std::lround(std::max(0.0, seconds));
    char buf[32];
    if (s >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
    else std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
    return buf;
}

std::string progress_bar(int done, int total, int width) {
    int filled = total > 0 ? static_cast<int>(int64_t(done) * width / total) : width;
    std::string b(std::clamp(filled, 0, width), '#');
    b.resize(width, '.');
    return b;
}

StepProgress::StepProgress(std::string label, bool enabled)
    : label_(std::move(label)), enabled_(enabled), tty_(isatty(STDERR_FILENO) == 1) {}

StepProgress::~StepProgress() { finish(); }

void StepProgress::update(int step, int total, double step_seconds) {
    if (!enabled_) return;
    elapsed_ += step_seconds;
    const int done = step + 1;
    const double per_it = elapsed_ / done;
    const double eta = per_it * (total - done);
    if (tty_) {
        std::fprintf(stderr, "\r%s [%s] %d/%d  %.2f s/it  ETA %s %s", label_.c_str(), progress_bar(done, total, 30).c_str(), done,
                     total, per_it, format_duration(eta).c_str(), detail_.c_str());
        open_line_ = true;
        if (done == total) finish();
    } else {
        std::fprintf(stderr, "%s step %d/%d  %.2f s/it  ETA %s %s\n", label_.c_str(), done, total, per_it,
                     format_duration(eta).c_str(), detail_.c_str());
    }
    std::fflush(stderr);
}

void StepProgress::finish() {
    if (open_line_) {
        std::fputc('\n', stderr);
        open_line_ = false;
    }
}

}  // namespace multilora::cli
