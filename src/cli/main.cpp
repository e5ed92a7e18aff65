// multilora's entry point: set the allocator up before anything allocates, then run the CLI.
#include "cli/commands.h"
#include "multilora/pipeline/runtime.h"

int main(int argc, char** argv) {
    multilora::pipeline::configure_allocator();
    multilora::pipeline::configure_cpu_kernels();
    return multilora::cli::run(argc, argv);
}
