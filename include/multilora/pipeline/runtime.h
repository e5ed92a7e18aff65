// Process-wide runtime set-up: the allocator, thread counts, and a description of the math libraries in
// use (recorded in manifests and benchmark output).
#pragma once

#include <nlohmann/json.hpp>

namespace multilora::pipeline {

// Keeps freed memory inside malloc instead of returning it to the kernel (no mmap for large blocks, no
// trimming, 1 GiB top pad), so the large temporaries of every UNet step do not page-fault anew.
// Called once at the top of main(). Setting MULTILORA_DEFAULT_MALLOC=1 skips it (for comparisons).
void configure_allocator();
nlohmann::json allocator_settings();

// Sets libtorch's intra-op threads (0: all hardware threads) and returns the count in force.
int configure_threads(int requested);

// libtorch version, BLAS library and its config string, CPU model, thread count, allocator settings.
nlohmann::json runtime_info();

}  // namespace multilora::pipeline
