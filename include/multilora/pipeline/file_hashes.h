// SHA-256 of model files, remembered per (path, size, mtime) so multi-GB checkpoints are hashed once.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace multilora::pipeline {

// The cache lives in $MULTILORA_CACHE_DIR, else $XDG_CACHE_HOME/multilora, else ~/.cache/multilora; a
// cache that cannot be read or written is ignored (the hash is then computed every time).
std::string file_sha256(const std::string& path);

// [{"path": ..., "sha256": ...}] for a manifest's list of weight files.
nlohmann::json hashed_files(const std::vector<std::string>& paths);

}  // namespace multilora::pipeline
