// `multilora bench`: what each composition method costs per UNet step at full SD1.5 size, against the
// machine's own measured GEMM and convolution peak, with no download (random seeded weights).
#pragma once

#include <functional>
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
    // Timed rounds. Every round runs the plain step and then each case once (ABAB...), after one untimed
    // warm-up round; a ratio is the median of its per-round paired ratios, reported with their min-max.
    int repeats = 3;
    // Largest spread (max - min) / median of the plain step over the run for which a verdict is given.
    double max_spread = 0.05;
    // A Python with diffusers: its UNet2DConditionModel is timed in the same rounds (empty: not compared).
    std::string compare_diffusers;
    // Tile side of the tiled VAE decode timed beside the whole one, with its seam error (0: half the size).
    int vae_tile = 0;
    // After the rounds, one plain step under libtorch's profiler: its time by operator group ("step_profile").
    bool profile = false;
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
    // Called after each timed piece of work: done of total, seconds it took, what it was.
    std::function<void(int done, int total, double seconds, const std::string& what)> progress;
};

// Ratio targets per composition method (Merge, Switch, Composite against their plain-step share).
const std::map<std::string, double>& ratio_targets();

// Runs every case in interleaved rounds and returns the report (machine, options, per-case timings, FLOPs,
// peaks, paired ratios, and the verdict: "given" is false when the plain step's spread is over max_spread).
nlohmann::json run_benchmark(const BenchOptions& options);

// The report as a markdown table with the ratios underneath.
std::string benchmark_markdown(const nlohmann::json& report);

// Peak resident set size of this process so far, in bytes (VmHWM).
int64_t peak_rss_bytes();

}  // namespace multilora::bench
