// JSON Lines files (batch.jsonl, judgements.jsonl): one JSON object per line, appended durably by
// io::append_line_durable. Readers skip blank lines and count malformed ones: a run killed mid-write can
// leave a cut last line.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace multilora::io {

// The JSON objects of `text`, one per line; a line that is not a JSON object is counted in `malformed`.
std::vector<nlohmann::json> parse_jsonl(std::string_view text, size_t* malformed = nullptr);

// The same for a file; a missing or unreadable file gives no records.
std::vector<nlohmann::json> read_jsonl(const std::string& path, size_t* malformed = nullptr);

}  // namespace multilora::io
