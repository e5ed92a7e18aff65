#include "multilora/models/weight_loading.h"

#include <torch/torch.h>

#include <set>
#include <sstream>

#include "multilora/io/safetensors.h"
#include "multilora/util/error.h"
#include "multilora/util/strings.h"

namespace multilora::models {
namespace {


std::string list_some(const std::vector<std::string>& items, size_t n = 8) {
    std::ostringstream o;
    for (size_t i = 0; i < items.size() && i < n; ++i) o << "\n  " << items[i];
    if (items.size() > n) o << "\n  ... and " << (items.size() - n) << " more";
    return o.str();
}

}  // namespace

std::map<std::string, std::vector<int64_t>> shapes_of(const WeightIndex& index) {
    std::map<std::string, std::vector<int64_t>> out;
    for (const auto& [name, src] : index) out[name] = src.file->info(src.key).shape;
    return out;
}

std::vector<std::pair<std::string, at::Tensor>> named_tensors(const torch::nn::Module& module) {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& item : module.named_parameters(true)) out.emplace_back(item.key(), item.value());
    return out;
}

std::vector<std::string> assign_weights(torch::nn::Module& module, const WeightIndex& index, c10::ScalarType dtype,
                                        c10::Device device, const std::string& what) {
    std::vector<std::string> missing, mismatched;
    std::set<std::string> used;
    torch::NoGradGuard no_grad;
    for (auto& item : module.named_parameters(true)) {
        const std::string& name = item.key();
        auto it = index.find(name);
        if (it == index.end()) {
            missing.push_back(name);
            continue;
        }
        at::Tensor& param = item.value();
        const auto& info = it->second.file->info(it->second.key);
        at::IntArrayRef want = param.sizes();
        bool same = info.shape == std::vector<int64_t>(want.begin(), want.end());
        // LDM stores the VAE's attention projections as 1x1 convolutions.
        bool conv_as_linear = !same && want.size() == 2 && info.shape.size() == 4 && info.shape[0] == want[0] &&
                              info.shape[1] == want[1] && info.shape[2] == 1 && info.shape[3] == 1;
        if (!same && !conv_as_linear) {
            mismatched.push_back(name + ": file has " + shape_str(info.shape) + ", model expects " + shape_str(want.vec()));
            continue;
        }
        at::Tensor t = it->second.file->tensor(it->second.key, static_cast<int8_t>(dtype));
        if (conv_as_linear) t = t.reshape(want);
        if (t.device() != device) t = t.to(device);
        param.set_data(t);
        used.insert(name);
    }
    if (!missing.empty() || !mismatched.empty()) {
        std::ostringstream msg;
        msg << what << ": the checkpoint does not fit the model";
        if (!missing.empty()) msg << "\n" << missing.size() << " missing tensor(s):" << list_some(missing);
        if (!mismatched.empty()) msg << "\n" << mismatched.size() << " shape mismatch(es):" << list_some(mismatched);
        throw RuntimeError(msg.str());
    }
    std::vector<std::string> unused;
    for (const auto& [name, src] : index)
        if (!used.count(name)) unused.push_back(name);
    return unused;
}

}  // namespace multilora::models
