#include "multilora/pipeline/runtime.h"

#include <torch/torch.h>
#include <torch/version.h>

#include <dlfcn.h>
#include <malloc.h>

#include <cstdlib>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>

#include "multilora/models/fused_attention.h"
#include "multilora/models/matmul_kernels.h"

namespace multilora::pipeline {
namespace {

bool g_allocator_tuned = false;
constexpr int kTrimThreshold = 1 << 30;  // mallopt takes an int; 1 GiB is "never" for our purposes
constexpr int kTopPad = 1 << 30;

std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("model name", 0) == 0) {
            auto pos = line.find(':');
            return pos == std::string::npos ? line : line.substr(pos + 2);
        }
    return "unknown";
}

std::string blas_library() {
    // The BLAS that libtorch resolved its sgemm through (Debian links libblas.so.3, an alternatives link).
    void* sym = dlsym(RTLD_DEFAULT, "sgemm_");
    Dl_info info{};
    if (sym && dladdr(sym, &info) && info.dli_fname) {
        char resolved[4096];
        if (realpath(info.dli_fname, resolved)) return resolved;
        return info.dli_fname;
    }
    return "unknown";
}

std::string openblas_config() {
    using Fn = char* (*)();
    auto fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
    return fn ? std::string(fn()) : std::string();
}

}  // namespace

void configure_allocator() {
    const char* opt_out = std::getenv("MULTILORA_DEFAULT_MALLOC");
    if (opt_out && std::string(opt_out) == "1") return;
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, kTrimThreshold);
    mallopt(M_TOP_PAD, kTopPad);
    g_allocator_tuned = true;
}

void release_free_memory() {
    if (g_allocator_tuned) malloc_trim(0);
}

bool cpu_has_avx512() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    // What libtorch's AVX-512 kernels are compiled for (F, BW, VL, DQ).
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
    return false;
#endif
}

void configure_cpu_kernels() {
    // libtorch 1.13 takes ATEN_CPU_CAPABILITY at its word: "avx512" on a CPU without AVX-512 dies of SIGILL at
    // the first kernel. So it is only set where the CPU has the instructions.
    if (cpu_has_avx512()) setenv("ATEN_CPU_CAPABILITY", "avx512", /*overwrite=*/0);
    const char* blas = std::getenv("MULTILORA_BLAS_PRODUCTS");
    if (blas && std::string(blas) == "1") {
        models::set_onednn_products_enabled(false);
        models::set_fused_attention_enabled(false);
    }
}

nlohmann::json allocator_settings() {
    if (!g_allocator_tuned) return {{"tuned", false}};
    return {{"tuned", true}, {"M_MMAP_MAX", 0}, {"M_TRIM_THRESHOLD", kTrimThreshold}, {"M_TOP_PAD", kTopPad}};
}

int configure_threads(int requested) {
    static std::once_flag interop_once;
    int n = requested > 0 ? requested : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    std::call_once(interop_once, [] {
        try {
            at::set_num_interop_threads(1);
        } catch (...) {
            // Already started by an earlier parallel region; harmless.
        }
    });
    at::set_num_threads(n);
    return at::get_num_threads();
}

nlohmann::json runtime_info() {
    nlohmann::json j;
    j["libtorch"] = TORCH_VERSION;
    j["blas_library"] = blas_library();
    std::string ob = openblas_config();
    j["openblas"] = ob.empty() ? nlohmann::json(nullptr) : nlohmann::json(ob);
    j["cpu"] = cpu_model();
    j["hardware_threads"] = std::thread::hardware_concurrency();
    j["threads"] = at::get_num_threads();
    j["allocator"] = allocator_settings();
    const char* capability = std::getenv("ATEN_CPU_CAPABILITY");
    j["aten_cpu_capability_requested"] = capability ? nlohmann::json(capability) : nlohmann::json(nullptr);
    j["matmul_route"] = models::onednn_products_enabled() ? "onednn (1x1 convolutions) for float32 CPU, else BLAS"
                                                          : "BLAS (at::linear, at::bmm)";
    j["cuda_available"] = torch::cuda::is_available();
    return j;
}

}  // namespace multilora::pipeline
