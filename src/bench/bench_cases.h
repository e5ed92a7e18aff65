// Internal to the bench library: the cases `run_benchmark` interleaves. Each case prepares what it needs
// (adapters, a fused UNet) outside the timing, runs its steps, and tears down, so that cases can follow one
// another in ABAB... rounds on one loaded model.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "multilora/bench/benchmark.h"

namespace multilora::pipeline {
struct StableDiffusionModel;
}

namespace multilora::bench {

class PeerProcess;

// What one round of a case measured: seconds per step (the mean over the steps it ran) and FLOPs per step.
struct RoundTime {
    double seconds = 0;
    double flops = 0;
    double first_step = 0;  // the untimed first step of a method (lazy fusing of Merge's weights, caches), if any
};

struct BenchCase {
    // "kind": unet | vae_decode | text_encode | peer; for UNet cases also "case", "rank", "k", "form",
    // "rows" (UNet rows per image over the plain step's) and "steps_per_round".
    nlohmann::json meta;
    std::function<RoundTime()> run;
    std::vector<double> times;  // one per timed round
    std::vector<double> first_steps;  // the first step of each round, where the method ran one untimed
    double flops = 0;           // per step, from the warm-up round
};

// The shared state of the UNet cases: the model, the encoded prompts, a latent and a timestep.
struct BenchInputs;
std::shared_ptr<BenchInputs> make_bench_inputs(pipeline::StableDiffusionModel& model, int size);

BenchCase plain_case(const std::shared_ptr<BenchInputs>& inputs);
// Where attention takes the fused kernel: the plain step once more with the grouped-convolution route it
// replaced ("none, grouped attention"), so that one run's paired ratio shows what the kernel gains.
std::vector<BenchCase> attention_route_cases(const std::shared_ptr<BenchInputs>& inputs);
BenchCase text_encode_case(const std::shared_ptr<BenchInputs>& inputs);
BenchCase vae_decode_case(const std::shared_ptr<BenchInputs>& inputs);
BenchCase vae_tiled_case(const std::shared_ptr<BenchInputs>& inputs, int tile);
// How far the tiled decode's pixels are from the whole decode's, in 1/255 (max, mean, share over 1/255).
nlohmann::json vae_seam_error(const std::shared_ptr<BenchInputs>& inputs, int tile);
// Every method x k x rank x form case the options ask for, with LoRA files from `dir`.
std::vector<BenchCase> lora_cases(const std::shared_ptr<BenchInputs>& inputs, const BenchOptions& opt,
                                  const std::string& dir);
BenchCase peer_case(const std::shared_ptr<PeerProcess>& peer, const std::string& name);

// The methods and k values the options ask for, and the most LoRAs any case needs.
std::vector<int> bench_ks(const BenchOptions& opt, const std::string& method);
std::vector<std::string> bench_method_names(const BenchOptions& opt);
int max_loras_needed(const BenchOptions& opt);

// GEMM (through BLAS and through the model's route) and 3x3 convolution rates in `dtype`, best of `tries`.
nlohmann::json measure_peaks(const std::string& dtype, const std::string& device, bool quick, int tries);

}  // namespace multilora::bench
