// PNG output through stb_image_write, with tEXt chunks (A1111 reads the "parameters" keyword).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace multilora::io {

// Encodes an 8-bit RGB image (row-major, width*height*3 bytes) as PNG, inserting one tEXt chunk per
// (keyword, text) pair right after IHDR. Keywords must be 1-79 bytes without NUL, texts must not
// contain NUL; otherwise (or for a null image / non-positive size) RuntimeError is thrown.
// Text is written as Latin-1 bytes per the PNG spec would require, but A1111-style tools read it as
// UTF-8, so UTF-8 is written through unchanged.
std::string encode_png(const uint8_t* rgb, int width, int height,
                       const std::vector<std::pair<std::string, std::string>>& text_chunks = {});

// encode_png + write_file_atomic.
void write_png(const std::string& path, const uint8_t* rgb, int width, int height,
               const std::vector<std::pair<std::string, std::string>>& text_chunks = {});

// Reads back the tEXt chunks of a PNG byte string (for tests and resume checks), in file order.
// Throws RuntimeError when the bytes are not a well-formed PNG chunk stream (bad signature, a chunk
// running past the end, a CRC mismatch, a tEXt chunk without its NUL separator).
std::vector<std::pair<std::string, std::string>> read_png_text_chunks(const std::string& png_bytes);

// CRC-32 as PNG uses it (ISO 3309 / ITU-T V.42, polynomial 0xEDB88320, initial and final XOR
// 0xFFFFFFFF), computed over a chunk's type and data bytes. png_crc32("IEND") == 0xAE426082.
uint32_t png_crc32(const uint8_t* data, size_t len);
uint32_t png_crc32(const std::string& bytes);

// Decodes a PNG (8-bit RGB) through stb_image; used by tests to compare pixels. Throws on failure.
std::vector<uint8_t> decode_png_rgb(const std::string& png_bytes, int* width, int* height);

}  // namespace multilora::io
