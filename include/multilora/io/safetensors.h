// safetensors reading (memory-mapped, zero-copy where possible) and writing.
// Format: 8-byte little-endian header length N, N bytes of JSON header, then the raw data block.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace at {
class Tensor;
}

namespace multilora::io {

// One tensor entry of a safetensors header. Offsets are relative to the start of the data block.
struct TensorInfo {
    std::string name;
    std::string dtype;  // "F32", "F16", "BF16", "I64", ... as written in the header
    std::vector<int64_t> shape;
    uint64_t begin = 0;
    uint64_t end = 0;
};

// A validated, memory-mapped safetensors file. Every tensor it hands out shares the mapping,
// which stays alive for as long as any of those tensors (or the file object) does.
class SafetensorsFile {
public:
    // Maps and validates the whole header: lengths, JSON, dtypes, shapes against byte counts,
    // offsets inside the data block and non-overlapping. Throws RuntimeError naming the file.
    static std::shared_ptr<SafetensorsFile> open(const std::string& path);

    ~SafetensorsFile();
    SafetensorsFile(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(const SafetensorsFile&) = delete;

    const std::string& path() const { return path_; }
    // Tensor names in header order.
    const std::vector<std::string>& names() const { return names_; }
    bool contains(const std::string& name) const;
    const TensorInfo& info(const std::string& name) const;  // throws if absent
    const std::map<std::string, std::string>& metadata() const { return metadata_; }

    // The tensor as stored, as a CPU tensor viewing the mapping (no copy). Read-only in spirit:
    // callers must not write into it.
    at::Tensor tensor(const std::string& name) const;
    // The tensor converted to `dtype` (an at::ScalarType value); no copy when it already matches.
    at::Tensor tensor(const std::string& name, int8_t scalar_type) const;

    struct Mapping;  // the file's memory mapping (defined in safetensors.cpp)

private:
    SafetensorsFile() = default;
    std::string path_;
    std::shared_ptr<Mapping> mapping_;
    std::vector<std::string> names_;
    std::map<std::string, TensorInfo> infos_;
    std::map<std::string, std::string> metadata_;
};

// Writes tensors (any device/dtype among F32, F16, BF16, I64, I32, U8, BOOL, F64) in the given order,
// atomically: a temporary file in the same folder, then rename.
// Drops the resident pages of [data, data+nbytes) when that range lies inside a live safetensors mapping
// (a tensor returned by SafetensorsFile::tensor() without conversion): the process's RSS shrinks, and the
// next read faults the pages back in from the page cache (or the file). Only whole pages inside the range
// are dropped. Returns the bytes released, 0 for memory that is not file-backed (left untouched). Pages of
// the private mapping that were written to would revert to the file's contents; tensors of a mapping are
// never written.
size_t release_mapped_pages(const void* data, size_t nbytes);

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// True when the file starts like a Python pickle / zip (.ckpt, .pt, .bin), which multilora refuses.
bool looks_like_pickle_checkpoint(const std::string& path);
// What every pickle refusal says after naming the file: why, and the one-line conversion to .safetensors.
const char* pickle_conversion_hint();
// SafetensorsFile::open, after refusing a PyTorch pickle with RuntimeError: "'PATH' is a PyTorch pickle KIND. "
// and the conversion hint (KIND: "file" for LoRAs and embeddings, "checkpoint" for models).
std::shared_ptr<SafetensorsFile> open_refusing_pickle(const std::string& path, const std::string& kind);

}  // namespace multilora::io
