// SHA-256 of model files, remembered per (path, size, mtime) so multi-GB checkpoints are hashed once.
#pragma once

#include <string>

namespace multilora::pipeline {

// The cache lives in $MULTILORA_CACHE_DIR, else $XDG_CACHE_HOME/multilora, else ~/.cache/multilora; a
// cache that cannot be read or written is ignored (the hash is then computed every time).
std::string file_sha256(const std::string& path);

}  // namespace multilora::pipeline
