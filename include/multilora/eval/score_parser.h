// Reading the judge's final score block:
//   Image 1: Composition Quality: x/10, Image Quality: y/10
//   Image 2: Composition Quality: x/10, Image Quality: y/10
// Case, spacing, markdown emphasis (*, **, `), and the punctuation between the parts are free; each image's
// two scores must be on one line, written as "N/10" (N a decimal number from 0 to 10). Text before, between
// and after the lines is ignored. When an image's line appears more than once, the last one counts (the
// block is asked for at the end). An answer without a valid line for both images is unparseable, and the
// caller asks again.
#pragma once

#include <string>

namespace multilora::eval {

struct JudgeScores {
    double composition[2] = {0, 0};  // [0] image 1 (first shown), [1] image 2
    double image[2] = {0, 0};
};

struct ParsedScores {
    bool ok = false;
    JudgeScores scores;
    std::string error;  // why it is unparseable
};

ParsedScores parse_judge_scores(const std::string& answer);

}  // namespace multilora::eval
