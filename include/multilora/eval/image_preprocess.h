// CLIP's image preprocessing, as transformers' CLIPImageProcessor (the PIL-based one) does it:
//   1. resize so that the shortest side is `shortest_edge` (224), the other side int(224 · long / short)
//      (truncated, as transformers' get_resize_output_image_size), with PIL's bicubic filter;
//   2. centre crop to crop_height × crop_width (top = (h − ch) // 2, left = (w − cw) // 2);
//   3. pixel / 255, then (x − mean) / std per channel (CLIP's mean and std).
//
// The resize reimplements Pillow's Image.resize(size, Image.BICUBIC, reducing_gap=None) on 8-bit RGB
// (Pillow >= 7, libImaging/Resample.c): separable convolution with the a = −0.5 cubic kernel stretched by
// the scale factor when shrinking (antialiasing), coefficients in 22-bit fixed point, rounded and clamped
// to 8 bits after the horizontal pass and again after the vertical pass. Its output is byte-identical to
// Pillow's (checked against Debian 12's Pillow 9.4 on hand-made images, tests/test_eval_clipscore.cpp).
// Residual difference to transformers: rescaling and normalising run in float32 here; transformers
// multiplies by 1/255 in float64 before casting to float32 and then normalises in float32, so values can
// differ in the last bit (|Δ| < 1e-6). transformers' newer "fast" processor (torchvision resize) is not
// what this matches.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace at {
class Tensor;
}

namespace multilora::eval {

struct ClipPreprocessConfig {
    bool do_resize = true;
    int shortest_edge = 224;
    bool do_center_crop = true;
    int crop_height = 224;
    int crop_width = 224;
    std::array<double, 3> mean = {0.48145466, 0.4578275, 0.40821073};
    std::array<double, 3> std = {0.26862954, 0.26130258, 0.27577711};
};

// Pillow's bicubic resize of an 8-bit RGB image (row-major, 3 bytes per pixel).
std::vector<uint8_t> resize_bicubic_pil(const uint8_t* rgb, int width, int height, int out_width, int out_height);

// transformers' output size for "shortest_edge" resizing (default_to_square=False).
void clip_resize_size(int width, int height, int shortest_edge, int& out_width, int& out_height);

// Resize + crop, still 8-bit RGB (for tests and inspection). out_width/out_height receive the size.
std::vector<uint8_t> clip_resize_and_crop(const uint8_t* rgb, int width, int height, const ClipPreprocessConfig& cfg,
                                          int& out_width, int& out_height);

// The whole preprocessing: float32 tensor [3, crop_height, crop_width].
at::Tensor clip_preprocess(const uint8_t* rgb, int width, int height, const ClipPreprocessConfig& cfg);

}  // namespace multilora::eval
