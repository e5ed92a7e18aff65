// Backgrounds: the brixel wall, the starfall sky, the wavoo sea; or a generic backdrop (plain, striped,
// checkered or dotted, in two pale palette colours).
#include <cmath>

#include "draw.h"

namespace multilora::world {

namespace {

void brixel_wall(Canvas& c) {
    const float n = static_cast<float>(c.size()), h = n / 8, w = n / 4, gap = n / 64;
    c.rect(0, 0, n, n, {0.82f, 0.8f, 0.75f});
    for (int row = 0; row < 8; ++row) {
        const float shift = (row % 2) ? w / 2 : 0;
        for (int col = -1; col < 5; ++col) {
            const float x0 = col * w + shift + gap / 2, y0 = row * h + gap / 2;
            c.rect(x0, y0, x0 + w - gap, y0 + h - gap, {0.7f, 0.28f, 0.18f});
        }
    }
}

void starfall_sky(Canvas& c, uint64_t seed) {
    const float n = static_cast<float>(c.size());
    const Rgb navy{0.05f, 0.07f, 0.25f};
    c.rect(0, 0, n, n, navy);
    Rng rng(seed);
    for (int i = 0; i < 40; ++i) {
        // Drawn one by one in this order (a function's arguments have none: GCC drew them right to left, clang
        // left to right, so the sky differed between compilers).
        const float r = n * rng.uniform(0.008f, 0.016f), y = rng.uniform(0, n), x = rng.uniform(0, n);
        c.circle(x, y, r, {1, 1, 1});
    }
    const float mx = n * rng.uniform(0.15f, 0.85f), my = n * 0.14f, mr = n * 0.08f;
    c.circle(mx, my, mr, {1.f, 0.95f, 0.5f});
    c.circle(mx + mr * 0.45f, my - mr * 0.2f, mr * 0.85f, navy);
}

void wavoo_sea(Canvas& c, uint64_t seed) {
    const float n = static_cast<float>(c.size()), band = n / 10, amp = n / 32, period = n / 4;
    const float phase = Rng(seed).uniform(0, 6.2831853f);
    const Rgb blues[] = {{0.1f, 0.35f, 0.75f}, {0.35f, 0.65f, 0.95f}};
    c.rect(0, 0, n, n, blues[0]);
    c.fill_shape(0, 0, n, n,
                 [=](float x, float y) {
                     const float w = y + amp * std::sin(6.2831853f * x / period + phase);
                     return static_cast<int>(std::floor(w / band)) % 2 != 0;
                 },
                 blues[1]);
}

void backdrop(Canvas& c, const SceneSpec& s) {
    const float n = static_cast<float>(c.size()), cell = n / 8;
    c.rect(0, 0, n, n, s.backdrop_a);
    if (s.backdrop == 1)
        c.fill_shape(0, 0, n, n, [=](float x, float) { return static_cast<int>(x / cell) % 2 == 1; }, s.backdrop_b);
    if (s.backdrop == 2)
        c.fill_shape(0, 0, n, n,
                     [=](float x, float y) { return (static_cast<int>(x / cell) + static_cast<int>(y / cell)) % 2 == 1; },
                     s.backdrop_b);
    if (s.backdrop == 3)
        for (int i = 0; i < 8; ++i)
            for (int j = 0; j < 8; ++j) c.circle((i + 0.5f) * cell, (j + 0.5f) * cell, cell * 0.22f, s.backdrop_b);
}

}  // namespace

void draw_background(Canvas& c, const SceneSpec& s) {
    switch (s.concept[static_cast<int>(Category::background)]) {
        case 0: brixel_wall(c); break;
        case 1: starfall_sky(c, s.detail_seed); break;
        case 2: wavoo_sea(c, s.detail_seed); break;
        default: backdrop(c, s);
    }
}

std::string background_phrase(const SceneSpec& s) {
    static const char* prepositions[] = {" on a ", " under a ", " by a "};
    static const char* generic[] = {" on a plain background", " on a striped background", " on a checkered background",
                                    " on a dotted background"};
    const int k = s.concept[static_cast<int>(Category::background)];
    return k >= 0 ? prepositions[k] + concepts_in(Category::background)[k]->trigger : generic[s.backdrop];
}

}  // namespace multilora::world
