#include "cli/crash_injection.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "multilora/io/atomic_file.h"

namespace multilora::cli {
namespace {

[[noreturn]] void crash_now() {
    std::fflush(nullptr);
    ::kill(::getpid(), SIGKILL);
    ::_exit(137);
}

}  // namespace

CrashInjector::CrashInjector(batch::BatchObserver& inner) : inner_(inner) {
    const char* v = std::getenv("MULTILORA_TEST_CRASH");
    if (!v || !*v) return;
    const std::string s(v);
    const auto a = s.find(':');
    if (a == std::string::npos) return;
    const auto b = s.find(':', a + 1);
    try {
        after_ = std::stoi(s.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1));
        if (b != std::string::npos) step_ = std::stoi(s.substr(b + 1));
    } catch (const std::exception&) {
        return;
    }
    point_ = s.substr(0, a);
    active_ = true;
}

void CrashInjector::checkpoint(const batch::BatchCheckpoint& p) {
    inner_.checkpoint(p);
    if (!active_ || point_ != p.point || after_ != p.finished) return;
    if (step_ >= 0 && step_ != p.step) return;
    if (point_ == "mid-png" && p.png_path && p.png) {
        io::AtomicFileWriter partial(*p.png_path);
        partial.write(std::string_view(*p.png).substr(0, p.png->size() / 2));
        crash_now();
    }
    crash_now();
}

}  // namespace multilora::cli
