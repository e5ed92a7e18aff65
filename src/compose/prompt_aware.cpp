#include "multilora/compose/prompt_aware.h"

#include <torch/torch.h>

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <regex>

#include "multilora/text/clip_text_model.h"
#include "multilora/text/clip_tokenizer.h"
#include "multilora/util/strings.h"

namespace multilora::compose::prompt_aware {
namespace {

std::string regex_escape(const std::string& text) {
    static const std::regex special(R"([.^$|()\[\]{}*+?\\/\-])");
    return std::regex_replace(text, special, R"(\$&)");
}

// E(x): the mean over the 77 positions of the last hidden state, [D].
at::Tensor mean_embedding(const ModelParts& model, const std::string& text) {
    text::EncodedPrompts e = text::encode_prompts(model.tokenizer, model.text_encoder, text, "",
                                                  text::LongPromptMode::Truncate);
    return e.cond.to(at::kFloat).mean(1).squeeze(0);
}

}  // namespace

std::string strip_triggers(const std::string& prompt, const std::vector<std::string>& triggers) {
    std::string s = prompt;
    for (const auto& t : triggers)
        s = std::regex_replace(s, std::regex("\\b" + regex_escape(t) + "\\b", std::regex::icase), "");
    s = std::regex_replace(s, std::regex(R"(\s*,\s*,\s*)"), ", ");
    s = trim(std::regex_replace(s, std::regex(R"(\s+)"), " "));
    return trim(trim(s, ","));
}

std::vector<double> normalized(std::vector<double> v) {
    double total = 0;
    for (double x : v) total += x;
    if (total > 0)
        for (double& x : v) x /= total;
    return v;
}

double prompt_cosine(const ModelParts& model, const std::string& a, const std::string& b) {
    c10::InferenceMode guard;
    return at::cosine_similarity(mean_embedding(model, a), mean_embedding(model, b), 0, 1e-8).item<double>();
}

std::vector<double> ablation_weights(const ModelParts& model, const std::string& prompt,
                                     const std::vector<std::vector<std::string>>& triggers) {
    std::vector<double> v;
    for (const auto& t : triggers) {
        if (t.empty()) {
            v.push_back(0.1);
            continue;
        }
        const std::string without = strip_triggers(prompt, t);
        const double importance = without.size() < 5 ? 2.0 : 1.0 - prompt_cosine(model, prompt, without);
        v.push_back(std::max(importance, 0.05));
    }
    return normalized(v);
}

std::vector<double> trigger_weights(const ModelParts& model, const std::string& prompt,
                                    const std::vector<std::vector<std::string>>& triggers) {
    std::vector<double> v;
    for (const auto& t : triggers) {
        std::vector<std::string> words;
        for (const auto& w : t)
            if (!w.empty()) words.push_back(w);
        v.push_back(words.empty() ? 0.0 : prompt_cosine(model, prompt, join(words, ", ")));
    }
    return normalized(v);
}

std::vector<int> block_sizes(const std::vector<double>& weights, int tau) {
    const double top = *std::max_element(weights.begin(), weights.end());
    std::vector<int> blocks;
    for (double w : weights) {
        const double r = std::nearbyint(w / top * tau);  // the default rounding mode: half to even, as np.round
        blocks.push_back(std::max(1, static_cast<int>(r)));
    }
    return blocks;
}

std::vector<int> block_schedule(const std::vector<int>& blocks, int steps, int reserved, int tail) {
    std::vector<int> s;
    for (size_t i = 0; static_cast<int>(s.size()) < steps; ++i)
        s.insert(s.end(), blocks[i % blocks.size()], static_cast<int>(i % blocks.size()));
    s.resize(steps);
    for (int i = std::max(0, steps - reserved); i < steps; ++i) s[i] = tail;
    return s;
}

int active_at(const std::vector<int>& schedule, int step, bool reference) {
    const int entry = reference ? step - 1 : step;
    if (entry < 0 || schedule.empty()) return 0;
    return schedule[std::min<size_t>(static_cast<size_t>(entry), schedule.size() - 1)];
}

}  // namespace multilora::compose::prompt_aware
