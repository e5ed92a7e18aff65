#include "multilora/eval/score_parser.h"

#include <cmath>
#include <regex>

namespace multilora::eval {

ParsedScores parse_judge_scores(const std::string& answer) {
    ParsedScores r;
    // Lower-case ASCII, drop markdown emphasis, normalise line ends, dashes and non-breaking spaces.
    std::string text;
    text.reserve(answer.size());
    for (size_t i = 0; i < answer.size(); ++i) {
        char c = answer[i];
        if (c == '*' || c == '`') continue;
        if (c == '\r') c = '\n';
        if (static_cast<unsigned char>(c) == 0xE2 && i + 2 < answer.size() &&
            static_cast<unsigned char>(answer[i + 1]) == 0x80 &&
            (static_cast<unsigned char>(answer[i + 2]) == 0x93 || static_cast<unsigned char>(answer[i + 2]) == 0x94)) {
            text += '-';  // en and em dashes
            i += 2;
            continue;
        }
        if (static_cast<unsigned char>(c) == 0xC2 && i + 1 < answer.size() &&
            static_cast<unsigned char>(answer[i + 1]) == 0xA0) {  // U+00A0
            text += ' ';
            ++i;
            continue;
        }
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        text += c;
    }
    static const std::regex line(
        R"(image[ \t]*#?[ \t]*([12])[^a-z0-9\n]*composition[ \t]*quality[ \t:=\-]*([0-9]+(?:\.[0-9]+)?)[ \t]*/[ \t]*10(?![0-9]|\.[0-9])[^\n]*?image[ \t]*quality[ \t:=\-]*([0-9]+(?:\.[0-9]+)?)[ \t]*/[ \t]*10(?![0-9]|\.[0-9]))");
    // Lines that look like a score line but do not parse, for a precise error.
    static const std::regex loose(R"(image[ \t]*#?[ \t]*([12])[^a-z0-9\n]*composition[ \t]*quality)");
    bool seen[2] = {false, false};
    std::string raw[2];
    for (auto it = std::sregex_iterator(text.begin(), text.end(), line); it != std::sregex_iterator(); ++it) {
        const auto& m = *it;
        int img = m[1].str()[0] - '1';
        r.scores.composition[img] = std::stod(m[2].str());
        r.scores.image[img] = std::stod(m[3].str());
        raw[img] = m[2].str() + "/10, " + m[3].str() + "/10";
        seen[img] = true;
    }
    for (int img = 0; img < 2; ++img) {
        if (!seen[img]) continue;
        double comp = r.scores.composition[img], qual = r.scores.image[img];
        if (!(comp >= 0 && comp <= 10) || !(qual >= 0 && qual <= 10)) {
            r.error = "image " + std::to_string(img + 1) + ": score out of the range 0..10 (" + raw[img] + ")";
            return r;
        }
    }
    if (seen[0] && seen[1]) {
        r.ok = true;
        return r;
    }
    bool loose_seen[2] = {false, false};
    for (auto it = std::sregex_iterator(text.begin(), text.end(), loose); it != std::sregex_iterator(); ++it)
        loose_seen[(*it)[1].str()[0] - '1'] = true;
    if (!seen[0] && !seen[1] && !loose_seen[0] && !loose_seen[1]) {
        r.error = "no score block (\"Image 1: Composition Quality: x/10, Image Quality: y/10\") in the answer";
    } else {
        int missing = seen[0] ? 2 : 1;
        r.error = "no valid score line for image " + std::to_string(missing) +
                  (loose_seen[missing - 1] ? " (malformed: expected \"Composition Quality: x/10, Image Quality: y/10\")"
                                           : "");
    }
    return r;
}

}  // namespace multilora::eval
