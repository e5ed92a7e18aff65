// Filling a module's parameters from safetensors files, by diffusers name.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace torch::nn {
class Module;
}

namespace multilora::io {
class SafetensorsFile;
}

namespace multilora::models {

// Where one diffusers-named tensor lives: a file and its key there.
struct TensorSource {
    std::shared_ptr<io::SafetensorsFile> file;
    std::string key;
};
using WeightIndex = std::map<std::string, TensorSource>;

// Assigns every parameter of `module` from `index`, converting to `dtype` and moving to `device`.
// A tensor already of the right dtype on the CPU is used in place (it keeps the file mapping alive).
// LDM's 1x1-conv attention weights ([C, C, 1, 1]) fill Linear weights ([C, C]).
// Throws RuntimeError naming `what` and the missing / mismatched keys (a few, and how many).
// Returns the names in `index` that no parameter used.
std::vector<std::string> assign_weights(torch::nn::Module& module, const WeightIndex& index, c10::ScalarType dtype,
                                        c10::Device device, const std::string& what);

// Shapes of the index's tensors, for detect_from_weights.
std::map<std::string, std::vector<int64_t>> shapes_of(const WeightIndex& index);

// Every parameter of `module` as (name, tensor), in registration order.
std::vector<std::pair<std::string, at::Tensor>> named_tensors(const torch::nn::Module& module);

}  // namespace multilora::models
