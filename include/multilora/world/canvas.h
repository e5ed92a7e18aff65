// A small RGB raster for the trained world's renderer: anti-aliased filled shapes (each pixel's coverage
// is sampled on a 4x4 grid), pixel access, and conversion to 8-bit RGB. No torch.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace multilora::world {

struct Rgb {
    float r = 0, g = 0, b = 0;
};

Rgb mix(Rgb a, Rgb b, float t);  // a·(1 − t) + b·t
float luminance(Rgb c);          // Rec. 601 weights

struct Point {
    float x = 0, y = 0;
};

class Canvas {
public:
    explicit Canvas(int size, Rgb fill = {1, 1, 1});

    int size() const { return size_; }
    Rgb at(int x, int y) const { return px_[static_cast<size_t>(y) * size_ + x]; }
    void set(int x, int y, Rgb c) { px_[static_cast<size_t>(y) * size_ + x] = c; }

    // Blends `color` over every pixel by the share of its 16 sample points for which inside(x, y) holds,
    // within the bounding box [x0, x1] x [y0, y1] (pixel units, clipped to the canvas).
    void fill_shape(float x0, float y0, float x1, float y1, const std::function<bool(float, float)>& inside, Rgb color);

    void circle(float cx, float cy, float r, Rgb color);
    void ellipse(float cx, float cy, float rx, float ry, Rgb color);
    void rect(float x0, float y0, float x1, float y1, Rgb color);
    void rounded_rect(float x0, float y0, float x1, float y1, float radius, Rgb color);
    void polygon(const std::vector<Point>& points, Rgb color);  // even-odd rule
    void line(Point a, Point b, float width, Rgb color);          // a capsule of that width

    // 8-bit RGB, row-major, values clamped to [0, 1] and rounded.
    std::vector<uint8_t> to_rgb8() const;

private:
    int size_;
    std::vector<Rgb> px_;
};

}  // namespace multilora::world
