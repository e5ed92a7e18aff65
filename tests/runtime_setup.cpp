// Linked into every test that runs the pipeline in-process. Several of them compare an image made here
// with one made by the multilora binary, byte for byte, so libtorch must use the kernels that the binary's
// main() selects (pipeline::configure_cpu_kernels). This runs before main(), ahead of any tensor operation.
// The allocator is tuned as main() tunes it, too: with glibc's defaults every large temporary tensor is a
// fresh mapping that page-faults again, and on a host where page faults are slow (a paravirtualized AMD EPYC,
// 2026-12-07: 35% of the detector's accuracy test in the kernel's fault path) that alone pushed a test past
// its 600-second limit.
#include "multilora/pipeline/runtime.h"

namespace {
const bool g_runtime_configured = (multilora::pipeline::configure_cpu_kernels(), multilora::pipeline::configure_allocator(), true);
}  // namespace
