#include "multilora/pipeline/infotext.h"

#include "multilora/io/atomic_file.h"
#include "multilora/io/png_writer.h"
#include "multilora/pipeline/image_outputs.h"
#include "multilora/sampling/scheduler.h"
#include "multilora/util/error.h"
#include "multilora/util/strings.h"

namespace multilora::pipeline {
namespace {

// "Key: value" pairs of the settings line; a value in double quotes may hold commas (and \" escapes).
std::vector<std::pair<std::string, std::string>> settings_pairs(const std::string& line) {
    std::vector<std::pair<std::string, std::string>> out;
    size_t i = 0;
    while (i < line.size()) {
        const size_t colon = line.find(':', i);
        if (colon == std::string::npos) break;
        const std::string key = trim(line.substr(i, colon - i));
        size_t j = colon + 1;
        while (j < line.size() && line[j] == ' ') ++j;
        std::string value;
        if (j < line.size() && line[j] == '"') {
            for (++j; j < line.size() && line[j] != '"'; ++j) {
                if (line[j] == '\\' && j + 1 < line.size()) ++j;
                value += line[j];
            }
            const size_t comma = line.find(',', j);
            i = comma == std::string::npos ? line.size() : comma + 1;
        } else {
            const size_t comma = line.find(',', j);
            value = trim(line.substr(j, comma == std::string::npos ? std::string::npos : comma - j));
            i = comma == std::string::npos ? line.size() : comma + 1;
        }
        if (!key.empty()) out.emplace_back(key, value);
    }
    return out;
}

}  // namespace

const std::string* InfoText::field(const std::string& key) const {
    for (const auto& [k, v] : fields)
        if (k == key) return &v;
    return nullptr;
}

InfoText parse_infotext(const std::string& text) {
    std::vector<std::string> lines = split(trim(text), '\n');
    InfoText out;
    if (!lines.empty()) {
        auto pairs = settings_pairs(lines.back());
        if (pairs.size() >= 3) {
            out.fields = std::move(pairs);
            lines.pop_back();
        }
    }
    bool negative = false;
    for (std::string line : lines) {
        line = trim(line);
        if (starts_with(line, "Negative prompt:")) {
            negative = true;
            line = trim(line.substr(16));
        }
        std::string& target = negative ? out.negative_prompt : out.prompt;
        target += (target.empty() ? "" : "\n") + line;
    }
    return out;
}

InfoText read_png_infotext(const std::string& png_path) {
    const std::string bytes = io::read_file(png_path);
    std::vector<std::pair<std::string, std::string>> chunks;
    try {
        chunks = io::read_png_text_chunks(bytes);
    } catch (const std::exception& e) {
        throw RuntimeError("'" + png_path + "' is not a readable PNG: " + e.what());
    }
    std::string keys;
    for (const auto& [k, v] : chunks) {
        if (k == "parameters") return parse_infotext(v);
        keys += (keys.empty() ? "" : ", ") + k;
    }
    throw RuntimeError("'" + png_path + "' has no A1111 \"parameters\" text" +
                       (keys.empty() ? std::string(" (no text chunks at all)") : " (its text chunks: " + keys + ")"));
}

std::string scheduler_for_a1111_sampler(const std::string& sampler, const std::string& schedule_type) {
    std::string name = sampler;
    if (!schedule_type.empty() && schedule_type != "Automatic") name += " " + schedule_type;
    for (const auto& s : sampling::scheduler_names())
        if (a1111_sampler_name(s) == name) return s;
    return "";
}

}  // namespace multilora::pipeline
