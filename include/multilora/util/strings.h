// Small string helpers shared by every layer (no torch).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace multilora {

bool starts_with(std::string_view s, std::string_view prefix);
bool ends_with(std::string_view s, std::string_view suffix);

// Joins with a separator.
template <typename Container>
std::string join(const Container& parts, std::string_view sep) {
    std::string out;
    bool first = true;
    for (const auto& p : parts) {
        if (!first) out += sep;
        out += p;
        first = false;
    }
    return out;
}

// "a.b..c" -> {"a", "b", "", "c"}.
std::vector<std::string> split(std::string_view s, char sep);

// `s` without the leading and trailing characters in `chars` (whitespace by default).
std::string trim(std::string_view s, std::string_view chars = " \t\n\r\f\v");

// "[2, 4, 64, 64]"
std::string shape_str(const std::vector<int64_t>& shape);

// "1,5,7"
std::string join_ints(const std::vector<int>& values, std::string_view sep = ",");

// Levenshtein distance (insertions, deletions, substitutions).
size_t edit_distance(std::string_view a, std::string_view b);

// The choice nearest to `word` when it is close enough to be a likely typo (at most max(2, |word|/3)
// edits away); empty otherwise. For "did you mean ...?" hints.
std::string closest(const std::string& word, const std::vector<std::string>& choices);

}  // namespace multilora
