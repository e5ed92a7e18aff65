#include "cli/batch_progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "cli/progress.h"

namespace multilora::cli {
namespace {

std::string eta_text(double s) { return s < 0 ? std::string("--:--") : format_duration(s); }

std::string join_ids(const std::vector<std::string>& ids) {
    std::string out;
    for (size_t i = 0; i < ids.size(); ++i) out += (i ? "+" : "") + ids[i];
    return out;
}

}  // namespace

BatchProgress::BatchProgress(bool enabled, int shard_total, int already_done)
    : enabled_(enabled), tty_(isatty(STDERR_FILENO) == 1), shard_total_(shard_total), done_(already_done) {}

BatchProgress::~BatchProgress() { finish(); }

std::string BatchProgress::overall_line(double eta_s) const {
    char buf[256];
    std::snprintf(buf, sizeof buf, "batch [%s] %d/%d images  ETA %s", progress_bar(done_, shard_total_, 30).c_str(), done_,
                  shard_total_, eta_text(eta_s).c_str());
    return buf;
}

void BatchProgress::draw(const std::string& overall, const std::string& step_line) {
    std::string out;
    if (drawn_) out += "\r\033[K\033[1A\r\033[K";
    out += overall + "\n" + step_line;
    std::fputs(out.c_str(), stderr);
    std::fflush(stderr);
    drawn_ = true;
}

void BatchProgress::image_started(const batch::PlanImage& im, int index, int todo, double eta_s) {
    if (!enabled_) return;
    index_ = index;
    todo_ = todo;
    image_eta_start_ = eta_s;
    image_elapsed_ = 0;
    last_plain_step_ = -1;
    label_ = im.method + " " + join_ids(im.lora_ids) + " (k=" + std::to_string(im.k) + " #" + std::to_string(im.set_index) + ")";
    if (tty_) {
        draw(overall_line(eta_s), "  " + label_ + " starting");
    } else {
        std::fprintf(stderr, "[%d/%d] %s  (%d/%d of the shard done, ETA %s)\n", index + 1, todo, label_.c_str(), done_,
                     shard_total_, eta_text(eta_s).c_str());
        std::fflush(stderr);
    }
}

void BatchProgress::step(int step, int total, double seconds) {
    if (!enabled_) return;
    image_elapsed_ += seconds;
    const int done = step + 1;
    const double per_it = image_elapsed_ / done;
    const double image_eta = per_it * (total - done);
    double eta = image_eta_start_ < 0 ? -1 : std::max(image_eta, image_eta_start_ - image_elapsed_);
    if (tty_) {
        char buf[512];
        std::snprintf(buf, sizeof buf, "  %s [%s] %d/%d  %.2f s/it  ETA %s", label_.c_str(), progress_bar(done, total, 20).c_str(),
                      done, total, per_it, format_duration(image_eta).c_str());
        draw(overall_line(eta), buf);
    } else {
        const int tenth = std::max(1, total / 10);
        if (done == total || done / tenth != last_plain_step_) {
            last_plain_step_ = done / tenth;
            std::fprintf(stderr, "  step %d/%d  %.2f s/it  ETA %s\n", done, total, per_it, format_duration(image_eta).c_str());
            std::fflush(stderr);
        }
    }
}

void BatchProgress::image_finished(const batch::PlanImage& im, int index, int todo, double seconds, double eta_s) {
    if (!enabled_) return;
    ++done_;
    if (tty_) {
        draw(overall_line(eta_s), "  " + label_ + " done in " + format_duration(seconds));
    } else {
        std::fprintf(stderr, "[%d/%d] wrote %s in %.1f s  (%d/%d of the shard done, ETA %s)\n", index + 1, todo,
                     im.rel_png.c_str(), seconds, done_, shard_total_, eta_text(eta_s).c_str());
        std::fflush(stderr);
    }
}

void BatchProgress::finish() {
    if (drawn_) {
        std::fputc('\n', stderr);
        std::fflush(stderr);
        drawn_ = false;
    }
}

}  // namespace multilora::cli
