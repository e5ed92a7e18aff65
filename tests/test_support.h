// Helpers shared by the tests that run the multilora binary or need the tiny model.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

namespace multilora::test {

struct CommandResult {
    int exit_code = -1;
    std::string output;  // stdout and stderr together
};

// Runs a shell command line, capturing stdout and stderr together.
inline CommandResult run_shell(const std::string& command_line) {
    const std::string cmd = command_line + " 2>&1";
    CommandResult r;
    FILE* pipe = popen(cmd.c_str(), "r");
    if (!pipe) return r;
    std::array<char, 4096> buf{};
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
    int status = pclose(pipe);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

// Runs `[ENV] [timeout -s KILL SECONDS] multilora ARGS` through the shell (arguments are passed as
// written). exit_code is -1 or 137 when killed.
inline CommandResult run_multilora_env(const std::string& env, const std::string& args, double kill_after_s = 0) {
    std::string cmd = env + (env.empty() ? "" : " ");
    if (kill_after_s > 0) cmd += "timeout -s KILL " + std::to_string(kill_after_s) + " ";
    return run_shell(cmd + std::string(ML_BINARY_PATH) + " " + args);
}

// Runs `multilora ARGS` through the shell (arguments are passed as written).
inline CommandResult run_multilora(const std::string& args) { return run_multilora_env("", args); }

inline std::string read_bytes(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// Removes every folder made by make_temp_dir when the test process exits (each gtest case runs in its
// own process), unless MULTILORA_KEEP_TEST_DIRS=1 asks to keep them for a look after a failure.
class TempDirRegistry {
public:
    static TempDirRegistry& instance() {
        static TempDirRegistry registry;
        return registry;
    }
    void add(const std::filesystem::path& p) { dirs_.push_back(p); }
    ~TempDirRegistry() {
        const char* keep = std::getenv("MULTILORA_KEEP_TEST_DIRS");
        if (keep && std::string(keep) == "1") return;
        for (const auto& d : dirs_) {
            std::error_code ec;
            std::filesystem::remove_all(d, ec);
        }
    }

private:
    std::vector<std::filesystem::path> dirs_;
};

inline std::filesystem::path make_temp_dir(const std::string& tag) {
    std::string templ = (std::filesystem::temp_directory_path() / ("multilora-" + tag + "-XXXXXX")).string();
    char* made = mkdtemp(templ.data());
    if (!made) return std::filesystem::path();
    TempDirRegistry::instance().add(made);
    return std::filesystem::path(made);
}

// The tiny model, written once per test binary by `multilora make-tiny`.
inline const std::filesystem::path& tiny_model_dir() {
    static const std::filesystem::path dir = [] {
        auto d = make_temp_dir("tiny");
        auto r = run_multilora("make-tiny --out " + d.string());
        if (r.exit_code != 0) {
            std::fprintf(stderr, "make-tiny failed: %s\n", r.output.c_str());
            std::abort();
        }
        return d;
    }();
    return dir;
}

inline std::string tiny_single_file() { return (tiny_model_dir() / "tiny-sd15.safetensors").string(); }
inline std::string tiny_folder() { return (tiny_model_dir() / "tiny-sd15").string(); }

}  // namespace multilora::test
