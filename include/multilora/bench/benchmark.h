// `multilora bench`: what each composition method costs per UNet step at full SD1.5 size, against the
// machine's own measured GEMM and convolution peak, with no download (random seeded weights).
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace multilora::bench {

struct BenchOptions {
    int size = 512;              // image side in pixels
    std::string dtype = "fp32";  // fp32 | bf16
    std::string device = "cpu";
    int threads = 0;
    bool quick = false;          // the tiny model, in seconds (CI smoke test)
    int repeats = 3;             // timed repeats per case (median and min are reported)
    std::vector<int> ranks{16, 128};
    // Adapter forms of the benchmark LoRAs: "lora", "loha", "lokr" (same layers and rank; LoHa and LoKr
    // have full-rank ΔW, so every layer fuses).
    std::vector<std::string> forms{"lora"};
    std::vector<std::string> methods;  // only these composition methods (empty: every method with a bench k)
    // k values per composition method (absent: the method's registered bench_k; an empty list skips it).
    std::map<std::string, std::vector<int>> method_k;
    int switch_interval = 5;
    std::string work_dir;        // where the random model and LoRAs are written (a temp folder if empty)
    std::string self_exe;        // this program, to write the model in a child process (keeps RSS honest)
};

// Runs every case and returns the report (machine, options, per-case timings, FLOPs, peaks, ratios).
nlohmann::json run_benchmark(const BenchOptions& options);

// The report as a markdown table with the ratios underneath.
std::string benchmark_markdown(const nlohmann::json& report);

// Peak resident set size of this process so far, in bytes (VmHWM).
int64_t peak_rss_bytes();

}  // namespace multilora::bench
