// safetensors: memory-mapped, validated reading (zero-copy where the dtype and alignment allow) and
// atomic writing in the layout of the reference implementation.
#include "multilora/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <torch/torch.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "multilora/io/atomic_file.h"
#include "multilora/util/error.h"
#include "multilora/util/strings.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors I/O assumes a little-endian host"
#endif

namespace multilora::io {
namespace {

// The reference implementation refuses headers above 100 MB; so do we, before parsing any JSON.
constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;

struct DtypeDesc {
    const char* name;
    c10::ScalarType type;
    size_t size;
};

constexpr DtypeDesc kDtypes[] = {
    {"F64", c10::ScalarType::Double, 8},   {"F32", c10::ScalarType::Float, 4},
    {"F16", c10::ScalarType::Half, 2},     {"BF16", c10::ScalarType::BFloat16, 2},
    {"I64", c10::ScalarType::Long, 8},     {"I32", c10::ScalarType::Int, 4},
    {"I16", c10::ScalarType::Short, 2},    {"I8", c10::ScalarType::Char, 1},
    {"U8", c10::ScalarType::Byte, 1},      {"BOOL", c10::ScalarType::Bool, 1},
};

const DtypeDesc* dtype_by_name(const std::string& name) {
    for (const auto& d : kDtypes)
        if (name == d.name) return &d;
    return nullptr;
}

const DtypeDesc* dtype_by_type(c10::ScalarType t) {
    for (const auto& d : kDtypes)
        if (t == d.type) return &d;
    return nullptr;
}

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
    throw RuntimeError("invalid safetensors file '" + path + "': " + problem);
}

}  // namespace

// Every live mapping's address range, so that release_mapped_pages() can tell file-backed tensors from
// heap memory (where MADV_DONTNEED would destroy data).
namespace {
std::mutex g_mappings_mutex;
std::map<uintptr_t, size_t> g_mappings;  // start -> length
}  // namespace

struct SafetensorsFile::Mapping {
    void* addr = nullptr;
    size_t size = 0;
    uint64_t data_start = 0;  // 8 + header length: where offset 0 of the data block lies
    void register_range() {
        std::lock_guard<std::mutex> lock(g_mappings_mutex);
        g_mappings[reinterpret_cast<uintptr_t>(addr)] = size;
    }
    ~Mapping() {
        if (addr == nullptr || addr == MAP_FAILED) return;
        {
            std::lock_guard<std::mutex> lock(g_mappings_mutex);
            g_mappings.erase(reinterpret_cast<uintptr_t>(addr));
        }
        ::munmap(addr, size);
    }
    const uint8_t* bytes() const { return static_cast<const uint8_t*>(addr); }
};

size_t release_mapped_pages(const void* data, size_t nbytes) {
    const auto begin = reinterpret_cast<uintptr_t>(data);
    std::lock_guard<std::mutex> lock(g_mappings_mutex);
    auto it = g_mappings.upper_bound(begin);
    if (it == g_mappings.begin()) return 0;
    --it;
    if (begin + nbytes > it->first + it->second) return 0;  // not (wholly) inside a mapping
    const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const uintptr_t first = (begin + page - 1) / page * page, last = (begin + nbytes) / page * page;
    if (last <= first) return 0;
    if (::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED) != 0) return 0;
    return last - first;
}

SafetensorsFile::~SafetensorsFile() = default;

namespace {

// Opens and maps the file. A private writable mapping: a caller that writes into a tensor by mistake gets a
// private copy of the page instead of a segfault (and never changes the file). Falls back to read-only
// where the system's overcommit policy refuses the writable one for a large file.
void map_file(const std::string& path, SafetensorsFile::Mapping& mapping) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw RuntimeError("cannot open safetensors file '" + path + "': " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        int err = errno;
        ::close(fd);
        throw RuntimeError("cannot open safetensors file '" + path + "': " + std::strerror(err));
    }
    if (S_ISDIR(st.st_mode)) {
        ::close(fd);
        throw RuntimeError("cannot open safetensors file '" + path + "': it is a directory, not a file");
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw RuntimeError("cannot open safetensors file '" + path + "': not a regular file");
    }
    const uint64_t file_size = static_cast<uint64_t>(st.st_size);
    if (file_size < 8) {
        ::close(fd);
        fail(path, "file is too short (" + std::to_string(file_size) + " bytes) to hold the 8-byte header length");
    }
    mapping.size = static_cast<size_t>(file_size);
    mapping.addr = ::mmap(nullptr, mapping.size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (mapping.addr == MAP_FAILED) mapping.addr = ::mmap(nullptr, mapping.size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_err = errno;
    ::close(fd);
    if (mapping.addr == MAP_FAILED) {
        mapping.addr = nullptr;
        throw RuntimeError("cannot map safetensors file '" + path + "': " + std::strerror(map_err));
    }
    mapping.register_range();
}

// The 8-byte little-endian header length and the JSON header it announces (an object), checked against the
// file size and the 100 MB limit. Sets mapping.data_start.
nlohmann::ordered_json read_header(const std::string& path, SafetensorsFile::Mapping& mapping) {
    const uint64_t file_size = mapping.size;
    const uint8_t* base = mapping.bytes();
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];
    if (header_len > file_size - 8)
        fail(path, "header length " + std::to_string(header_len) + " runs past the end of the file (" +
                       std::to_string(file_size) + " bytes)");
    if (header_len > kMaxHeaderBytes)
        fail(path, "header length " + std::to_string(header_len) + " exceeds the 100 MB limit");
    const char* hbegin = reinterpret_cast<const char*>(base + 8);
    nlohmann::ordered_json header;
    try {
        header = nlohmann::ordered_json::parse(hbegin, hbegin + header_len);
    } catch (const nlohmann::json::exception& e) {
        fail(path, std::string("header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) fail(path, "header is not a JSON object");
    mapping.data_start = 8 + header_len;
    return header;
}

// The shape of one entry and its byte size (no overflow; a zero dimension makes it empty).
uint64_t read_shape(const std::string& path, const std::string& where, const nlohmann::ordered_json& jshape,
                    const DtypeDesc& desc, TensorInfo& info) {
    if (!jshape.is_array()) fail(path, where + ": 'shape' is not an array");
    int64_t numel = 1;
    bool overflow = false;
    for (const auto& d : jshape) {
        if (d.is_number_integer() && !d.is_number_unsigned())
            fail(path, where + ": 'shape' has a negative dimension " + d.dump());
        if (!d.is_number_unsigned()) fail(path, where + ": 'shape' has a non-integer dimension " + d.dump());
        const uint64_t dim = d.get<uint64_t>();
        if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            fail(path, where + ": shape dimension " + std::to_string(dim) + " is too large");
        info.shape.push_back(static_cast<int64_t>(dim));
        if (!overflow && __builtin_mul_overflow(numel, static_cast<int64_t>(dim), &numel)) overflow = true;
    }
    if (std::find(info.shape.begin(), info.shape.end(), 0) != info.shape.end()) {
        numel = 0;
        overflow = false;
    }
    uint64_t nbytes = 0;
    if (overflow || __builtin_mul_overflow(static_cast<uint64_t>(numel), static_cast<uint64_t>(desc.size), &nbytes))
        fail(path, where + ": shape " + shape_str(info.shape) + " is too large (its element or byte count overflows)");
    return nbytes;
}

// One tensor entry {dtype, shape, data_offsets}: every field checked, the offsets against the byte size.
TensorInfo read_entry(const std::string& path, const std::string& name, const nlohmann::ordered_json& entry) {
    const std::string where = "tensor '" + name + "'";
    if (!entry.is_object()) fail(path, where + ": entry is not a JSON object");
    for (const char* field : {"dtype", "shape", "data_offsets"})
        if (!entry.contains(field)) fail(path, where + ": entry is missing the '" + field + "' field");
    TensorInfo info;
    info.name = name;
    const auto& jdtype = entry["dtype"];
    if (!jdtype.is_string()) fail(path, where + ": 'dtype' is not a string");
    info.dtype = jdtype.get<std::string>();
    const DtypeDesc* desc = dtype_by_name(info.dtype);
    if (desc == nullptr) fail(path, where + " has unknown dtype '" + info.dtype + "'");
    const uint64_t nbytes = read_shape(path, where, entry["shape"], *desc, info);
    const auto& joff = entry["data_offsets"];
    if (!joff.is_array() || joff.size() != 2 || !joff[0].is_number_unsigned() || !joff[1].is_number_unsigned())
        fail(path, where + ": 'data_offsets' must be two non-negative integers, got " + joff.dump());
    info.begin = joff[0].get<uint64_t>();
    info.end = joff[1].get<uint64_t>();
    if (info.begin > info.end)
        fail(path, where + ": data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                       "] are out of bounds (begin after end)");
    if (info.end - info.begin != nbytes)
        fail(path, where + ": shape " + shape_str(info.shape) + " with dtype " + info.dtype + " needs " +
                       std::to_string(nbytes) + " bytes but data_offsets [" + std::to_string(info.begin) + ", " +
                       std::to_string(info.end) + "] span " + std::to_string(info.end - info.begin) +
                       " bytes (byte count mismatch)");
    return info;
}

// Overlaps and bounds, over the entries sorted by where their data starts. Empty tensors take no room.
void check_layout(const std::string& path, const std::map<std::string, TensorInfo>& infos, uint64_t data_size) {
    std::vector<const TensorInfo*> by_offset;
    for (const auto& [n, info] : infos)
        if (info.end > info.begin) by_offset.push_back(&info);
    std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
        return a->begin != b->begin ? a->begin < b->begin : a->name < b->name;
    });
    uint64_t max_end = 0;
    bool contiguous = true;  // the entries tile [0, max_end) without holes, as a writer lays them out
    for (size_t i = 0; i < by_offset.size(); ++i) {
        const TensorInfo* t = by_offset[i];
        if (i > 0 && by_offset[i - 1]->end > t->begin)
            fail(path, "tensors '" + by_offset[i - 1]->name + "' and '" + t->name + "' have overlapping data_offsets");
        if (t->begin != (i == 0 ? 0 : by_offset[i - 1]->end)) contiguous = false;
        max_end = std::max(max_end, t->end);
    }
    if (max_end <= data_size) return;
    if (contiguous)
        fail(path, "file is truncated: the header describes " + std::to_string(max_end) +
                       " bytes of tensor data but only " + std::to_string(data_size) + " bytes follow it");
    for (const TensorInfo* t : by_offset)
        if (t->end > data_size)
            fail(path, "tensor '" + t->name + "': data_offsets [" + std::to_string(t->begin) + ", " +
                           std::to_string(t->end) + "] are out of bounds (the data block holds " +
                           std::to_string(data_size) + " bytes)");
}

}  // namespace

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
    auto mapping = std::make_shared<Mapping>();
    map_file(path, *mapping);
    const nlohmann::ordered_json header = read_header(path, *mapping);
    std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
    file->path_ = path;
    for (const auto& [name, entry] : header.items()) {
        if (name == "__metadata__") {
            if (!entry.is_object()) fail(path, "__metadata__ is not a JSON object");
            for (const auto& [k, v] : entry.items()) {
                if (!v.is_string()) fail(path, "__metadata__ value of '" + k + "' is not a string");
                file->metadata_[k] = v.get<std::string>();
            }
            continue;
        }
        TensorInfo info = read_entry(path, name, entry);
        if (file->infos_.count(name)) fail(path, "tensor '" + name + "' appears twice in the header");
        file->names_.push_back(name);
        file->infos_.emplace(name, std::move(info));
    }
    check_layout(path, file->infos_, mapping->size - mapping->data_start);
    file->mapping_ = std::move(mapping);
    return file;
}

bool SafetensorsFile::contains(const std::string& name) const { return infos_.count(name) != 0; }

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
    auto it = infos_.find(name);
    if (it == infos_.end()) throw RuntimeError("tensor '" + name + "' not found in safetensors file '" + path_ + "'");
    return it->second;
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
    const TensorInfo& ti = info(name);
    const DtypeDesc* desc = dtype_by_name(ti.dtype);  // validated in open()
    const auto options = torch::TensorOptions().dtype(desc->type).device(torch::kCPU);
    if (ti.end == ti.begin) return torch::empty(ti.shape, options);

    const uint8_t* ptr = mapping_->bytes() + mapping_->data_start + ti.begin;
    if (reinterpret_cast<uintptr_t>(ptr) % desc->size != 0) {
        // Misaligned for the element type (header length not a multiple of 8, or odd offsets): copy.
        at::Tensor out = torch::empty(ti.shape, options);
        std::memcpy(out.data_ptr(), ptr, ti.end - ti.begin);
        return out;
    }
    std::shared_ptr<Mapping> keep = mapping_;
    return torch::from_blob(const_cast<uint8_t*>(ptr), ti.shape, [keep](void*) mutable { keep.reset(); }, options);
}

at::Tensor SafetensorsFile::tensor(const std::string& name, int8_t scalar_type) const {
    if (scalar_type < 0 || scalar_type >= static_cast<int8_t>(c10::ScalarType::NumOptions))
        throw RuntimeError("tensor '" + name + "' from '" + path_ + "': invalid scalar type " +
                           std::to_string(int(scalar_type)));
    const auto want = static_cast<c10::ScalarType>(scalar_type);
    at::Tensor t = tensor(name);
    if (t.scalar_type() == want) return t;
    return t.to(want);
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) {
        nlohmann::ordered_json meta = nlohmann::ordered_json::object();
        for (const auto& [k, v] : metadata) meta[k] = v;
        header["__metadata__"] = std::move(meta);
    }
    std::vector<at::Tensor> cpu;
    cpu.reserve(tensors.size());
    std::set<std::string> seen;
    uint64_t offset = 0;
    for (const auto& [name, t] : tensors) {
        const std::string where = "cannot write safetensors file '" + path + "': tensor '" + name + "'";
        if (name == "__metadata__") throw RuntimeError(where + ": the name is reserved");
        if (!seen.insert(name).second) throw RuntimeError(where + " is given twice");
        if (!t.defined()) throw RuntimeError(where + " is undefined");
        const DtypeDesc* desc = dtype_by_type(t.scalar_type());
        if (desc == nullptr)
            throw RuntimeError(where + " has unsupported dtype " + std::string(c10::toString(t.scalar_type())));
        at::Tensor c = t.detach().to(torch::kCPU).contiguous();
        const uint64_t nbytes = static_cast<uint64_t>(c.numel()) * desc->size;
        nlohmann::ordered_json entry = nlohmann::ordered_json::object();
        entry["dtype"] = desc->name;
        entry["shape"] = c.sizes().vec();
        entry["data_offsets"] = {offset, offset + nbytes};
        header[name] = std::move(entry);
        offset += nbytes;
        cpu.push_back(std::move(c));
    }
    std::string hjson;
    try {
        hjson = header.dump();
    } catch (const nlohmann::json::exception& e) {
        throw RuntimeError("cannot write safetensors file '" + path +
                           "': a name or metadata string is not valid UTF-8 (" + e.what() + ")");
    }
    // Pad with spaces to a multiple of 8, as the reference implementation does, so the data block is aligned.
    hjson.append((8 - hjson.size() % 8) % 8, ' ');
    char len_bytes[8];
    const uint64_t hlen = hjson.size();
    for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<char>(hlen >> (8 * i));

    AtomicFileWriter out(path);
    out.write(std::string_view(len_bytes, 8));
    out.write(hjson);
    for (const auto& c : cpu) {
        const auto nbytes = static_cast<size_t>(c.numel()) * c.element_size();
        if (nbytes > 0) out.write(std::string_view(static_cast<const char*>(c.data_ptr()), nbytes));
    }
    out.commit();
}

const char* pickle_conversion_hint() {
    return "multilora reads only .safetensors weights (pickle files can run arbitrary code when loaded). Convert it "
           "once with Python, e.g.:\n  python -c \"import torch, safetensors.torch as st; sd = torch.load('IN.ckpt', "
           "map_location='cpu'); sd = sd.get('state_dict', sd); st.save_file({k: v.contiguous() for k, v in sd.items() "
           "if hasattr(v, 'contiguous')}, 'OUT.safetensors')\"";
}

std::shared_ptr<SafetensorsFile> open_refusing_pickle(const std::string& path, const std::string& kind) {
    if (looks_like_pickle_checkpoint(path))
        throw RuntimeError("'" + path + "' is a PyTorch pickle " + kind + ". " + pickle_conversion_hint());
    return SafetensorsFile::open(path);
}

bool looks_like_pickle_checkpoint(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    unsigned char magic[4] = {};
    ssize_t n;
    do {
        n = ::pread(fd, magic, sizeof(magic), 0);
    } while (n < 0 && errno == EINTR);
    ::close(fd);
    if (n >= 4 && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 0x03 && magic[3] == 0x04) return true;
    if (n >= 2 && magic[0] == 0x80 && magic[1] >= 0x02 && magic[1] <= 0x05) return true;
    return false;
}

}  // namespace multilora::io
