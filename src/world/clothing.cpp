// Clothing, drawn on the character: the blip hat, the zigzag wrap, the moop scarf. No generic clothing.
#include "draw.h"

namespace multilora::world {

namespace {

void blip_hat(Canvas& c, const BodyFrame& f) {
    const Rgb black{0.08f, 0.08f, 0.1f}, red{0.85f, 0.1f, 0.1f};
    c.rect(f.cx - f.r * 0.6f, f.top - f.r * 0.1f, f.cx + f.r * 0.6f, f.top + f.r * 0.05f, black);
    c.rect(f.cx - f.r * 0.38f, f.top - f.r * 0.75f, f.cx + f.r * 0.38f, f.top - f.r * 0.05f, black);
    c.rect(f.cx - f.r * 0.38f, f.top - f.r * 0.28f, f.cx + f.r * 0.38f, f.top - f.r * 0.12f, red);
}

void zigzag_wrap(Canvas& c, const BodyFrame& f) {
    const Rgb yellow{1.f, 0.85f, 0.f};
    // Wide teeth and a thick band: each tooth spans about one latent (8 px) at 64 px, so it survives the VAE.
    const float y = f.cy + f.r * 0.35f, w = f.half_width * 0.95f;
    Point prev{f.cx - w, y};
    for (int i = 1; i <= 4; ++i) {
        const Point next{f.cx - w + 2 * w * i / 4.f, y + ((i % 2) ? -f.r * 0.3f : f.r * 0.3f)};
        c.line(prev, next, f.r * 0.32f, yellow);
        prev = next;
    }
}

void moop_scarf(Canvas& c, const BodyFrame& f) {
    const Rgb blue{0.1f, 0.3f, 0.85f}, white{1, 1, 1};
    // A thick band and a wide hanging end with two broad white stripes: stripes thinner than a latent (8 px at
    // 64 px) did not survive the VAE's round trip.
    const float y0 = f.cy + f.r * 0.05f, y1 = f.cy + f.r * 0.4f;
    c.rect(f.cx - f.half_width * 0.95f, y0, f.cx + f.half_width * 0.95f, y1, blue);
    const float x0 = f.cx + f.half_width * 0.15f, x1 = f.cx + f.half_width * 0.65f;
    c.rect(x0, y1, x1, y1 + f.r * 0.85f, blue);
    for (int i = 0; i < 2; ++i) c.rect(x0, y1 + f.r * (0.12f + 0.38f * i), x1, y1 + f.r * (0.3f + 0.38f * i), white);
}

}  // namespace

void draw_clothing(Canvas& c, const SceneSpec& s) {
    const BodyFrame f = body_frame(s, c.size());
    switch (s.concept[static_cast<int>(Category::clothing)]) {
        case 0: blip_hat(c, f); break;
        case 1: zigzag_wrap(c, f); break;
        case 2: moop_scarf(c, f); break;
        default: break;
    }
}

std::string clothing_phrase(const SceneSpec& s) {
    const int k = s.concept[static_cast<int>(Category::clothing)];
    return k >= 0 ? " wearing a " + concepts_in(Category::clothing)[k]->trigger : "";
}

}  // namespace multilora::world
