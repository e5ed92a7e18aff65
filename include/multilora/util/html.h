// HTML escaping shared by the generated pages (batch gallery, evaluation report).
#pragma once

#include <string>
#include <string_view>

namespace multilora {

// Escapes & < > " ' for HTML text and attribute values.
std::string html_escape(std::string_view text);

}  // namespace multilora
