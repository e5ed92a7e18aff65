// The safetensors header and offsets: arbitrary bytes as a .safetensors file, opened and every tensor read.
#include <torch/torch.h>

#include "fuzz_support.h"
#include "multilora/io/safetensors.h"

using namespace multilora;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    fuzz::quiet();
    at::set_num_threads(1);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = fuzz::scratch_file("input.safetensors", data, size);
    fuzz::expect_clean_errors([&] {
        auto file = io::SafetensorsFile::open(path);
        for (const auto& name : file->names()) {
            const io::TensorInfo& info = file->info(name);
            at::Tensor t = file->tensor(name);
            // Touch every byte the header claims: a range past the mapping would fault here.
            if (t.numel() > 0 && info.end > info.begin) {
                const auto* p = static_cast<const uint8_t*>(t.data_ptr());
                volatile uint8_t sink = p[0] ^ p[info.end - info.begin - 1];
                (void)sink;
            }
            if (info.dtype == "F16" || info.dtype == "BF16" || info.dtype == "F32")
                (void)file->tensor(name, static_cast<int8_t>(at::kFloat));
        }
    });
    return 0;
}
