// safetensors reading (hand-built files with known bytes, zero-copy, alignment, dtype conversion),
// writing (reference layout, round trips) and every malformed-file error path.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <torch/torch.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "multilora/io/atomic_file.h"
#include "multilora/io/safetensors.h"
#include "multilora/util/error.h"
#include "test_support.h"

namespace fs = std::filesystem;
using multilora::RuntimeError;
using multilora::io::SafetensorsFile;

namespace {

// A fresh folder per test (test_support.h removes it at exit).
struct TempDir {
    fs::path root = multilora::test::make_temp_dir("io_st");
    std::string file(const std::string& name) const { return (root / name).string(); }
    const fs::path& path() const { return root; }
};

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
    return s;
}

// A safetensors byte string: 8-byte LE length, the header exactly as given (pad_to_8: with spaces), data.
std::string make_st(std::string header, const std::string& data, bool pad_to_8 = true) {
    if (pad_to_8) header.append((8 - header.size() % 8) % 8, ' ');
    return le64(header.size()) + header + data;
}

// Opening `bytes` must throw a RuntimeError naming the file and containing `phrase`.
void expect_open_error(const TempDir& dir, const std::string& bytes, const std::string& phrase,
                       const std::string& name = "bad.safetensors") {
    const std::string path = dir.file(name);
    write_bytes(path, bytes);
    try {
        SafetensorsFile::open(path);
        ADD_FAILURE() << "expected an error containing '" << phrase << "'";
    } catch (const RuntimeError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(path), std::string::npos) << msg;
        EXPECT_NE(msg.find(phrase), std::string::npos) << "expected '" << phrase << "' in: " << msg;
    }
}

std::string bytes_of(std::initializer_list<int> v) {
    std::string s;
    for (int b : v) s.push_back(static_cast<char>(b));
    return s;
}

}  // namespace

// ---------------------------------------------------------------- reading known bytes

TEST(ioSafetensorsRead, HandBuiltFileGivesExactValues) {
    TempDir dir;
    // Keys deliberately out of alphabetical order: names() must follow the header.
    const std::string header =
        R"({"zeta":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
        R"("alpha":{"dtype":"I64","shape":[1],"data_offsets":[8,16]},)"
        R"("__metadata__":{"format":"pt","note":"hand built"},)"
        R"("h":{"dtype":"F16","shape":[2,1],"data_offsets":[16,20]},)"
        R"("b":{"dtype":"BF16","shape":[],"data_offsets":[20,22]}})";
    std::string data;
    data += bytes_of({0x00, 0x00, 0xC0, 0x3F});  // 1.5f   = 0x3FC00000
    data += bytes_of({0x00, 0x00, 0x00, 0xC0});  // -2.0f  = 0xC0000000
    data += bytes_of({0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01});  // 0x0102030405060708
    data += bytes_of({0x00, 0x3C, 0x00, 0xC0});  // half 1.0 = 0x3C00, half -2.0 = 0xC000
    data += bytes_of({0x80, 0x3F});              // bfloat16 1.0 = 0x3F80
    const std::string path = dir.file("hand.safetensors");
    write_bytes(path, make_st(header, data));

    auto f = SafetensorsFile::open(path);
    EXPECT_EQ(f->path(), path);
    EXPECT_EQ(f->names(), (std::vector<std::string>{"zeta", "alpha", "h", "b"}));
    EXPECT_TRUE(f->contains("alpha"));
    EXPECT_FALSE(f->contains("__metadata__"));
    EXPECT_FALSE(f->contains("missing"));
    ASSERT_EQ(f->metadata().size(), 2u);
    EXPECT_EQ(f->metadata().at("format"), "pt");
    EXPECT_EQ(f->metadata().at("note"), "hand built");

    const auto& hi = f->info("h");
    EXPECT_EQ(hi.name, "h");
    EXPECT_EQ(hi.dtype, "F16");
    EXPECT_EQ(hi.shape, (std::vector<int64_t>{2, 1}));
    EXPECT_EQ(hi.begin, 16u);
    EXPECT_EQ(hi.end, 20u);

    at::Tensor zeta = f->tensor("zeta");
    EXPECT_EQ(zeta.scalar_type(), torch::kFloat);
    EXPECT_EQ(zeta.sizes(), (std::vector<int64_t>{2}));
    EXPECT_EQ(zeta[0].item<float>(), 1.5f);
    EXPECT_EQ(zeta[1].item<float>(), -2.0f);

    at::Tensor alpha = f->tensor("alpha");
    EXPECT_EQ(alpha.scalar_type(), torch::kLong);
    EXPECT_EQ(alpha[0].item<int64_t>(), 0x0102030405060708LL);

    at::Tensor h = f->tensor("h");
    EXPECT_EQ(h.scalar_type(), torch::kHalf);
    EXPECT_EQ(h.sizes(), (std::vector<int64_t>{2, 1}));
    EXPECT_EQ(h[0][0].item<float>(), 1.0f);
    EXPECT_EQ(h[1][0].item<float>(), -2.0f);

    at::Tensor b = f->tensor("b");
    EXPECT_EQ(b.scalar_type(), torch::kBFloat16);
    EXPECT_EQ(b.dim(), 0);
    EXPECT_EQ(b.item<float>(), 1.0f);

    try {
        f->info("missing");
        ADD_FAILURE() << "expected an error";
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("'missing' not found"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
    EXPECT_THROW(f->tensor("missing"), RuntimeError);
}

TEST(ioSafetensorsRead, ZeroCopyViewOutlivesTheFileObject) {
    TempDir dir;
    const std::string path = dir.file("zc.safetensors");
    std::string data;
    for (float v : {0.25f, 0.5f, 0.75f, 1.0f}) data.append(reinterpret_cast<const char*>(&v), 4);
    write_bytes(path, make_st(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", data));

    auto f = SafetensorsFile::open(path);
    at::Tensor a = f->tensor("w");
    at::Tensor b = f->tensor("w");
    // Both view the same mapped bytes: no copy was made.
    EXPECT_EQ(a.data_ptr(), b.data_ptr());
    // Asking for the stored dtype also returns the view itself.
    EXPECT_EQ(f->tensor("w", static_cast<int8_t>(torch::kFloat)).data_ptr(), a.data_ptr());
    f.reset();  // the tensors keep the mapping alive
    b = at::Tensor();
    EXPECT_EQ(a[0][0].item<float>(), 0.25f);
    EXPECT_EQ(a[1][1].item<float>(), 1.0f);
    EXPECT_EQ(a.sum().item<float>(), 2.5f);
}

namespace {
int64_t rss_file_kb() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("RssFile:", 0) == 0) return std::stoll(line.substr(8));
    return -1;
}
}  // namespace

// Dropping a mapped tensor's pages shrinks the process's file-backed RSS by about the tensor's size, and
// the data reads back unchanged (from the page cache). Heap tensors and ranges outside a mapping are left
// alone (0 bytes released).
TEST(ioSafetensorsRead, ReleasingMappedPagesShrinksRssAndKeepsTheData) {
    TempDir dir;
    const std::string path = dir.file("big.safetensors");
    const int64_t n = int64_t{8} << 20;  // 8 Mi floats = 32 MiB
    at::Tensor values = torch::arange(n, torch::kFloat).remainder(1000);
    multilora::io::save_safetensors(path, {{"w", values}});
    auto f = SafetensorsFile::open(path);
    at::Tensor w = f->tensor("w");
    const double want = w.sum().item<double>();  // touches every page
    const int64_t touched = rss_file_kb();
    const size_t released = multilora::io::release_mapped_pages(w.data_ptr(), w.nbytes());
    EXPECT_GT(released, w.nbytes() - 2 * 4096);
    EXPECT_LE(released, w.nbytes());
    EXPECT_LT(rss_file_kb(), touched - 30 * 1024) << "RssFile should drop by ~32 MiB";
    EXPECT_EQ(w.sum().item<double>(), want);
    EXPECT_TRUE(torch::equal(w, values));

    at::Tensor heap = values.clone();
    EXPECT_EQ(multilora::io::release_mapped_pages(heap.data_ptr(), heap.nbytes()), 0u);
    EXPECT_TRUE(torch::equal(heap, values));
    // A range running past the end of the mapping is refused as a whole.
    EXPECT_EQ(multilora::io::release_mapped_pages(w.data_ptr(), w.nbytes() + (size_t{1} << 30)), 0u);
}

TEST(ioSafetensorsRead, MisalignedDataIsCopiedIntoAlignedTensors) {
    TempDir dir;
    const std::string path = dir.file("misaligned.safetensors");
    // Unpadded header: its length is odd, so the data block starts at an odd file offset.
    const std::string header =
        R"({"f":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}, "i":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}})";
    ASSERT_NE((8 + header.size()) % 4, 0u) << "test header must misalign the data block";
    std::string data;
    for (float v : {3.0f, -0.125f}) data.append(reinterpret_cast<const char*>(&v), 4);
    int64_t big = -1234567890123LL;
    data.append(reinterpret_cast<const char*>(&big), 8);
    write_bytes(path, make_st(header, data, /*pad_to_8=*/false));

    auto f = SafetensorsFile::open(path);
    at::Tensor t = f->tensor("f");
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data_ptr()) % alignof(float), 0u);
    EXPECT_EQ(t[0].item<float>(), 3.0f);
    EXPECT_EQ(t[1].item<float>(), -0.125f);
    at::Tensor i = f->tensor("i");
    EXPECT_EQ(reinterpret_cast<uintptr_t>(i.data_ptr()) % alignof(int64_t), 0u);
    EXPECT_EQ(i[0].item<int64_t>(), -1234567890123LL);
}

TEST(ioSafetensorsRead, ConvertsToTheRequestedScalarType) {
    TempDir dir;
    const std::string path = dir.file("conv.safetensors");
    // half 0.5 = 0x3800, half 65504 (max) = 0x7BFF
    write_bytes(path, make_st(R"({"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})",
                              bytes_of({0x00, 0x38, 0xFF, 0x7B})));
    auto f = SafetensorsFile::open(path);
    at::Tensor t = f->tensor("h", static_cast<int8_t>(torch::kFloat));
    EXPECT_EQ(t.scalar_type(), torch::kFloat);
    EXPECT_EQ(t[0].item<float>(), 0.5f);
    EXPECT_EQ(t[1].item<float>(), 65504.0f);
    at::Tensor d = f->tensor("h", static_cast<int8_t>(torch::kDouble));
    EXPECT_EQ(d.scalar_type(), torch::kDouble);
    EXPECT_EQ(d[1].item<double>(), 65504.0);
    EXPECT_THROW(f->tensor("h", static_cast<int8_t>(-1)), RuntimeError);
    EXPECT_THROW(f->tensor("h", static_cast<int8_t>(120)), RuntimeError);
}

TEST(ioSafetensorsRead, EmptyTensorsAndEmptyHeader) {
    TempDir dir;
    const std::string path = dir.file("empty.safetensors");
    write_bytes(path, make_st(R"({"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}})", ""));
    auto f = SafetensorsFile::open(path);
    at::Tensor e = f->tensor("e");
    EXPECT_EQ(e.sizes(), (std::vector<int64_t>{0, 3}));
    EXPECT_EQ(e.numel(), 0);

    const std::string none = dir.file("none.safetensors");
    write_bytes(none, make_st("{}", ""));
    auto g = SafetensorsFile::open(none);
    EXPECT_TRUE(g->names().empty());
    EXPECT_TRUE(g->metadata().empty());
}

// ---------------------------------------------------------------- writing

TEST(ioSafetensorsWrite, ProducesTheReferenceLayoutByteForByte) {
    TempDir dir;
    const std::string path = dir.file("ref.safetensors");
    multilora::io::save_safetensors(path, {{"x", torch::tensor({1.0f})}}, {{"k", "v"}});
    // What the reference implementation writes for the same input: compact JSON, __metadata__ first,
    // fields dtype/shape/data_offsets, padded with spaces to a multiple of 8 (79 -> 80 bytes).
    const std::string header = R"({"__metadata__":{"k":"v"},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
    ASSERT_EQ(header.size(), 79u);
    const std::string expected = le64(80) + header + " " + bytes_of({0x00, 0x00, 0x80, 0x3F});
    EXPECT_EQ(multilora::io::read_file(path), expected);
    // The temporary file was renamed away: only the output is left.
    EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);
}

// The reference implementation's own serialization test vector (huggingface/safetensors,
// safetensors/src/tensor.rs, test_serialization): "attn.0", F32, shape [1, 2, 3], values 0..5.
// Its 64-byte header needs no padding. We must write exactly these bytes and read them back.
TEST(ioSafetensorsWrite, MatchesTheReferenceImplementationTestVector) {
    const int kReference[] = {
        64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
        116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
        58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
        101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
        0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};
    std::string reference;
    for (int b : kReference) reference.push_back(static_cast<char>(b));

    TempDir dir;
    const std::string path = dir.file("attn.safetensors");
    multilora::io::save_safetensors(path, {{"attn.0", torch::arange(6, torch::kFloat).reshape({1, 2, 3})}});
    EXPECT_EQ(multilora::io::read_file(path), reference);

    const std::string ref_path = dir.file("reference.safetensors");
    write_bytes(ref_path, reference);
    auto f = SafetensorsFile::open(ref_path);
    EXPECT_EQ(f->names(), std::vector<std::string>{"attn.0"});
    at::Tensor t = f->tensor("attn.0");
    EXPECT_EQ(t.sizes(), (std::vector<int64_t>{1, 2, 3}));
    for (int i = 0; i < 6; ++i) EXPECT_EQ(t.flatten()[i].item<float>(), static_cast<float>(i));
}

TEST(ioSafetensorsWrite, RoundTripsEveryDtypeInOrder) {
    TempDir dir;
    const std::string path = dir.file("rt.safetensors");
    std::vector<std::pair<std::string, at::Tensor>> in = {
        {"f32", torch::tensor({1.5f, -0.0f, 3.25e-5f, 1e30f})},
        {"f64", torch::tensor({0.1, -2.5e-300}, torch::kDouble)},
        {"f16", torch::tensor({0.5f, -65504.0f, 0.0009765625f}).to(torch::kHalf)},
        {"bf16", torch::tensor({1.0f, -3.0e38f, 0.0078125f}).to(torch::kBFloat16)},
        {"i64", torch::tensor({int64_t(1) << 62, int64_t(-7)}, torch::kLong)},
        {"i32", torch::tensor({2147483647, -2147483647 - 1}, torch::kInt)},
        {"i16", torch::tensor({32767, -32768}, torch::kShort)},
        {"i8", torch::tensor({127, -128}, torch::kChar)},
        {"u8", torch::tensor({0, 255}, torch::kByte)},
        {"bool", torch::tensor({true, false, true})},
        {"scalar", torch::tensor(42.0f)},
        {"empty", torch::zeros({0, 4})},
        // Non-contiguous input: written as its contiguous values.
        {"transposed", torch::arange(6, torch::kFloat).reshape({2, 3}).t()},
    };
    multilora::io::save_safetensors(path, in, {{"ss_network_dim", "4"}, {"empty", ""}});

    auto f = SafetensorsFile::open(path);
    std::vector<std::string> names;
    for (const auto& [n, t] : in) names.push_back(n);
    EXPECT_EQ(f->names(), names);
    EXPECT_EQ(f->metadata().at("ss_network_dim"), "4");
    EXPECT_EQ(f->metadata().at("empty"), "");
    EXPECT_EQ(f->info("f16").dtype, "F16");
    EXPECT_EQ(f->info("bf16").dtype, "BF16");
    EXPECT_EQ(f->info("bool").dtype, "BOOL");
    EXPECT_EQ(f->info("u8").dtype, "U8");
    EXPECT_EQ(f->info("i8").dtype, "I8");
    EXPECT_EQ(f->info("f64").dtype, "F64");
    for (const auto& [n, t] : in) {
        at::Tensor got = f->tensor(n);
        EXPECT_EQ(got.scalar_type(), t.scalar_type()) << n;
        EXPECT_EQ(got.sizes(), t.sizes()) << n;
        EXPECT_TRUE(torch::equal(got, t.contiguous())) << n;
    }
    EXPECT_EQ(f->tensor("transposed")[2][1].item<float>(), 5.0f);
    EXPECT_EQ(f->tensor("i64")[0].item<int64_t>(), int64_t(1) << 62);
}

TEST(ioSafetensorsWrite, RejectsBadInputWithoutLeavingFiles) {
    TempDir dir;
    const std::string path = dir.file("bad_out.safetensors");
    auto expect_error = [&](const std::vector<std::pair<std::string, at::Tensor>>& tensors, const std::string& phrase) {
        try {
            multilora::io::save_safetensors(path, tensors);
            ADD_FAILURE() << "expected an error containing '" << phrase << "'";
        } catch (const RuntimeError& e) {
            EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find(phrase), std::string::npos) << e.what();
        }
    };
    expect_error({{"c", torch::zeros({2}, torch::kComplexFloat)}}, "unsupported dtype");
    expect_error({{"a", torch::zeros({1})}, {"a", torch::zeros({1})}}, "given twice");
    expect_error({{"__metadata__", torch::zeros({1})}}, "reserved");
    expect_error({{"u", at::Tensor()}}, "undefined");
    EXPECT_TRUE(fs::is_empty(dir.path()));

    const std::string nodir = dir.file("no/such/dir/out.safetensors");
    try {
        multilora::io::save_safetensors(nodir, {{"a", torch::zeros({1})}});
        ADD_FAILURE() << "expected an error";
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find(nodir), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("No such file or directory"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(ioSafetensorsWrite, OverwritesAnExistingFileAtomically) {
    TempDir dir;
    const std::string path = dir.file("o.safetensors");
    multilora::io::save_safetensors(path, {{"a", torch::ones({3})}});
    auto before = SafetensorsFile::open(path);
    at::Tensor old_view = before->tensor("a");
    multilora::io::save_safetensors(path, {{"b", torch::full({2}, 7.0f)}});
    // The old mapping still sees the old (unlinked) inode; the path shows the new content.
    EXPECT_EQ(old_view.sum().item<float>(), 3.0f);
    auto after = SafetensorsFile::open(path);
    EXPECT_EQ(after->names(), std::vector<std::string>{"b"});
    EXPECT_EQ(after->tensor("b")[1].item<float>(), 7.0f);
}

// ---------------------------------------------------------------- malformed files

TEST(ioSafetensorsMalformed, MissingFileAndDirectory) {
    TempDir dir;
    const std::string missing = dir.file("nope.safetensors");
    try {
        SafetensorsFile::open(missing);
        ADD_FAILURE();
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("No such file or directory"), std::string::npos) << e.what();
    }
    try {
        SafetensorsFile::open(dir.path().string());
        ADD_FAILURE();
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find(dir.path().string()), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("is a directory"), std::string::npos) << e.what();
    }
}

TEST(ioSafetensorsMalformed, FileShorterThanEightBytes) {
    TempDir dir;
    expect_open_error(dir, "", "too short (0 bytes)");
    expect_open_error(dir, std::string("\x05\0\0", 3), "too short (3 bytes)");
    expect_open_error(dir, std::string(7, '\0'), "too short (7 bytes)");
}

TEST(ioSafetensorsMalformed, HeaderLengthPastEndOfFile) {
    TempDir dir;
    expect_open_error(dir, le64(1000) + "{}", "header length 1000 runs past the end of the file (10 bytes)");
    expect_open_error(dir, le64(~0ull) + "{}", "runs past the end of the file");
    expect_open_error(dir, le64(1), "header length 1 runs past the end of the file (8 bytes)");
}

TEST(ioSafetensorsMalformed, HeaderAboveTheSizeLimit) {
    TempDir dir;
    const std::string path = dir.file("huge.safetensors");
    write_bytes(path, le64(100000001));
    ASSERT_EQ(::truncate(path.c_str(), 8 + 100000001), 0);  // sparse: costs no disk
    try {
        SafetensorsFile::open(path);
        ADD_FAILURE();
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("exceeds the 100 MB limit"), std::string::npos) << e.what();
    }
}

TEST(ioSafetensorsMalformed, InvalidJson) {
    TempDir dir;
    expect_open_error(dir, make_st("{not json", ""), "header is not valid JSON");
    expect_open_error(dir, make_st("", "", false), "header is not valid JSON");
    expect_open_error(dir, make_st(R"({"a":{"dtype":"F32")", ""), "header is not valid JSON");
    expect_open_error(dir, make_st(std::string("{\"a\0\":1}", 8), ""), "header is not valid JSON");
}

TEST(ioSafetensorsMalformed, HeaderNotAnObjectOrEntryMissingFields) {
    TempDir dir;
    expect_open_error(dir, make_st("[1,2]", ""), "header is not a JSON object");
    expect_open_error(dir, make_st("\"str\"", ""), "header is not a JSON object");
    expect_open_error(dir, make_st(R"({"a":5})", ""), "tensor 'a': entry is not a JSON object");
    expect_open_error(dir, make_st(R"({"a":{"dtype":"F32","shape":[1]}})", "abcd"),
                      "tensor 'a': entry is missing the 'data_offsets' field");
    expect_open_error(dir, make_st(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", "abcd"),
                      "tensor 'a': entry is missing the 'dtype' field");
    expect_open_error(dir, make_st(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", "abcd"),
                      "tensor 'a': entry is missing the 'shape' field");
    expect_open_error(dir, make_st(R"({"a":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", "abcd"),
                      "'dtype' is not a string");
    expect_open_error(dir, make_st(R"({"a":{"dtype":"F32","shape":4,"data_offsets":[0,4]}})", "abcd"),
                      "'shape' is not an array");
    expect_open_error(dir, make_st(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", "abcd"),
                      "'data_offsets' must be two non-negative integers");
    expect_open_error(dir, make_st(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", "abcd"),
                      "'data_offsets' must be two non-negative integers");
    expect_open_error(dir, make_st(R"({"__metadata__":{"k":1}})", ""), "__metadata__ value of 'k' is not a string");
    expect_open_error(dir, make_st(R"({"__metadata__":[]})", ""), "__metadata__ is not a JSON object");
}

TEST(ioSafetensorsMalformed, OffsetsOutOfBounds) {
    TempDir dir;
    expect_open_error(dir, make_st(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[100,104]}})", "abcd"),
                      "tensor 'a': data_offsets [100, 104] are out of bounds (the data block holds 4 bytes)");
    expect_open_error(dir, make_st(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", "abcdefgh"),
                      "tensor 'a': data_offsets [8, 4] are out of bounds (begin after end)");
    // Offsets near 2^64 must not wrap around.
    expect_open_error(dir,
                      make_st(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[18446744073709551612,0]}})", "abcd"),
                      "out of bounds");
    expect_open_error(
        dir,
        make_st(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[18446744073709551612,18446744073709551616]}})",
                "abcd"),
        "'data_offsets' must be two non-negative integers");
}

TEST(ioSafetensorsMalformed, OverlappingOffsets) {
    TempDir dir;
    expect_open_error(dir,
                      make_st(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                              std::string(12, 'x')),
                      "tensors 'a' and 'b' have overlapping data_offsets");
    expect_open_error(dir,
                      make_st(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                              R"("b":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})",
                              std::string(4, 'x')),
                      "overlapping data_offsets");
}

TEST(ioSafetensorsMalformed, ShapeDisagreesWithByteCount) {
    TempDir dir;
    expect_open_error(dir, make_st(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}})", std::string(8, 'x')),
                      "tensor 'a': shape [2, 2] with dtype F32 needs 16 bytes but data_offsets [0, 8] span 8 bytes "
                      "(byte count mismatch)");
    expect_open_error(dir, make_st(R"({"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,4]}})", std::string(4, 'x')),
                      "byte count mismatch");
}

TEST(ioSafetensorsMalformed, HugeNegativeAndNonIntegerShapes) {
    TempDir dir;
    // 2^32 * 2^32 * 16 overflows int64; must be reported, not wrapped to a small byte count.
    expect_open_error(
        dir, make_st(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}})", ""),
        "shape [4294967296, 4294967296, 16] is too large (its element or byte count overflows)");
    // Element count fits int64 but the byte count (x8) does not.
    expect_open_error(dir, make_st(R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,0]}})", ""),
                      "shape [4611686018427387904] is too large");
    expect_open_error(dir, make_st(R"({"a":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,0]}})", ""),
                      "shape dimension 9223372036854775808 is too large");
    expect_open_error(dir, make_st(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "abcd"),
                      "'shape' has a negative dimension -1");
    expect_open_error(dir, make_st(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", "abcd"),
                      "'shape' has a non-integer dimension 1.5");
    expect_open_error(dir, make_st(R"({"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", "abcdefgh"),
                      "non-integer dimension");
}

TEST(ioSafetensorsMalformed, UnknownDtype) {
    TempDir dir;
    expect_open_error(dir, make_st(R"({"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}})", "x"),
                      "tensor 'a' has unknown dtype 'Q7'");
    expect_open_error(dir, make_st(R"({"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})", "abcd"),
                      "unknown dtype 'f32'");
}

TEST(ioSafetensorsMalformed, TruncatedDataBlock) {
    TempDir dir;
    const std::string good = dir.file("good.safetensors");
    multilora::io::save_safetensors(good, {{"a", torch::ones({4})}, {"b", torch::ones({2}, torch::kLong)}});
    std::string bytes = multilora::io::read_file(good);
    bytes.resize(bytes.size() - 3);
    expect_open_error(dir, bytes,
                      "file is truncated: the header describes 32 bytes of tensor data but only 29 bytes follow it");
}

TEST(ioSafetensorsMalformed, EveryTruncationAndRandomCorruptionIsHandled) {
    TempDir dir;
    const std::string good = dir.file("good.safetensors");
    multilora::io::save_safetensors(good,
                                    {{"w", torch::arange(12, torch::kFloat).reshape({3, 4})},
                                     {"h", torch::ones({5}, torch::kHalf)},
                                     {"i", torch::tensor({int64_t(9)})}},
                                    {{"m", "x"}});
    const std::string bytes = multilora::io::read_file(good);
    const std::string path = dir.file("cut.safetensors");
    // Every strict prefix is invalid and must be refused cleanly.
    for (size_t n = 0; n < bytes.size(); ++n) {
        write_bytes(path, bytes.substr(0, n));
        EXPECT_THROW(SafetensorsFile::open(path), RuntimeError) << "prefix of " << n << " bytes";
    }
    // Random byte flips: either a clean error or a file whose tensors can all be read.
    std::mt19937 rng(12345);
    int opened = 0;
    for (int iter = 0; iter < 400; ++iter) {
        std::string m = bytes;
        const int flips = 1 + static_cast<int>(rng() % 3);
        for (int k = 0; k < flips; ++k) m[rng() % m.size()] = static_cast<char>(rng() & 0xff);
        write_bytes(path, m);
        try {
            auto f = SafetensorsFile::open(path);
            ++opened;
            for (const auto& n : f->names()) {
                at::Tensor t = f->tensor(n);
                (void)t.to(torch::kDouble).sum();  // touch every element
            }
        } catch (const RuntimeError&) {
        }
    }
    EXPECT_GT(opened, 0);  // flips inside the data block leave a valid file
}

// ---------------------------------------------------------------- pickle detection

TEST(ioPickleDetection, RecognisesZipAndPickleMagic) {
    TempDir dir;
    auto check = [&](const std::string& bytes) {
        const std::string p = dir.file("probe.bin");
        write_bytes(p, bytes);
        return multilora::io::looks_like_pickle_checkpoint(p);
    };
    EXPECT_TRUE(check(std::string("PK\x03\x04", 4) + "rest of a torch zip"));
    EXPECT_TRUE(check(bytes_of({0x80, 0x02, 0x8a, 0x0a})));  // torch legacy .ckpt (protocol 2)
    EXPECT_TRUE(check(bytes_of({0x80, 0x03})));
    EXPECT_TRUE(check(bytes_of({0x80, 0x04, 0x95})));
    EXPECT_TRUE(check(bytes_of({0x80, 0x05})));
    EXPECT_FALSE(check(bytes_of({0x80, 0x01})));
    EXPECT_FALSE(check(bytes_of({0x80, 0x06})));
    EXPECT_FALSE(check(bytes_of({0x80})));
    EXPECT_FALSE(check(""));
    EXPECT_FALSE(check(std::string("PK\x05\x06", 4)));
    EXPECT_FALSE(check(make_st("{}", "")));
    EXPECT_FALSE(multilora::io::looks_like_pickle_checkpoint(dir.file("missing.ckpt")));
    EXPECT_FALSE(multilora::io::looks_like_pickle_checkpoint(dir.path().string()));
}
