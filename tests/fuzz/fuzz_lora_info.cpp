// The ComposLoRA lora_info file: arbitrary bytes, read as `batch` and `evaluate` read it.
#include "fuzz_support.h"
#include "multilora/batch/config.h"

using namespace multilora;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    fuzz::quiet();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = fuzz::scratch_file("lora_info.json", data, size);
    fuzz::expect_clean_errors([&] {
        batch::LoraInfo info = batch::parse_lora_info(path);
        for (const auto* e : info.all())
            if (info.find(e->id) == nullptr) __builtin_trap();  // every entry can be found by its id
    });
    return 0;
}
