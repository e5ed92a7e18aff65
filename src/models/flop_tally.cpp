#include "multilora/models/flop_tally.h"

#include <atomic>

namespace multilora::models::flops {
namespace {
std::atomic<int> g_active{0};
std::atomic<double> g_total{0.0};
}  // namespace

bool enabled() { return g_active.load(std::memory_order_relaxed) > 0; }

void add(double n) {
    double cur = g_total.load(std::memory_order_relaxed);
    while (!g_total.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed)) {
    }
}

void begin() {
    g_total = 0.0;
    ++g_active;
}
void end() { --g_active; }
double total() { return g_total.load(); }

}  // namespace multilora::models::flops
