// A1111's "parameters" PNG text (infotext), read back: the prompt, the negative prompt and the
// "Key: value, ..." settings line, as modules/infotext_utils.py's parse_generation_parameters splits them.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace multilora::pipeline {

struct InfoText {
    std::string prompt, negative_prompt;
    std::vector<std::pair<std::string, std::string>> fields;  // in the line's order; quoted values unquoted
    // The value of `key`, or nullptr.
    const std::string* field(const std::string& key) const;
};

// Splits the text: lines up to "Negative prompt:" are the prompt, the lines from there the negative prompt,
// and the last line the settings when it holds at least three "Key: value" pairs.
InfoText parse_infotext(const std::string& text);

// The "parameters" text chunk of a PNG file. Throws RuntimeError when the file is unreadable, not a PNG, or
// carries no parameters (naming what it has).
InfoText read_png_infotext(const std::string& png_path);

// multilora's scheduler for an A1111 sampler (and A1111 1.9's separate "Schedule type"); "" when none matches.
std::string scheduler_for_a1111_sampler(const std::string& sampler, const std::string& schedule_type);

}  // namespace multilora::pipeline
