// Styles, applied to the finished picture: inkline (thick outlines, posterised colours), tessel (a mosaic
// of square tiles, a sixteenth of the side, with dark grout), pastelle (pale and slightly blurred). No generic style.
#include <algorithm>
#include <cmath>
#include <vector>

#include "draw.h"

namespace multilora::world {

namespace {

float posterise(float v) { return std::round(std::clamp(v, 0.f, 1.f) * 3.f) / 3.f; }

void inkline(Canvas& c) {
    const int n = c.size();
    std::vector<char> edge(static_cast<size_t>(n) * n, 0);
    for (int y = 0; y + 1 < n; ++y)
        for (int x = 0; x + 1 < n; ++x) {
            const float l = luminance(c.at(x, y));
            const float d = std::max(std::fabs(l - luminance(c.at(x + 1, y))), std::fabs(l - luminance(c.at(x, y + 1))));
            if (d > 0.08f) edge[static_cast<size_t>(y) * n + x] = 1;
        }
    const int t = std::max(1, n / 64);  // outline half-width
    for (int y = 0; y < n; ++y)
        for (int x = 0; x < n; ++x) {
            bool ink = false;
            for (int dy = -t; dy <= t && !ink; ++dy)
                for (int dx = -t; dx <= t && !ink; ++dx) {
                    const int u = x + dx, v = y + dy;
                    ink = u >= 0 && v >= 0 && u < n && v < n && edge[static_cast<size_t>(v) * n + u];
                }
            const Rgb p = c.at(x, y);
            c.set(x, y, ink ? Rgb{0.02f, 0.02f, 0.02f} : Rgb{posterise(p.r), posterise(p.g), posterise(p.b)});
        }
}

void tessel(Canvas& c) {
    const int n = c.size(), tile = std::max(2, n / 16);
    for (int ty = 0; ty < n; ty += tile)
        for (int tx = 0; tx < n; tx += tile) {
            Rgb sum;
            int count = 0;
            for (int y = ty; y < std::min(n, ty + tile); ++y)
                for (int x = tx; x < std::min(n, tx + tile); ++x, ++count) {
                    const Rgb p = c.at(x, y);
                    sum.r += p.r, sum.g += p.g, sum.b += p.b;
                }
            const Rgb mean{sum.r / count, sum.g / count, sum.b / count};
            for (int y = ty; y < std::min(n, ty + tile); ++y)
                for (int x = tx; x < std::min(n, tx + tile); ++x) {
                    const bool grout = x == tx || y == ty;
                    c.set(x, y, grout ? mix(mean, {0.15f, 0.15f, 0.15f}, 0.75f) : mean);
                }
        }
}

void pastelle(Canvas& c) {
    const int n = c.size();
    const Canvas src = c;
    for (int y = 0; y < n; ++y)
        for (int x = 0; x < n; ++x) {
            Rgb sum;
            int count = 0;
            for (int dy = -1; dy <= 1; ++dy)
                for (int dx = -1; dx <= 1; ++dx) {
                    const int u = std::clamp(x + dx, 0, n - 1), v = std::clamp(y + dy, 0, n - 1);
                    const Rgb p = src.at(u, v);
                    sum.r += p.r, sum.g += p.g, sum.b += p.b, ++count;
                }
            const Rgb blurred{sum.r / count, sum.g / count, sum.b / count};
            c.set(x, y, mix(blurred, {1.f, 0.97f, 0.95f}, 0.62f));
        }
}

}  // namespace

void apply_style(Canvas& c, const SceneSpec& s) {
    switch (s.concept[static_cast<int>(Category::style)]) {
        case 0: inkline(c); break;
        case 1: tessel(c); break;
        case 2: pastelle(c); break;
        default: break;
    }
}

std::string style_phrase(const SceneSpec& s) {
    const int k = s.concept[static_cast<int>(Category::style)];
    return k >= 0 ? ", " + concepts_in(Category::style)[k]->trigger : "";
}

}  // namespace multilora::world
