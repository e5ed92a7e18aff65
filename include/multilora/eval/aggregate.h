// Aggregating judgements into the figures of summary.json.
//
// Each judgement compares one set's base image with one compared method's image in one order. For a group
// (style, k, compared method; k "all" pools every k of a style, style "all" every style):
//   - mean[method][dimension]: the mean of that method's scores over all valid judgements of the group
//     (both orders count, so a set judged in both orders weighs twice as much as a set judged once);
//   - win_tie_loss[dimension]: per set, each method's scores are first averaged over the set's valid
//     orders; the compared method wins when its average is higher than the base's, ties when equal, loses
//     when lower; percentages of the group's sets (and counts);
//   - win_tie_loss_per_judgement[dimension]: the same verdict per judgement (each order on its own);
//   - position_bias: the compared method's per-judgement win/tie/loss when its image was shown first and
//     when shown second; how often the first / second image got the higher score (ties apart); and, over
//     sets judged in both orders, how often both orders gave the same verdict (order_consistency).
// Dimensions: "composition" (composition quality) and "image" (image quality). Percentages are 0..100;
// a figure with nothing to average is null.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "multilora/eval/score_parser.h"

namespace multilora::eval {

struct JudgedPair {
    std::string style;
    int k = 0;
    std::string set_key;  // LoRA ids joined with '_'
    std::string base;
    std::string compare;
    bool compare_first = false;  // the compared method's image was image 1
    JudgeScores scores;          // as the judge gave them: [0] image 1, [1] image 2
};

// {"groups": [...], "method_means": [...]}; groups ordered by style (first appearance), k ascending then
// "all", compared method in `compares` order. method_means: per (style, k) every method's mean over all its
// judgements (the base pooled over every comparison).
nlohmann::json aggregate_judgements(const std::vector<JudgedPair>& pairs, const std::string& base,
                                    const std::vector<std::string>& compares);

}  // namespace multilora::eval
