// Linked into every test that runs the pipeline in-process. Several of them compare an image made here
// with one made by the multilora binary, byte for byte, so libtorch must use the kernels that the binary's
// main() selects (pipeline::configure_cpu_kernels). This runs before main(), ahead of any tensor operation.
#include "multilora/pipeline/runtime.h"

namespace {
const bool g_cpu_kernels_configured = (multilora::pipeline::configure_cpu_kernels(), true);
}  // namespace
