// Objects beside the character: the glint key, the rumbo apple, the shroomba; or a generic ball.
#include "draw.h"

namespace multilora::world {

namespace {

struct Spot {
    float x, y, s;  // centre and half-size in pixels
};

Spot object_spot(const SceneSpec& spec, int size) {
    const BodyFrame f = body_frame(spec, size);
    const float side = spec.object_left ? -1.f : 1.f;
    const float s = 0.14f * size;
    return {f.cx + side * (f.half_width + 0.15f * size), f.cy + f.r - s, s};
}

void glint_key(Canvas& c, const Spot& p) {
    const Rgb gold{0.95f, 0.75f, 0.1f};
    const float rx = p.x - p.s * 0.45f, ro = p.s * 0.5f, ri = p.s * 0.25f;
    c.fill_shape(rx - ro, p.y - ro, rx + ro, p.y + ro,
                 [=](float x, float y) {
                     const float d = (x - rx) * (x - rx) + (y - p.y) * (y - p.y);
                     return d <= ro * ro && d >= ri * ri;
                 },
                 gold);
    c.rect(rx + ro * 0.8f, p.y - p.s * 0.12f, p.x + p.s, p.y + p.s * 0.12f, gold);
    c.rect(p.x + p.s * 0.45f, p.y, p.x + p.s * 0.65f, p.y + p.s * 0.45f, gold);
    c.rect(p.x + p.s * 0.8f, p.y, p.x + p.s, p.y + p.s * 0.35f, gold);
}

void rumbo_apple(Canvas& c, const Spot& p) {
    c.line({p.x, p.y - p.s * 0.6f}, {p.x + p.s * 0.1f, p.y - p.s}, p.s * 0.14f, {0.4f, 0.25f, 0.1f});
    c.ellipse(p.x + p.s * 0.35f, p.y - p.s * 0.8f, p.s * 0.3f, p.s * 0.14f, {0.2f, 0.65f, 0.15f});
    c.circle(p.x - p.s * 0.3f, p.y + p.s * 0.1f, p.s * 0.62f, {0.85f, 0.08f, 0.1f});
    c.circle(p.x + p.s * 0.3f, p.y + p.s * 0.1f, p.s * 0.62f, {0.85f, 0.08f, 0.1f});
}

void shroomba(Canvas& c, const Spot& p) {
    const Rgb red{0.85f, 0.1f, 0.12f}, white{1, 1, 1};
    c.rect(p.x - p.s * 0.25f, p.y - p.s * 0.1f, p.x + p.s * 0.25f, p.y + p.s, {0.93f, 0.87f, 0.7f});
    c.fill_shape(p.x - p.s, p.y - p.s, p.x + p.s, p.y,
                 [=](float x, float y) {
                     const float u = (x - p.x) / p.s, v = (y - p.y) / (p.s * 0.9f);
                     return y <= p.y && u * u + v * v <= 1.f;
                 },
                 red);
    c.circle(p.x - p.s * 0.45f, p.y - p.s * 0.35f, p.s * 0.16f, white);
    c.circle(p.x + p.s * 0.1f, p.y - p.s * 0.62f, p.s * 0.16f, white);
    c.circle(p.x + p.s * 0.55f, p.y - p.s * 0.25f, p.s * 0.14f, white);
}

void ball(Canvas& c, const Spot& p, Rgb color) {
    c.circle(p.x, p.y + p.s * 0.2f, p.s * 0.75f, color);
    c.circle(p.x - p.s * 0.25f, p.y - p.s * 0.1f, p.s * 0.18f, mix(color, {1, 1, 1}, 0.7f));
}

}  // namespace

void draw_object(Canvas& c, const SceneSpec& s) {
    const Spot p = object_spot(s, c.size());
    switch (s.concept[static_cast<int>(Category::object)]) {
        case 0: glint_key(c, p); break;
        case 1: rumbo_apple(c, p); break;
        case 2: shroomba(c, p); break;
        default:
            if (s.ball) ball(c, p, s.ball_color);
    }
}

std::string object_phrase(const SceneSpec& s) {
    const int k = s.concept[static_cast<int>(Category::object)];
    if (k >= 0) return " with a " + concepts_in(Category::object)[k]->trigger;
    return s.ball ? " with a ball" : "";
}

}  // namespace multilora::world
