// Characters: the three concepts (Zorp, Quillo, Mubble) and the generic creature (round, square or
// pointy, in a palette colour no concept uses, with two small eyes).
#include <cmath>

#include "draw.h"

namespace multilora::world {

namespace {

constexpr Rgb kBlack{0.05f, 0.05f, 0.05f};
constexpr Rgb kWhite{1, 1, 1};

void eye(Canvas& c, float x, float y, float r) {
    c.circle(x, y, r, kWhite);
    c.circle(x + r * 0.2f, y + r * 0.1f, r * 0.5f, kBlack);
}

void two_eyes(Canvas& c, const BodyFrame& f, float size) {
    eye(c, f.cx - f.r * 0.35f, f.cy - f.r * 0.2f, f.r * size);
    eye(c, f.cx + f.r * 0.35f, f.cy - f.r * 0.2f, f.r * size);
}

void zorp(Canvas& c, const BodyFrame& f) {
    const Rgb green{0.45f, 0.85f, 0.2f}, dark{0.15f, 0.45f, 0.1f};
    c.ellipse(f.cx - f.r * 0.45f, f.cy + f.r * 0.95f, f.r * 0.3f, f.r * 0.15f, dark);
    c.ellipse(f.cx + f.r * 0.45f, f.cy + f.r * 0.95f, f.r * 0.3f, f.r * 0.15f, dark);
    c.circle(f.cx, f.cy, f.r, green);
    eye(c, f.cx, f.cy - f.r * 0.2f, f.r * 0.4f);
}

void quillo(Canvas& c, const BodyFrame& f) {
    const Rgb orange{1.f, 0.55f, 0.1f}, spike{0.6f, 0.1f, 0.05f};
    for (int i = 0; i < 5; ++i) {
        const float a = 3.14159265f * (0.15f + 0.175f * i);  // spread over the upper half
        const float dx = -std::cos(a), dy = -std::sin(a);
        const float bx = f.cx + dx * f.r * 0.8f, by = f.cy + dy * f.r * 0.8f;
        c.polygon({{bx - dy * f.r * 0.25f, by + dx * f.r * 0.25f},
                   {bx + dy * f.r * 0.25f, by - dx * f.r * 0.25f},
                   {f.cx + dx * f.r * 1.45f, f.cy + dy * f.r * 1.45f}},
                  spike);
    }
    c.circle(f.cx, f.cy, f.r, orange);
    two_eyes(c, f, 0.22f);
}

void mubble(Canvas& c, const BodyFrame& f) {
    const Rgb purple{0.55f, 0.3f, 0.8f}, tip{1.f, 0.9f, 0.1f};
    for (float side : {-1.f, 1.f}) {
        const Point base{f.cx + side * f.half_width * 0.5f, f.top + f.r * 0.2f};
        const Point end{f.cx + side * f.half_width * 0.9f, f.top - f.r * 0.45f};
        c.line(base, end, f.r * 0.1f, purple);
        c.circle(end.x, end.y, f.r * 0.16f, tip);
    }
    c.rounded_rect(f.cx - f.half_width, f.top, f.cx + f.half_width, f.cy + f.r, f.r * 0.35f, purple);
    two_eyes(c, f, 0.2f);
}

void generic(Canvas& c, const SceneSpec& s, const BodyFrame& f) {
    if (s.body_shape == 0) c.circle(f.cx, f.cy, f.r, s.body_color);
    if (s.body_shape == 1) c.rounded_rect(f.cx - f.r, f.cy - f.r, f.cx + f.r, f.cy + f.r, f.r * 0.2f, s.body_color);
    if (s.body_shape == 2) c.polygon({{f.cx, f.top}, {f.cx + f.r, f.cy + f.r}, {f.cx - f.r, f.cy + f.r}}, s.body_color);
    two_eyes(c, f, s.body_shape == 2 ? 0.14f : 0.17f);
}

}  // namespace

BodyFrame body_frame(const SceneSpec& s, int size) {
    const float n = static_cast<float>(size);
    BodyFrame f{s.cx * n, s.cy * n, s.r * n, 0, 0};
    f.top = f.cy - f.r;
    f.half_width = f.r;
    const int who = s.concept[static_cast<int>(Category::character)];
    if (who == 2) f.top = f.cy - f.r * 1.3f, f.half_width = f.r * 0.75f;  // Mubble is tall
    if (who < 0 && s.body_shape == 2) f.top = f.cy - f.r * 1.1f;          // the pointy creature's tip
    return f;
}

void draw_character(Canvas& c, const SceneSpec& s) {
    const BodyFrame f = body_frame(s, c.size());
    switch (s.concept[static_cast<int>(Category::character)]) {
        case 0: zorp(c, f); break;
        case 1: quillo(c, f); break;
        case 2: mubble(c, f); break;
        default: generic(c, s, f);
    }
}

std::string character_phrase(const SceneSpec& s) {
    const int who = s.concept[static_cast<int>(Category::character)];
    if (who >= 0) return concepts_in(Category::character)[who]->trigger;
    static const char* shapes[] = {"a round creature", "a square creature", "a pointy creature"};
    return shapes[s.body_shape];
}

}  // namespace multilora::world
