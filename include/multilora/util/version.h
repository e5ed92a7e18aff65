#pragma once

namespace multilora {
// The project version (CMake's PROJECT_VERSION).
const char* version();
}  // namespace multilora
