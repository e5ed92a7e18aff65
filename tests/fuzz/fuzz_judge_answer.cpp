// The judge's answer parser: arbitrary text as a VLM's answer.
#include <string>

#include "fuzz_support.h"
#include "multilora/eval/score_parser.h"

using namespace multilora;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string answer(reinterpret_cast<const char*>(data), size);
    eval::ParsedScores p = eval::parse_judge_scores(answer);
    if (p.ok) {
        // A parsed score is always a mark out of 10.
        for (int i = 0; i < 2; ++i)
            if (!(p.scores.composition[i] >= 0 && p.scores.composition[i] <= 10 && p.scores.image[i] >= 0 &&
                  p.scores.image[i] <= 10))
                __builtin_trap();
    } else if (p.error.empty()) {
        __builtin_trap();  // an unparseable answer says why
    }
    return 0;
}
