// The batch config: arbitrary bytes as a config file, read as `multilora batch` reads it (both as written and
// with --quick), with a small valid lora_info beside it so that the set keys are reached.
#include "fuzz_support.h"
#include "multilora/batch/config.h"

using namespace multilora;

namespace {

const char* kLoraInfo = R"({"character": [{"id": "c1", "name": "C1", "trigger": ["c1"]},
                                          {"id": "c2", "name": "C2", "trigger": ["c2"]}],
                            "object": [{"id": "o1", "name": "O1", "trigger": ["o1"]}]})";

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    fuzz::quiet();
    fuzz::scratch_file("lora_info.json", reinterpret_cast<const uint8_t*>(kLoraInfo), std::strlen(kLoraInfo));
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = fuzz::scratch_file("config.json", data, size);
    fuzz::expect_clean_errors([&] { (void)batch::load_batch_config(path, false); });
    fuzz::expect_clean_errors([&] { (void)batch::load_batch_config(path, true); });
    return 0;
}
