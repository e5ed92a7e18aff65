#include "multilora/world/canvas.h"

#include <algorithm>
#include <cmath>

namespace multilora::world {

Rgb mix(Rgb a, Rgb b, float t) { return {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t}; }

float luminance(Rgb c) { return 0.299f * c.r + 0.587f * c.g + 0.114f * c.b; }

Canvas::Canvas(int size, Rgb fill) : size_(size), px_(static_cast<size_t>(size) * size, fill) {}

void Canvas::fill_shape(float x0, float y0, float x1, float y1, const std::function<bool(float, float)>& inside,
                        Rgb color) {
    const int ix0 = std::max(0, static_cast<int>(std::floor(x0)));
    const int iy0 = std::max(0, static_cast<int>(std::floor(y0)));
    const int ix1 = std::min(size_ - 1, static_cast<int>(std::ceil(x1)));
    const int iy1 = std::min(size_ - 1, static_cast<int>(std::ceil(y1)));
    for (int y = iy0; y <= iy1; ++y) {
        for (int x = ix0; x <= ix1; ++x) {
            int hits = 0;
            for (int sy = 0; sy < 4; ++sy)
                for (int sx = 0; sx < 4; ++sx) hits += inside(x + (sx + 0.5f) / 4.f, y + (sy + 0.5f) / 4.f) ? 1 : 0;
            if (hits > 0) set(x, y, mix(at(x, y), color, hits / 16.f));
        }
    }
}

void Canvas::circle(float cx, float cy, float r, Rgb color) { ellipse(cx, cy, r, r, color); }

void Canvas::ellipse(float cx, float cy, float rx, float ry, Rgb color) {
    fill_shape(cx - rx, cy - ry, cx + rx, cy + ry,
               [=](float x, float y) {
                   const float u = (x - cx) / rx, v = (y - cy) / ry;
                   return u * u + v * v <= 1.f;
               },
               color);
}

void Canvas::rect(float x0, float y0, float x1, float y1, Rgb color) {
    fill_shape(x0, y0, x1, y1, [=](float x, float y) { return x >= x0 && x < x1 && y >= y0 && y < y1; }, color);
}

void Canvas::rounded_rect(float x0, float y0, float x1, float y1, float radius, Rgb color) {
    fill_shape(x0, y0, x1, y1,
               [=](float x, float y) {
                   if (x < x0 || x >= x1 || y < y0 || y >= y1) return false;
                   const float dx = std::max({x0 + radius - x, 0.f, x - (x1 - radius)});
                   const float dy = std::max({y0 + radius - y, 0.f, y - (y1 - radius)});
                   return dx * dx + dy * dy <= radius * radius;
               },
               color);
}

void Canvas::polygon(const std::vector<Point>& pts, Rgb color) {
    if (pts.size() < 3) return;
    float x0 = pts[0].x, x1 = x0, y0 = pts[0].y, y1 = y0;
    for (const Point& p : pts) {
        x0 = std::min(x0, p.x), x1 = std::max(x1, p.x), y0 = std::min(y0, p.y), y1 = std::max(y1, p.y);
    }
    fill_shape(x0, y0, x1, y1,
               [&pts](float x, float y) {
                   bool in = false;
                   for (size_t i = 0, j = pts.size() - 1; i < pts.size(); j = i++) {
                       const Point &a = pts[i], &b = pts[j];
                       if ((a.y > y) != (b.y > y) && x < (b.x - a.x) * (y - a.y) / (b.y - a.y) + a.x) in = !in;
                   }
                   return in;
               },
               color);
}

void Canvas::line(Point a, Point b, float width, Rgb color) {
    const float h = width / 2;
    const float dx = b.x - a.x, dy = b.y - a.y, len2 = std::max(dx * dx + dy * dy, 1e-12f);
    fill_shape(std::min(a.x, b.x) - h, std::min(a.y, b.y) - h, std::max(a.x, b.x) + h, std::max(a.y, b.y) + h,
               [=](float x, float y) {
                   const float t = std::clamp(((x - a.x) * dx + (y - a.y) * dy) / len2, 0.f, 1.f);
                   const float ex = x - (a.x + t * dx), ey = y - (a.y + t * dy);
                   return ex * ex + ey * ey <= h * h;
               },
               color);
}

std::vector<uint8_t> Canvas::to_rgb8() const {
    std::vector<uint8_t> out(px_.size() * 3);
    auto byte = [](float v) { return static_cast<uint8_t>(std::lround(std::clamp(v, 0.f, 1.f) * 255.f)); };
    for (size_t i = 0; i < px_.size(); ++i) {
        out[3 * i] = byte(px_[i].r), out[3 * i + 1] = byte(px_[i].g), out[3 * i + 2] = byte(px_[i].b);
    }
    return out;
}

}  // namespace multilora::world
