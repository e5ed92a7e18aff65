// Counts the model's multiply-add work from layer shapes as layers run (convolutions, linears, attention
// products), for the benchmark's achieved-GFLOP/s figures. Off unless a FlopCounter is alive; counting is
// two additions per layer call.
#pragma once

#include <cstdint>

namespace multilora::models {

class FlopCounter {
public:
    FlopCounter();   // starts counting from zero
    ~FlopCounter();  // stops
    double flops() const;  // FLOPs (2 per multiply-add) since construction
};

namespace flops {
bool enabled();
void add(double n);
}  // namespace flops

}  // namespace multilora::models
