// multilora's entry point: set the allocator up before anything allocates, then run the CLI.
#include <csignal>

#include "cli/commands.h"
#include "multilora/pipeline/runtime.h"

int main(int argc, char** argv) {
    multilora::pipeline::configure_allocator();
    multilora::pipeline::configure_cpu_kernels();
    // A file-size limit (ulimit -f) then fails the write with EFBIG, which is reported and cleaned up like a
    // full disk, instead of killing the process with a half-written temporary file.
    std::signal(SIGXFSZ, SIG_IGN);
    return multilora::cli::run(argc, argv);
}
