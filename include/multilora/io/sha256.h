// SHA-256, used for model, VAE and LoRA file hashes in manifests and the PNG's "Model hash".
#pragma once

#include <string>
#include <string_view>

namespace multilora::io {

std::string sha256_hex(std::string_view bytes);
// Streams the file; throws RuntimeError when unreadable.
std::string sha256_file_hex(const std::string& path);

}  // namespace multilora::io
