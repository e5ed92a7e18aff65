// A peer implementation timed in the same interleaved rounds as `bench`'s own cases: a child process that
// speaks a line protocol on its stdin/stdout. It prints "ready" once it has loaded and warmed up; for each
// "step" line it runs one timed forward and prints the seconds it took; "quit" (or end of input) ends it.
#pragma once

#include <string>
#include <sys/types.h>
#include <vector>

namespace multilora::bench {

class PeerProcess {
public:
    // Starts argv[0] (looked up in PATH) with `extra_env` ("NAME=value") added to this environment, and waits
    // for its "ready" line. Throws RuntimeError naming `what` when it cannot start or ends before it is ready.
    PeerProcess(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env, std::string what);
    ~PeerProcess();  // sends "quit" and reaps the child
    PeerProcess(const PeerProcess&) = delete;
    PeerProcess& operator=(const PeerProcess&) = delete;

    // One timed step, as the peer measured it (seconds). Throws RuntimeError if the peer's answer is not a
    // positive number.
    double step();

private:
    std::string read_line();
    void send(const std::string& line);

    std::string what_;
    pid_t pid_ = -1;
    int to_child_ = -1, from_child_ = -1;
    std::string buffer_;
};

// The Python program `bench --compare-diffusers PYTHON` runs: diffusers' UNet2DConditionModel built from the
// bench model's UNet config (--config, diffusers' keys; seeded random weights), one batch-2 forward per step
// at the bench's latent size, dtype and threads.
const char* diffusers_peer_script();

}  // namespace multilora::bench
