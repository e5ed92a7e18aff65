// SIGINT and SIGTERM (Ctrl-C; Slurm at the time limit) as a request to stop cleanly: the work in progress is
// discarded at the next check (an image between two denoising steps), what is finished is kept and flushed,
// and the command exits 130. A second signal while stopping ends the process at once (the default action).
#pragma once

#include <stdexcept>
#include <string>

namespace multilora {

// Thrown by throw_if_interrupted(); the CLI maps it to exit code 130.
class Interrupted : public std::runtime_error {
public:
    explicit Interrupted(const std::string& what) : std::runtime_error(what) {}
};

// While alive, SIGINT and SIGTERM set a flag instead of ending the process (commands that check it install
// one; the others keep the default action). Restores the previous handlers when destroyed.
class InterruptScope {
public:
    InterruptScope();
    ~InterruptScope();
    InterruptScope(const InterruptScope&) = delete;
    InterruptScope& operator=(const InterruptScope&) = delete;
};

// The signal received since the scope began (SIGINT, SIGTERM), or 0.
int interrupt_signal();
// Throws Interrupted ("interrupted by SIGTERM ...") when a signal has been received.
void throw_if_interrupted();
// For tests: as if `signal` had been received.
void simulate_interrupt(int signal);

}  // namespace multilora
