#include "multilora/io/jsonl.h"

#include <fstream>
#include <sstream>

namespace multilora::io {

std::vector<nlohmann::json> parse_jsonl(std::string_view text, size_t* malformed) {
    std::vector<nlohmann::json> out;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        std::string_view line = text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
        start = end == std::string_view::npos ? text.size() : end + 1;
        if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
        nlohmann::json j = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
        if (j.is_object()) out.push_back(std::move(j));
        else if (malformed) ++*malformed;
    }
    return out;
}

std::vector<nlohmann::json> read_jsonl(const std::string& path, size_t* malformed) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return {};
    std::ostringstream text;
    text << in.rdbuf();
    return parse_jsonl(text.str(), malformed);
}

}  // namespace multilora::io
