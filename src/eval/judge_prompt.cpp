#include "multilora/eval/judge_prompt.h"

#include "multilora/eval/text_util.h"
#include "multilora/util/strings.h"

namespace multilora::eval {

const std::string& default_judge_template() {
    static const std::string t =
        "You will compare two images produced by two different text-to-image methods. Both were asked to "
        "combine the same elements into a single picture. The elements, each followed by the features that "
        "identify it, are:\n"
        "\n"
        "{elements}\n"
        "\n"
        "Rate each image on two dimensions, using the criteria below.\n"
        "\n"
        "Composition quality: 0 to 10 in steps of 0.5 (10 is best, 0 is worst).\n"
        "- Subtract 3 points when an element is missing or shown wrongly.\n"
        "- Subtract 1 point for every feature of an element that is missing or wrong.\n"
        "- Subtract 1 point for a minor inconsistency, or the elements not fitting together well.\n"
        "- You may subtract more when the composition is incoherent, unconvincing or unimaginative.\n"
        "\n"
        "Image quality: 0 to 10 in steps of 0.5 (10 is best, 0 is worst).\n"
        "- Subtract 3 points for every deformity (for example extra limbs or fingers, a distorted face, wrong "
        "proportions).\n"
        "- Subtract 2 points for visible problems with texture, lighting or colour.\n"
        "- Subtract 1 point for every minor flaw or imperfection.\n"
        "- You may subtract more for anything else that hurts the clarity or appeal of the image.\n"
        "\n"
        "Go through the comparison step by step. Judge critically and strictly, and do not let the two "
        "images tie on both dimensions unless they truly cannot be told apart.\n"
        "\n"
        "Structure your answer like this:\n"
        "\n"
        "Assessment of the first image:\n"
        "[your reasoning]\n"
        "\n"
        "Assessment of the second image:\n"
        "[your reasoning]\n"
        "\n"
        "Scores:\n"
        "Image 1: Composition Quality: x/10, Image Quality: y/10\n"
        "Image 2: Composition Quality: x/10, Image Quality: y/10\n"
        "\n"
        "Finish with exactly that score block, with x and y replaced by your scores.";
    return t;
}

std::string format_elements(const std::vector<LoraElement>& elements, const std::string& generation_prompt) {
    std::string out;
    bool any_undescribed = false;
    for (size_t i = 0; i < elements.size(); ++i) {
        const auto& e = elements[i];
        if (i) out += "\n";
        out += std::to_string(i + 1) + ". " + e.category + " (" + e.name + ")";
        if (!e.triggers.empty()) out += ": " + join(e.triggers, ", ");
        if (!e.described) any_undescribed = true;
    }
    if (any_undescribed && !generation_prompt.empty())
        out += "\n(The images were generated from the prompt: \"" + generation_prompt + "\")";
    return out;
}

std::string render_judge_prompt(const std::string& tmpl, const PromptContext& ctx) {
    const std::pair<std::string, std::string> vars[] = {
        {"{elements}", format_elements(ctx.elements, ctx.generation_prompt)},
        {"{k}", std::to_string(ctx.k)},
        {"{style}", ctx.style},
        {"{prompt}", ctx.generation_prompt},
    };
    std::string out;
    out.reserve(tmpl.size() + 512);
    size_t i = 0;
    while (i < tmpl.size()) {
        bool replaced = false;
        if (tmpl[i] == '{') {
            for (const auto& [name, value] : vars) {
                if (tmpl.compare(i, name.size(), name) == 0) {
                    out += value;
                    i += name.size();
                    replaced = true;
                    break;
                }
            }
        }
        if (!replaced) out += tmpl[i++];
    }
    return out;
}

}  // namespace multilora::eval
