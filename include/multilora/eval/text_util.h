// Small text helpers of the evaluation code: base64, secret redaction, number formatting.
#pragma once

#include <string>
#include <string_view>

namespace multilora::eval {

// Standard base64 (RFC 4648, with '=' padding, no line breaks).
std::string base64_encode(std::string_view bytes);

// Replaces every occurrence of `secret` in `text` with "[redacted]" (no-op for an empty secret).
std::string redact(std::string text, std::string_view secret);

// A percentage or score with a fixed number of decimals ("66.7"); "-" for NaN.
std::string format_fixed(double value, int decimals);

// Lower-cases ASCII letters.
std::string ascii_lower(std::string_view text);

// `path` relative to the folder `dir` (both made absolute and normalised first), in generic form; the
// absolute path when there is no relative one.
std::string relative_path(const std::string& path, const std::string& dir);


}  // namespace multilora::eval
