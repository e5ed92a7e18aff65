// Seeded random SD1.x-architecture checkpoints and LoRAs of any size, written through the same
// safetensors writer and key map that real files are read with (benchmarks use the full SD1.5 shape).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "multilora/pipeline/tiny_model.h"

namespace at {
class Generator;
}
namespace torch::nn {
class Module;
}

namespace multilora::pipeline {

// Seeded initialisation of every parameter: norms near identity, small biases, fan-in scaled weights,
// wide embeddings.
void fill_random_weights(torch::nn::Module& module, at::Generator& generator);

// Writes an LDM single-file checkpoint with the configs as metadata; weights drawn from a CPU generator
// seeded with `seed` (norms near identity, small biases, fan-in scaled weights).
void write_random_checkpoint(const std::string& path, const TinyModelConfigs& configs, uint64_t seed);

// Writes `count` kohya LoRAs of `rank` (alpha = rank / 2) over every attention projection, feed-forward and
// proj_in/proj_out of the UNet and the text encoder's attention, as LoRAs shared online commonly do.
// Returns their paths: DIR/bench-r<rank>-<i>.safetensors.
std::vector<std::string> write_random_loras(const std::string& dir, const TinyModelConfigs& configs, int count,
                                            int64_t rank, uint64_t seed);

}  // namespace multilora::pipeline
