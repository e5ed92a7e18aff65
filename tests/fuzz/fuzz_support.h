// Shared by the libFuzzer targets (scripts/fuzz.sh). Each target feeds one input from outside through the
// code that reads it, as multilora reads it: files go through a scratch file, since the readers take paths.
// The only exceptions a reader may throw are multilora's own UsageError and RuntimeError, which carry the
// message the user sees; anything else (nlohmann, std::out_of_range, c10::Error, ...) escapes the target and
// libFuzzer reports it as a crash, as it does for sanitizer reports.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <spdlog/spdlog.h>

#include "multilora/util/error.h"

namespace multilora::fuzz {

// A scratch folder of this process under $TMPDIR (or /tmp), made once.
inline const std::filesystem::path& scratch_dir() {
    static const std::filesystem::path dir = [] {
        const char* t = std::getenv("TMPDIR");
        auto d = std::filesystem::path(t && *t ? t : "/tmp") / ("multilora-fuzz-" + std::to_string(getpid()));
        std::filesystem::create_directories(d);
        return d;
    }();
    return dir;
}

// Writes the bytes to scratch_dir()/name and returns the path.
inline std::string scratch_file(const std::string& name, const uint8_t* data, size_t size) {
    const std::string path = (scratch_dir() / name).string();
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    return path;
}

// Logging off: the readers warn about odd inputs, and printing is most of an execution's time.
inline void quiet() { spdlog::set_level(spdlog::level::off); }

// Runs `read`; multilora's own errors are the expected outcome for bad input, so they are swallowed (after
// checking that they say something).
template <class F>
void expect_clean_errors(F&& read) {
    try {
        read();
    } catch (const UsageError& e) {
        if (!*e.what()) __builtin_trap();
    } catch (const RuntimeError& e) {
        if (!*e.what()) __builtin_trap();
    }
}

}  // namespace multilora::fuzz
