// Counts the model's FLOPs over a scope, from the layers' shape-based tally (models/flop_tally.h), for the
// benchmark's achieved-GFLOP/s figures.
#pragma once

#include "multilora/models/flop_tally.h"

namespace multilora::bench {

class FlopCounter {
public:
    FlopCounter() { models::flops::begin(); }  // starts counting from zero
    ~FlopCounter() { models::flops::end(); }
    FlopCounter(const FlopCounter&) = delete;
    FlopCounter& operator=(const FlopCounter&) = delete;
    double flops() const { return models::flops::total(); }  // FLOPs (2 per multiply-add) since construction
};

}  // namespace multilora::bench
