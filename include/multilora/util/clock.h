// Wall-clock stamps and elapsed times for manifests, logs and progress.
#pragma once

#include <chrono>
#include <string>

namespace multilora {

// The current UTC time as ISO 8601 to the second: "2026-11-27T14:09:14Z".
std::string utc_timestamp();

// Seconds elapsed since `start` on the steady clock.
inline double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace multilora
