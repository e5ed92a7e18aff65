// Reading optional fields of a config.json (diffusers / transformers): absent or null keeps the default.
#pragma once

#include <nlohmann/json.hpp>

namespace multilora::models {

template <typename T>
void read_if(const nlohmann::json& j, const char* key, T& out) {
    auto it = j.find(key);
    if (it != j.end() && !it->is_null()) out = it->get<T>();
}

}  // namespace multilora::models
