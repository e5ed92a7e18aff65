#include "multilora/util/version.h"

namespace multilora {
const char* version() { return MULTILORA_VERSION; }
}  // namespace multilora
