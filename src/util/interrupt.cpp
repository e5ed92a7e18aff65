#include "multilora/util/interrupt.h"

#include <atomic>
#include <csignal>
#include <cstring>

namespace multilora {

namespace {

std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs a lock-free flag");
struct sigaction g_old_int, g_old_term;

// Async-signal-safe: one atomic store, then the default action for the next signal of that kind.
extern "C" void on_signal(int sig) {
    g_signal.store(sig);
    std::signal(sig, SIG_DFL);
}

}  // namespace

InterruptScope::InterruptScope() {
    g_signal.store(0);
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &g_old_int);
    sigaction(SIGTERM, &sa, &g_old_term);
}

InterruptScope::~InterruptScope() {
    sigaction(SIGINT, &g_old_int, nullptr);
    sigaction(SIGTERM, &g_old_term, nullptr);
}

int interrupt_signal() { return g_signal.load(); }

void throw_if_interrupted() {
    const int sig = g_signal.load();
    if (sig == 0) return;
    throw Interrupted(std::string("interrupted by ") + (sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "a signal"));
}

void simulate_interrupt(int signal) { g_signal.store(signal); }

}  // namespace multilora
