// Built-in ComposLoRA LoRA list (see composlora_catalog.cpp).
#pragma once

namespace multilora::eval::detail {

// A JSON array of [style, id, category, name, [trigger words]] rows.
const char* composlora_catalog_json();

}  // namespace multilora::eval::detail
