// The PNG readers: the tEXt chunk reader (what resume checks and tests read back) and the pixel decoder.
#include <string>

#include "fuzz_support.h"
#include "multilora/io/png_writer.h"

using namespace multilora;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string png(reinterpret_cast<const char*>(data), size);
    fuzz::expect_clean_errors([&] { (void)io::read_png_text_chunks(png); });
    fuzz::expect_clean_errors([&] {
        int w = 0, h = 0;
        const auto rgb = io::decode_png_rgb(png, &w, &h);
        if (rgb.size() != static_cast<size_t>(w) * static_cast<size_t>(h) * 3) __builtin_trap();
    });
    return 0;
}
