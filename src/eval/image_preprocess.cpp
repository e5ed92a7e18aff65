#include "multilora/eval/image_preprocess.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "multilora/util/error.h"

namespace multilora::eval {

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

double bicubic_kernel(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

// Per output position: first input index, tap count, and fixed-point weights (Pillow's precompute_coeffs
// followed by normalize_coeffs_8bpc).
struct Coeffs {
    std::vector<int> first, count;
    std::vector<int32_t> weights;  // out_size * ksize
    int ksize = 0;
};

Coeffs precompute(int in_size, int out_size) {
    const double support_base = 2.0;  // bicubic
    double scale = static_cast<double>(static_cast<float>(in_size) - 0.0f) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = support_base * filterscale;
    Coeffs c;
    c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
    c.first.resize(out_size);
    c.count.resize(out_size);
    c.weights.assign(static_cast<size_t>(out_size) * c.ksize, 0);
    std::vector<double> k(c.ksize);
    for (int xx = 0; xx < out_size; ++xx) {
        double center = (xx + 0.5) * scale;
        double ss = 1.0 / filterscale;
        int xmin = static_cast<int>(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = static_cast<int>(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double ww = 0.0;
        for (int x = 0; x < xmax; ++x) {
            double w = bicubic_kernel((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (int x = 0; x < xmax; ++x) {
            double v = ww != 0.0 ? k[x] / ww : k[x];
            double scaled = v * static_cast<double>(1 << kPrecisionBits);
            c.weights[static_cast<size_t>(xx) * c.ksize + x] =
                static_cast<int32_t>(v < 0 ? -0.5 + scaled : 0.5 + scaled);
        }
        c.first[xx] = xmin;
        c.count[xx] = xmax;
    }
    return c;
}

inline uint8_t clip8(int32_t v) {
    if (v < 0) return 0;
    v >>= kPrecisionBits;
    return static_cast<uint8_t>(v > 255 ? 255 : v);
}

}  // namespace

std::vector<uint8_t> resize_bicubic_pil(const uint8_t* rgb, int width, int height, int out_width, int out_height) {
    if (!rgb || width <= 0 || height <= 0 || out_width <= 0 || out_height <= 0)
        throw RuntimeError("resize: bad image or target size");
    const bool horizontal = out_width != width;
    const bool vertical = out_height != height;
    Coeffs ch = precompute(width, out_width);
    Coeffs cv = precompute(height, out_height);

    // Horizontal pass over the rows the vertical pass will read.
    int y_first = 0, y_last = height;
    if (vertical) {
        y_first = cv.first[0];
        y_last = cv.first[out_height - 1] + cv.count[out_height - 1];
    }
    std::vector<uint8_t> temp;
    const uint8_t* src = rgb;
    int src_w = width, row_offset = 0;
    if (horizontal) {
        int rows = y_last - y_first;
        temp.resize(static_cast<size_t>(rows) * out_width * 3);
        for (int y = 0; y < rows; ++y) {
            const uint8_t* in_row = rgb + static_cast<size_t>(y + y_first) * width * 3;
            uint8_t* out_row = temp.data() + static_cast<size_t>(y) * out_width * 3;
            for (int xx = 0; xx < out_width; ++xx) {
                const int32_t* k = &ch.weights[static_cast<size_t>(xx) * ch.ksize];
                int xmin = ch.first[xx], n = ch.count[xx];
                int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
                for (int x = 0; x < n; ++x) {
                    const uint8_t* p = in_row + static_cast<size_t>(x + xmin) * 3;
                    s0 += p[0] * k[x];
                    s1 += p[1] * k[x];
                    s2 += p[2] * k[x];
                }
                out_row[xx * 3 + 0] = clip8(s0);
                out_row[xx * 3 + 1] = clip8(s1);
                out_row[xx * 3 + 2] = clip8(s2);
            }
        }
        src = temp.data();
        src_w = out_width;
        row_offset = y_first;
    }
    if (!vertical) {
        if (horizontal) return temp;
        return std::vector<uint8_t>(rgb, rgb + static_cast<size_t>(width) * height * 3);
    }
    std::vector<uint8_t> out(static_cast<size_t>(out_width) * out_height * 3);
    for (int yy = 0; yy < out_height; ++yy) {
        const int32_t* k = &cv.weights[static_cast<size_t>(yy) * cv.ksize];
        int ymin = cv.first[yy] - row_offset, n = cv.count[yy];
        uint8_t* out_row = out.data() + static_cast<size_t>(yy) * out_width * 3;
        for (int xx = 0; xx < src_w; ++xx) {
            int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
            for (int y = 0; y < n; ++y) {
                const uint8_t* p = src + (static_cast<size_t>(y + ymin) * src_w + xx) * 3;
                s0 += p[0] * k[y];
                s1 += p[1] * k[y];
                s2 += p[2] * k[y];
            }
            out_row[xx * 3 + 0] = clip8(s0);
            out_row[xx * 3 + 1] = clip8(s1);
            out_row[xx * 3 + 2] = clip8(s2);
        }
    }
    return out;
}

void clip_resize_size(int width, int height, int shortest_edge, int& out_width, int& out_height) {
    const int short_side = std::min(width, height), long_side = std::max(width, height);
    const int new_short = shortest_edge;
    const int new_long =
        static_cast<int>(static_cast<double>(static_cast<int64_t>(shortest_edge) * long_side) / short_side);
    if (width <= height) {
        out_width = new_short;
        out_height = new_long;
    } else {
        out_width = new_long;
        out_height = new_short;
    }
}

std::vector<uint8_t> clip_resize_and_crop(const uint8_t* rgb, int width, int height, const ClipPreprocessConfig& cfg,
                                          int& out_width, int& out_height) {
    std::vector<uint8_t> img(rgb, rgb + static_cast<size_t>(width) * height * 3);
    int w = width, h = height;
    if (cfg.do_resize) {
        int rw, rh;
        clip_resize_size(w, h, cfg.shortest_edge, rw, rh);
        if (rw != w || rh != h) img = resize_bicubic_pil(img.data(), w, h, rw, rh);
        w = rw;
        h = rh;
    }
    if (cfg.do_center_crop) {
        const int ch = cfg.crop_height, cw = cfg.crop_width;
        if (h < ch || w < cw) {
            // transformers pads with zeros around the image when it is smaller than the crop.
            std::vector<uint8_t> padded(static_cast<size_t>(std::max(h, ch)) * std::max(w, cw) * 3, 0);
            int ph = std::max(h, ch), pw = std::max(w, cw);
            int top = (ph - h) / 2, left = (pw - w) / 2;
            for (int y = 0; y < h; ++y)
                std::copy_n(img.data() + static_cast<size_t>(y) * w * 3, static_cast<size_t>(w) * 3,
                            padded.data() + (static_cast<size_t>(y + top) * pw + left) * 3);
            img.swap(padded);
            w = pw;
            h = ph;
        }
        const int top = (h - ch) / 2, left = (w - cw) / 2;
        std::vector<uint8_t> crop(static_cast<size_t>(ch) * cw * 3);
        for (int y = 0; y < ch; ++y)
            std::copy_n(img.data() + (static_cast<size_t>(y + top) * w + left) * 3, static_cast<size_t>(cw) * 3,
                        crop.data() + static_cast<size_t>(y) * cw * 3);
        img.swap(crop);
        w = cw;
        h = ch;
    }
    out_width = w;
    out_height = h;
    return img;
}

at::Tensor clip_preprocess(const uint8_t* rgb, int width, int height, const ClipPreprocessConfig& cfg) {
    int w = 0, h = 0;
    std::vector<uint8_t> img = clip_resize_and_crop(rgb, width, height, cfg, w, h);
    at::Tensor out = at::empty({3, h, w}, at::kFloat);
    float* dst = out.data_ptr<float>();
    for (int c = 0; c < 3; ++c) {
        const float mean = static_cast<float>(cfg.mean[c]);
        const float std = static_cast<float>(cfg.std[c]);
        float* plane = dst + static_cast<size_t>(c) * h * w;
        for (size_t i = 0; i < static_cast<size_t>(h) * w; ++i) {
            float x = static_cast<float>(static_cast<double>(img[i * 3 + c]) * (1.0 / 255.0));
            plane[i] = (x - mean) / std;
        }
    }
    return out;
}

}  // namespace multilora::eval
