// LoRA key parsing and adapter matching: a safetensors file of fuzzed keys, shapes, dtypes and metadata,
// loaded against the tiny model as `generate --lora` loads it (read, resolve, check shapes, attach, fuse).
// The input is text, one entry per line, so that the fuzzer searches keys and shapes rather than JSON syntax:
//   KEY DIMS [DTYPE]   e.g. "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight 4x32"
//   @KEY=VALUE         a metadata entry, e.g. "@ss_base_model_version=sdxl_base_v1-0"
// DIMS are 0 to 4 sizes joined by 'x' (each at most 4096, at most 2^16 values in all; larger lines are skipped);
// DTYPE is F32 (default), F16 or BF16. Values are a fixed small pattern.
#include <torch/torch.h>

#include <sstream>

#include "fuzz_support.h"
#include "multilora/bench/tiny_model.h"
#include "multilora/io/safetensors.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/pipeline/model_loader.h"

using namespace multilora;

namespace {

pipeline::StableDiffusionModel* g_model = nullptr;

bool parse_dims(const std::string& text, std::vector<int64_t>& dims) {
    if (text == "-") return true;  // a 0-d tensor
    std::stringstream ss(text);
    std::string part;
    int64_t numel = 1;
    while (std::getline(ss, part, 'x')) {
        if (part.empty() || part.size() > 4 || part.find_first_not_of("0123456789") != std::string::npos) return false;
        const int64_t d = std::stoll(part);
        if (d > 4096 || dims.size() >= 4) return false;
        dims.push_back(d);
        numel *= d;
        if (numel > (int64_t{1} << 16)) return false;
    }
    return true;
}

void parse_entry(const std::string& line, std::vector<std::pair<std::string, at::Tensor>>& tensors,
                 std::map<std::string, std::string>& metadata) {
    if (line.empty()) return;
    if (line[0] == '@') {
        const size_t eq = line.find('=');
        if (eq != std::string::npos && eq > 1) metadata[line.substr(1, eq - 1)] = line.substr(eq + 1);
        return;
    }
    std::stringstream ss(line);
    std::string key, dims_text, dtype;
    ss >> key >> dims_text >> dtype;
    std::vector<int64_t> dims;
    if (key.empty() || !parse_dims(dims_text, dims)) return;
    for (const auto& [k, t] : tensors)
        if (k == key) return;  // a safetensors header has each key once
    const at::ScalarType st = dtype == "F16" ? at::kHalf : dtype == "BF16" ? at::kBFloat16 : at::kFloat;
    at::Tensor t = (at::arange(std::max<int64_t>(1, c10::multiply_integers(dims)), at::kFloat) % 7 - 3) * 0.01;
    tensors.emplace_back(key, t.narrow(0, 0, c10::multiply_integers(dims)).reshape(dims).to(st));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    fuzz::quiet();
    at::set_num_threads(1);
    const auto paths = bench::make_tiny_model((fuzz::scratch_dir() / "tiny").string());
    pipeline::LoadOptions opt;
    opt.model_path = paths.folder;
    g_model = new pipeline::StableDiffusionModel(pipeline::load_stable_diffusion(opt));
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    std::map<std::string, std::string> metadata;
    std::stringstream lines(std::string(reinterpret_cast<const char*>(data), size));
    for (std::string line; std::getline(lines, line);) parse_entry(line, tensors, metadata);
    const std::string path = (fuzz::scratch_dir() / "lora.safetensors").string();
    try {
        io::save_safetensors(path, tensors, metadata);  // refuses names that are not UTF-8: no such file exists
    } catch (const RuntimeError&) {
        return 0;
    }
    c10::InferenceMode inference;
    fuzz::expect_clean_errors([&] {
        (void)lora::inspect_lora(path, g_model->unet.ptr().get(), g_model->text_encoder.ptr().get(),
                                 g_model->unet->config().to_json());
    });
    fuzz::expect_clean_errors([&] {
        lora::AdapterSet set(*g_model->unet, *g_model->text_encoder, g_model->unet->config().to_json(),
                             {lora::parse_lora_spec(path + ":0.7")}, 0.8, at::kFloat, at::kCPU);
        set.activate_text({0});
        set.activate_unet({0});
        set.activate_unet_rows({{0}, {}});
        set.clear();
    });
    return 0;
}
