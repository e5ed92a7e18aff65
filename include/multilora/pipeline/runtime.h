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

// Hands the free pages held inside malloc back to the kernel (malloc_trim). Called between phases
// (text encoding, denoising, VAE decoding) whose temporaries have different shapes: each phase then reuses
// its own memory without the previous phase's free blocks staying resident. No-op when the allocator is
// not tuned.
void release_free_memory();

// Lets libtorch's elementwise kernels (softmax, gelu, norms) use AVX-512 where the CPU has it: libtorch
// 1.13 defaults to its AVX2 kernels even then. Measured at 512x512: softmax-heavy attention 11% faster,
// the UNet step 6%. Sets ATEN_CPU_CAPABILITY=avx512 unless the user set that variable, and only
// on CPUs with AVX-512 F/BW/VL/DQ: libtorch 1.13 obeys the variable without checking the CPU (SIGILL).
// Must run before the first tensor operation.
// MULTILORA_BLAS_PRODUCTS=1 sends linear layers and attention to at::linear/at::bmm instead of oneDNN
// (models/matmul_kernels.h) or the fused attention kernel (models/fused_attention.h), for comparisons.
void configure_cpu_kernels();
bool cpu_has_avx512();

// Sets libtorch's intra-op threads (0: all hardware threads) and returns the count in force.
int configure_threads(int requested);

// libtorch version, BLAS library and its config string, CPU model, thread count, allocator settings.
nlohmann::json runtime_info();

}  // namespace multilora::pipeline
