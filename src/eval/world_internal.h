// Shared by the world scorer's files (world_scorer.cpp, world_aggregate.cpp): one scored image.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "multilora/eval/run_index.h"
#include "multilora/eval/world_scorer.h"
#include "multilora/world/detector.h"

namespace multilora::eval {

struct WorldItem {
    size_t set = 0;  // index into the scored sets
    std::string method, png;
    world::Verdict verdict;
    double recall = 0;
    bool success = false;
    int leaked = 0;  // concepts found that the set does not contain
    bool in_world = false;
};

// "groups", "win_tie_loss", "pairwise" and "typical" of the summary's "world" object.
nlohmann::json aggregate_world(const std::vector<CompositionSet>& sets, const std::vector<WorldItem>& items,
                               const WorldScoreOptions& options);

}  // namespace multilora::eval
