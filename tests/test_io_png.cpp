// PNG encoding with tEXt chunks: CRC-32 check values, chunk placement and bytes, text and pixel round trips,
// and robustness of the chunk reader against malformed input.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "multilora/io/atomic_file.h"
#include "multilora/io/png_writer.h"
#include "multilora/util/error.h"

namespace fs = std::filesystem;
using multilora::RuntimeError;
using namespace multilora::io;

namespace {

uint32_t be32(const std::string& s, size_t pos) {
    return (uint32_t(uint8_t(s[pos])) << 24) | (uint32_t(uint8_t(s[pos + 1])) << 16) |
           (uint32_t(uint8_t(s[pos + 2])) << 8) | uint32_t(uint8_t(s[pos + 3]));
}

// A w x h image whose every byte is a known function of its position.
std::vector<uint8_t> pattern(int w, int h) {
    std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            uint8_t* p = &px[(static_cast<size_t>(y) * w + x) * 3];
            p[0] = static_cast<uint8_t>(x * 40);
            p[1] = static_cast<uint8_t>(y * 60);
            p[2] = static_cast<uint8_t>((x ^ y) * 17 + 3);
        }
    return px;
}

}  // namespace

TEST(ioPngCrc, StandardCheckValues) {
    // Every PNG ends with the IEND chunk 00 00 00 00 'IEND' AE 42 60 82.
    EXPECT_EQ(png_crc32(std::string("IEND")), 0xAE426082u);
    // The CRC-32 check value from the catalogue of CRC parameters (and zlib.crc32(b"123456789")).
    EXPECT_EQ(png_crc32(std::string("123456789")), 0xCBF43926u);
    EXPECT_EQ(png_crc32(std::string()), 0u);
    const uint8_t iend[] = {'I', 'E', 'N', 'D'};
    EXPECT_EQ(png_crc32(iend, 4), 0xAE426082u);
}

TEST(ioPngWriter, EncodedImageHasSignatureIhdrAndIend) {
    auto px = pattern(5, 3);
    const std::string png = encode_png(px.data(), 5, 3);
    ASSERT_GE(png.size(), 8u + 25 + 12);
    EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
    EXPECT_EQ(be32(png, 8), 13u);
    EXPECT_EQ(png.substr(12, 4), "IHDR");
    EXPECT_EQ(be32(png, 16), 5u);  // width
    EXPECT_EQ(be32(png, 20), 3u);  // height
    EXPECT_EQ(uint8_t(png[24]), 8);  // bit depth
    EXPECT_EQ(uint8_t(png[25]), 2);  // colour type RGB
    EXPECT_EQ(png.substr(png.size() - 12), std::string("\0\0\0\0IEND\xAE\x42\x60\x82", 12));
}

TEST(ioPngWriter, TextChunksGoRightAfterIhdrWithExactBytes) {
    auto px = pattern(2, 2);
    const std::string png = encode_png(px.data(), 2, 2, {{"k", "v"}, {"parameters", "a cat\nSteps: 20"}});
    // Signature (8) + IHDR chunk (12 + 13) = 33: the first tEXt chunk starts there.
    // length 3, type, "k" NUL "v", then CRC-32 of type+data as Python's zlib.crc32(b"tEXtk\0v") gives it.
    const std::string expected_first = std::string("\0\0\0\x03tEXtk\0v", 11) + "\xCB\x04\xF3\x90";
    EXPECT_EQ(png.substr(33, expected_first.size()), expected_first);
    EXPECT_EQ(png.substr(33 + 15 + 4, 4), "tEXt");  // the second one follows (12 + 3 bytes later)
    auto chunks = read_png_text_chunks(png);
    ASSERT_EQ(chunks.size(), 2u);
    EXPECT_EQ(chunks[0], (std::pair<std::string, std::string>{"k", "v"}));
    EXPECT_EQ(chunks[1], (std::pair<std::string, std::string>{"parameters", "a cat\nSteps: 20"}));
}

TEST(ioPngWriter, TextRoundTripKeepsOrderAndUtf8) {
    auto px = pattern(7, 4);
    const std::vector<std::pair<std::string, std::string>> text = {
        {"parameters", "a photo of a \xE7\x8C\xAB (cat), <lora:style:0.8>\nNegative prompt: blurry\n"
                       "Steps: 30, Sampler: Euler a, CFG scale: 7.5, Seed: 1234, Size: 7x4"},
        {"multilora", "{\"version\":\"0.1.0\"}"},
        {"Comment", ""},
        {std::string(79, 'K'), std::string(100000, 'x')},
    };
    const std::string png = encode_png(px.data(), 7, 4, text);
    EXPECT_EQ(read_png_text_chunks(png), text);
    EXPECT_TRUE(read_png_text_chunks(encode_png(px.data(), 7, 4)).empty());
}

TEST(ioPngWriter, DecodedPixelsEqualTheInput) {
    for (auto [w, h] : {std::pair{1, 1}, std::pair{5, 3}, std::pair{64, 48}, std::pair{257, 3}}) {
        auto px = pattern(w, h);
        const std::string png = encode_png(px.data(), w, h, {{"parameters", "x"}});
        int dw = 0, dh = 0;
        std::vector<uint8_t> back = decode_png_rgb(png, &dw, &dh);
        EXPECT_EQ(dw, w);
        EXPECT_EQ(dh, h);
        EXPECT_EQ(back, px) << w << "x" << h;
    }
    // Random noise does not compress: exercises stb's filters on every byte value.
    std::mt19937 rng(7);
    std::vector<uint8_t> noise(33 * 17 * 3);
    for (auto& b : noise) b = static_cast<uint8_t>(rng());
    EXPECT_EQ(decode_png_rgb(encode_png(noise.data(), 33, 17), nullptr, nullptr), noise);
}

TEST(ioPngWriter, WritePngWritesTheEncodedBytesAtomically) {
    std::string tmpl = (fs::temp_directory_path() / "ml_io_png_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    const fs::path dir(tmpl);
    const std::string path = (dir / "00001.png").string();
    auto px = pattern(6, 2);
    write_png(path, px.data(), 6, 2, {{"parameters", "p"}});
    EXPECT_EQ(read_file(path), encode_png(px.data(), 6, 2, {{"parameters", "p"}}));
    EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
    const std::string bad = (dir / "missing" / "x.png").string();
    try {
        write_png(bad, px.data(), 6, 2);
        ADD_FAILURE();
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
    fs::remove_all(dir);
}

TEST(ioPngWriter, RejectsInvalidArguments) {
    auto px = pattern(2, 2);
    EXPECT_THROW(encode_png(nullptr, 2, 2), RuntimeError);
    EXPECT_THROW(encode_png(px.data(), 0, 2), RuntimeError);
    EXPECT_THROW(encode_png(px.data(), 2, -1), RuntimeError);
    EXPECT_THROW(encode_png(px.data(), 2, 2, {{"", "empty keyword"}}), RuntimeError);
    EXPECT_THROW(encode_png(px.data(), 2, 2, {{std::string(80, 'k'), "keyword too long"}}), RuntimeError);
    EXPECT_THROW(encode_png(px.data(), 2, 2, {{std::string("a\0b", 3), "nul in keyword"}}), RuntimeError);
    EXPECT_THROW(encode_png(px.data(), 2, 2, {{"k", std::string("nul\0text", 8)}}), RuntimeError);
}

TEST(ioPngReader, MalformedInputIsRefusedWithoutReadingOutOfBounds) {
    auto px = pattern(3, 3);
    const std::string png = encode_png(px.data(), 3, 3, {{"parameters", "hello"}});

    auto expect_error = [](const std::string& bytes, const std::string& phrase) {
        try {
            read_png_text_chunks(bytes);
            ADD_FAILURE() << "expected '" << phrase << "'";
        } catch (const RuntimeError& e) {
            EXPECT_NE(std::string(e.what()).find(phrase), std::string::npos) << e.what();
        }
    };
    expect_error("", "signature");
    expect_error("GIF89a....", "signature");
    expect_error(png.substr(0, 8), "truncated PNG");
    expect_error(png.substr(0, 40), "truncated PNG");
    std::string bad_crc = png;
    bad_crc[33 + 8] ^= 1;  // first data byte of the tEXt chunk
    expect_error(bad_crc, "CRC mismatch in 'tEXt' chunk at offset 33");
    std::string huge_len = png;
    huge_len[33] = '\x7f';  // tEXt length becomes ~2 GiB
    expect_error(huge_len, "truncated PNG");
    std::string over_len = png;
    over_len[33] = '\xff';  // beyond 2^31-1
    expect_error(over_len, "exceeds 2^31-1");

    // A tEXt chunk without a NUL separator, with a correct CRC.
    std::string no_nul = png.substr(0, 33);
    const std::string body = "tEXtnokeyword";
    no_nul += std::string("\0\0\0\x09", 4) + body;
    const uint32_t crc = png_crc32(body);
    for (int i = 3; i >= 0; --i) no_nul.push_back(static_cast<char>(crc >> (8 * i)));
    no_nul += png.substr(33);
    expect_error(no_nul, "no NUL separator");

    // Every strict prefix is refused (IEND never arrives); no crash, no out-of-bounds read.
    for (size_t n = 0; n < png.size(); ++n) EXPECT_THROW(read_png_text_chunks(png.substr(0, n)), RuntimeError) << n;

    EXPECT_THROW(decode_png_rgb("not a png", nullptr, nullptr), RuntimeError);
    EXPECT_THROW(decode_png_rgb(png.substr(0, png.size() / 2), nullptr, nullptr), RuntimeError);
    try {
        decode_png_rgb("", nullptr, nullptr);
        ADD_FAILURE();
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("cannot decode PNG"), std::string::npos) << e.what();
    }
}

// decode_png_rgb reads PNG only, and checks the size in the header before decoding: the fuzzer's input (a TGA
// header stb_image would have spent minutes on) and a PNG header claiming 10000 x 10000 are refused at once.
TEST(ioPngWriter, DecoderRefusesOtherFormatsAndHugeSizes) {
    const std::string tga("\x89\x00\x0a\x00#DR\x00\x00\x05\x00#DR\x00\x81\x08\x00\x00\x00\x00`", 23);
    try {
        (void)decode_png_rgb(tga, nullptr, nullptr);
        FAIL() << "a TGA header was decoded";
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("PNG signature"), std::string::npos) << e.what();
    }
    std::vector<uint8_t> px(4 * 4 * 3, 7);
    std::string png = encode_png(px.data(), 4, 4);
    // IHDR's width and height are bytes 16..23 (big-endian), its CRC bytes 29..32 (over type and data, 12..28).
    for (int i : {16, 20}) png.replace(i, 4, std::string("\x00\x00\x27\x10", 4));  // 10000
    const uint32_t crc = png_crc32(png.substr(12, 17));
    for (int b = 0; b < 4; ++b) png[29 + b] = static_cast<char>((crc >> (24 - 8 * b)) & 0xff);
    try {
        (void)decode_png_rgb(png, nullptr, nullptr);
        FAIL() << "a 10000 x 10000 header was decoded";
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("10000x10000 is more than the 67 M pixels"), std::string::npos) << e.what();
    }
}
