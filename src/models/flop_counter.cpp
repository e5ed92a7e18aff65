#include "multilora/models/flop_counter.h"

#include <atomic>

namespace multilora::models {
namespace {
std::atomic<int> g_active{0};
std::atomic<double> g_total{0.0};
}  // namespace

FlopCounter::FlopCounter() {
    g_total = 0.0;
    ++g_active;
}
FlopCounter::~FlopCounter() { --g_active; }
double FlopCounter::flops() const { return g_total.load(); }

namespace flops {
bool enabled() { return g_active.load(std::memory_order_relaxed) > 0; }
void add(double n) {
    double cur = g_total.load(std::memory_order_relaxed);
    while (!g_total.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed)) {
    }
}
}  // namespace flops

}  // namespace multilora::models
