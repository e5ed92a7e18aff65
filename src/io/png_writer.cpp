// PNG encoding through stb_image_write, plus tEXt chunk splicing/reading and decoding through stb_image.
// This is the one translation unit that carries the stb implementations.
#include "multilora/io/png_writer.h"

#include <array>
#include <climits>
#include <cstring>
#include <string>

#include "multilora/io/atomic_file.h"
#include "multilora/util/error.h"

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#endif
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_IMPLEMENTATION
// CMake puts the folder holding stb_image_write.h (STB_INCLUDE_DIR, /usr/include/stb on Debian) on the
// include path; fall back to the Debian layout when built without it.
#if __has_include(<stb_image_write.h>)
#include <stb_image.h>
#include <stb_image_write.h>
#else
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#endif
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace multilora::io {
namespace {

constexpr unsigned char kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
constexpr uint32_t kMaxChunkLength = 0x7fffffffu;  // PNG spec: lengths are at most 2^31-1

const std::array<uint32_t, 256>& crc_table() {
    static const std::array<uint32_t, 256> table = [] {
        std::array<uint32_t, 256> t{};
        for (uint32_t n = 0; n < 256; ++n) {
            uint32_t c = n;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
            t[n] = c;
        }
        return t;
    }();
    return table;
}

uint32_t read_be32(const std::string& s, size_t pos) {
    return (uint32_t(uint8_t(s[pos])) << 24) | (uint32_t(uint8_t(s[pos + 1])) << 16) |
           (uint32_t(uint8_t(s[pos + 2])) << 8) | uint32_t(uint8_t(s[pos + 3]));
}

void append_be32(std::string& out, uint32_t v) {
    out.push_back(static_cast<char>(v >> 24));
    out.push_back(static_cast<char>(v >> 16));
    out.push_back(static_cast<char>(v >> 8));
    out.push_back(static_cast<char>(v));
}

std::string make_chunk(const char type[4], const std::string& data) {
    if (data.size() > kMaxChunkLength) throw RuntimeError("PNG chunk too large");
    std::string chunk;
    chunk.reserve(12 + data.size());
    append_be32(chunk, static_cast<uint32_t>(data.size()));
    chunk.append(type, 4);
    chunk += data;
    // CRC covers the type and the data, not the length.
    append_be32(chunk, png_crc32(reinterpret_cast<const uint8_t*>(chunk.data()) + 4, 4 + data.size()));
    return chunk;
}

bool has_signature(const std::string& png) {
    return png.size() >= 8 && std::memcmp(png.data(), kPngSignature, 8) == 0;
}

void stbi_append(void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), static_cast<size_t>(size));
}

}  // namespace

uint32_t png_crc32(const uint8_t* data, size_t len) {
    const auto& t = crc_table();
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < len; ++i) c = t[(c ^ data[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

uint32_t png_crc32(const std::string& bytes) {
    return png_crc32(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

std::string encode_png(const uint8_t* rgb, int width, int height,
                       const std::vector<std::pair<std::string, std::string>>& text_chunks) {
    if (rgb == nullptr) throw RuntimeError("cannot encode PNG: no pixel data");
    if (width <= 0 || height <= 0)
        throw RuntimeError("cannot encode PNG: invalid size " + std::to_string(width) + "x" + std::to_string(height));
    if (width > INT_MAX / 3) throw RuntimeError("cannot encode PNG: width " + std::to_string(width) + " too large");

    // Validate the text first, so that a bad keyword fails before the (slow) encode.
    std::string text_bytes;
    for (const auto& [keyword, text] : text_chunks) {
        if (keyword.empty() || keyword.size() > 79)
            throw RuntimeError("cannot encode PNG: tEXt keyword '" + keyword + "' must be 1 to 79 bytes long");
        if (keyword.find('\0') != std::string::npos)
            throw RuntimeError("cannot encode PNG: tEXt keyword contains a NUL byte");
        if (text.find('\0') != std::string::npos)
            throw RuntimeError("cannot encode PNG: text of tEXt chunk '" + keyword + "' contains a NUL byte");
        std::string data;
        data.reserve(keyword.size() + 1 + text.size());
        data += keyword;
        data.push_back('\0');
        data += text;
        text_bytes += make_chunk("tEXt", data);
    }

    std::string png;
    if (!stbi_write_png_to_func(&stbi_append, &png, width, height, 3, rgb, width * 3))
        throw RuntimeError("cannot encode PNG: stb_image_write failed for a " + std::to_string(width) + "x" +
                           std::to_string(height) + " image");

    // stb writes the signature then IHDR first; insert the text chunks right after IHDR.
    if (!has_signature(png) || png.size() < 8 + 12 || png.compare(12, 4, "IHDR") != 0)
        throw RuntimeError("cannot encode PNG: unexpected stb_image_write output (no leading IHDR)");
    const size_t ihdr_end = 8 + 12 + read_be32(png, 8);
    if (ihdr_end > png.size()) throw RuntimeError("cannot encode PNG: unexpected stb_image_write output");
    png.insert(ihdr_end, text_bytes);
    return png;
}

void write_png(const std::string& path, const uint8_t* rgb, int width, int height,
               const std::vector<std::pair<std::string, std::string>>& text_chunks) {
    write_file_atomic(path, encode_png(rgb, width, height, text_chunks));
}

std::vector<std::pair<std::string, std::string>> read_png_text_chunks(const std::string& png_bytes) {
    if (!has_signature(png_bytes)) throw RuntimeError("not a PNG: the 8-byte PNG signature is missing");
    std::vector<std::pair<std::string, std::string>> out;
    size_t pos = 8;
    const size_t size = png_bytes.size();
    while (true) {
        if (size - pos < 12)
            throw RuntimeError("truncated PNG: chunk header at offset " + std::to_string(pos) +
                               " runs past the end of the data");
        const uint32_t len = read_be32(png_bytes, pos);
        if (len > kMaxChunkLength)
            throw RuntimeError("corrupt PNG: chunk length " + std::to_string(len) + " at offset " +
                               std::to_string(pos) + " exceeds 2^31-1");
        if (size - pos - 12 < len)
            throw RuntimeError("truncated PNG: chunk of " + std::to_string(len) + " bytes at offset " +
                               std::to_string(pos) + " runs past the end of the data");
        const std::string type = png_bytes.substr(pos + 4, 4);
        const uint32_t stored_crc = read_be32(png_bytes, pos + 8 + len);
        const uint32_t actual_crc = png_crc32(reinterpret_cast<const uint8_t*>(png_bytes.data()) + pos + 4, 4 + len);
        if (stored_crc != actual_crc)
            throw RuntimeError("corrupt PNG: CRC mismatch in '" + type + "' chunk at offset " + std::to_string(pos));
        if (type == "tEXt") {
            const std::string data = png_bytes.substr(pos + 8, len);
            const size_t nul = data.find('\0');
            if (nul == std::string::npos)
                throw RuntimeError("corrupt PNG: tEXt chunk at offset " + std::to_string(pos) +
                                   " has no NUL separator after its keyword");
            out.emplace_back(data.substr(0, nul), data.substr(nul + 1));
        }
        pos += 12 + static_cast<size_t>(len);
        if (type == "IEND") break;
    }
    return out;
}

std::vector<uint8_t> decode_png_rgb(const std::string& png_bytes, int* width, int* height) {
    if (png_bytes.size() > static_cast<size_t>(INT_MAX)) throw RuntimeError("cannot decode PNG: data too large");
    // stb_image reads a dozen formats: only PNG is asked for here (the fuzzer found a TGA header that kept stb busy
    // for minutes), and the size is checked from the header before any pixel is decoded.
    static const char kSignature[8] = {'\x89', 'P', 'N', 'G', '\r', '\n', '\x1a', '\n'};
    if (png_bytes.size() < 8 || std::memcmp(png_bytes.data(), kSignature, 8) != 0)
        throw RuntimeError("cannot decode PNG: the data does not start with the PNG signature");
    // The chunk stream is checked first (lengths inside the data, CRCs), and empty IDAT chunks are dropped:
    // stb_image trusts chunk lengths and, given an empty first IDAT, copies 0 bytes to a null pointer (UB; found
    // by the fuzzer under UBSan). Neither changes the image of a well-formed PNG.
    (void)read_png_text_chunks(png_bytes);
    std::string clean = png_bytes.substr(0, 8);
    for (size_t pos = 8; pos + 12 <= png_bytes.size();) {
        const uint32_t len = read_be32(png_bytes, pos);
        const bool empty_idat = len == 0 && png_bytes.compare(pos + 4, 4, "IDAT") == 0;
        if (!empty_idat) clean.append(png_bytes, pos, 12 + static_cast<size_t>(len));
        if (png_bytes.compare(pos + 4, 4, "IEND") == 0) break;
        pos += 12 + static_cast<size_t>(len);
    }
    int w = 0, h = 0, comp = 0;
    const auto* data = reinterpret_cast<const stbi_uc*>(clean.data());
    if (!stbi_info_from_memory(data, static_cast<int>(clean.size()), &w, &h, &comp)) {
        const char* reason = stbi_failure_reason();
        throw RuntimeError(std::string("cannot decode PNG: ") + (reason ? reason : "unknown error"));
    }
    constexpr int64_t kMaxPixels = int64_t{1} << 26;  // 8192 x 8192
    if (static_cast<int64_t>(w) * h > kMaxPixels)
        throw RuntimeError("cannot decode PNG: " + std::to_string(w) + "x" + std::to_string(h) +
                           " is more than the 67 M pixels multilora reads");
    stbi_uc* pixels = stbi_load_from_memory(data, static_cast<int>(clean.size()), &w, &h, &comp, 3);
    if (pixels == nullptr) {
        const char* reason = stbi_failure_reason();
        throw RuntimeError(std::string("cannot decode PNG: ") + (reason ? reason : "unknown error"));
    }
    std::vector<uint8_t> out(pixels, pixels + static_cast<size_t>(w) * static_cast<size_t>(h) * 3);
    stbi_image_free(pixels);
    if (width) *width = w;
    if (height) *height = h;
    return out;
}

}  // namespace multilora::io
