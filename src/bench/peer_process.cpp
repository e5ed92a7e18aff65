#include "multilora/bench/peer_process.h"

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "multilora/util/error.h"

extern char** environ;

namespace multilora::bench {

namespace {

std::vector<char*> c_strings(std::vector<std::string>& items) {
    std::vector<char*> out;
    for (std::string& s : items) out.push_back(s.data());
    out.push_back(nullptr);
    return out;
}

// This process's environment with `extra` set (each "NAME=value" replaces an existing NAME).
std::vector<std::string> child_environment(const std::vector<std::string>& extra) {
    std::vector<std::string> env;
    for (char** e = environ; e && *e; ++e) {
        std::string entry(*e);
        bool replaced = false;
        for (const std::string& x : extra)
            if (entry.compare(0, x.find('=') + 1, x, 0, x.find('=') + 1) == 0) replaced = true;
        if (!replaced) env.push_back(entry);
    }
    env.insert(env.end(), extra.begin(), extra.end());
    return env;
}

}  // namespace

PeerProcess::PeerProcess(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env, std::string what)
    : what_(std::move(what)) {
    int in_pipe[2], out_pipe[2];
    if (pipe(in_pipe) != 0 || pipe(out_pipe) != 0) throw RuntimeError(what_ + ": cannot create pipes");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in_pipe[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
    for (int fd : {in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1]}) posix_spawn_file_actions_addclose(&actions, fd);
    std::vector<std::string> args = argv, env = child_environment(extra_env);
    std::vector<char*> c_args = c_strings(args), c_env = c_strings(env);
    const int rc = posix_spawnp(&pid_, c_args[0], &actions, nullptr, c_args.data(), c_env.data());
    posix_spawn_file_actions_destroy(&actions);
    close(in_pipe[0]);
    close(out_pipe[1]);
    to_child_ = in_pipe[1];
    from_child_ = out_pipe[0];
    if (rc != 0) {
        pid_ = -1;
        throw RuntimeError(what_ + ": cannot run '" + argv[0] + "': " + std::strerror(rc));
    }
    std::signal(SIGPIPE, SIG_IGN);  // a peer that died is reported by its missing answer, not by a signal
    const std::string first = read_line();
    if (first != "ready") throw RuntimeError(what_ + ": the peer said \"" + first + "\" instead of \"ready\"");
}

PeerProcess::~PeerProcess() {
    if (to_child_ >= 0) {
        // Never throws: a peer that is already gone just does not read it (SIGPIPE is ignored).
        if (pid_ > 0 && write(to_child_, "quit\n", 5) < 0) {
            // the peer is gone already; waitpid below reaps it
        }
        close(to_child_);
    }
    if (from_child_ >= 0) close(from_child_);
    if (pid_ > 0) {
        int status = 0;
        waitpid(pid_, &status, 0);
    }
}

void PeerProcess::send(const std::string& line) {
    const std::string text = line + "\n";
    if (write(to_child_, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
        throw RuntimeError(what_ + ": the peer process is gone (cannot write to it)");
}

std::string PeerProcess::read_line() {
    for (;;) {
        const size_t nl = buffer_.find('\n');
        if (nl != std::string::npos) {
            std::string line = buffer_.substr(0, nl);
            buffer_.erase(0, nl + 1);
            return line;
        }
        char chunk[512];
        const ssize_t n = read(from_child_, chunk, sizeof chunk);
        if (n <= 0) {
            int status = 0;
            const pid_t done = pid_ > 0 ? waitpid(pid_, &status, 0) : -1;
            pid_ = -1;
            const std::string how = done > 0 && WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status))
                                                                  : "ended";
            throw RuntimeError(what_ + ": the peer process " + how + " without an answer (its errors are above)");
        }
        buffer_.append(chunk, static_cast<size_t>(n));
    }
}

double PeerProcess::step() {
    send("step");
    const std::string answer = read_line();
    char* end = nullptr;
    const double seconds = std::strtod(answer.c_str(), &end);
    if (answer.empty() || end != answer.c_str() + answer.size() || !(seconds > 0))
        throw RuntimeError(what_ + ": the peer answered \"" + answer + "\", not a time in seconds");
    return seconds;
}

const char* diffusers_peer_script() {
    return R"PY(# Written by `multilora bench --compare-diffusers`: diffusers' UNet, timed one step per "step" line.
import argparse, sys, time
ap = argparse.ArgumentParser()
ap.add_argument("--config", required=True)
ap.add_argument("--latent-size", type=int, required=True)
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--dtype", default="fp32")
ap.add_argument("--rows", type=int, default=2)
a = ap.parse_args()
import json, torch
from diffusers import UNet2DConditionModel
if a.threads > 0:
    torch.set_num_threads(a.threads)
dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[a.dtype]
torch.manual_seed(0)
# The UNet multilora's bench runs, from its diffusers config (seeded random weights).
with open(a.config) as f:
    config = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
unet = UNet2DConditionModel(**config).to(dtype).eval()
latents = torch.randn(a.rows, config["in_channels"], a.latent_size, a.latent_size).to(dtype)
context = torch.randn(a.rows, 77, config["cross_attention_dim"]).to(dtype)
t = torch.tensor(500)
def step():
    with torch.inference_mode():
        unet(latents, t, encoder_hidden_states=context)
step()
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() != "step":
        break
    t0 = time.perf_counter()
    step()
    print("%.6f" % (time.perf_counter() - t0), flush=True)
)PY";
}

}  // namespace multilora::bench
