// Error types shared by every layer. The CLI maps them to exit codes:
// UsageError -> 2 (bad flags or arguments), everything else -> 1 (runtime failure).
#pragma once

#include <stdexcept>
#include <string>

namespace multilora {

// A problem the user caused through the command line or a config file.
class UsageError : public std::runtime_error {
public:
    explicit UsageError(const std::string& what) : std::runtime_error(what) {}
};

// A failure while doing the work: unreadable or malformed files, I/O errors, shape mismatches.
class RuntimeError : public std::runtime_error {
public:
    explicit RuntimeError(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace multilora
