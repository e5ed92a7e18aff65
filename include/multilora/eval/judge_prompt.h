// The comparative judge's prompt: the paper's rubric (two images of one composition, composition quality
// and image quality from 0 to 10), written in this project's own words, and the score block it asks for.
//
// Templates (the built-in one, or --prompt-template FILE) may use these placeholders:
//   {elements}  the numbered element list, one line each: "1. character (Kamado Nezuko): kamado nezuko, black hair"
//   {k}         the number of elements
//   {style}     the run's style folder name (e.g. anime)
//   {prompt}    the generation prompt of the set (empty when unknown)
// Anything else in braces is left as written. A custom template must still ask for the score block
//   Image 1: Composition Quality: x/10, Image Quality: y/10
//   Image 2: Composition Quality: x/10, Image Quality: y/10
// since that is what the answers are parsed for.
#pragma once

#include <string>
#include <vector>

#include "multilora/eval/run_index.h"

namespace multilora::eval {

const std::string& default_judge_template();

// The numbered element lines. Elements known only by id are listed as "N. category (id)"; when there are
// such elements and `generation_prompt` is not empty, a line quoting the generation prompt follows.
std::string format_elements(const std::vector<LoraElement>& elements, const std::string& generation_prompt);

struct PromptContext {
    std::vector<LoraElement> elements;
    std::string style;
    int k = 0;
    std::string generation_prompt;
};

std::string render_judge_prompt(const std::string& tmpl, const PromptContext& ctx);

}  // namespace multilora::eval
