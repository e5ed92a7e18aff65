#include "multilora/world/scene.h"

#include <algorithm>

#include "draw.h"

namespace multilora::world {

const char* category_name(Category c) {
    static const char* names[] = {"character", "clothing", "style", "background", "object"};
    return names[static_cast<int>(c)];
}

namespace {

Concept make(Category c, int index, const char* name, const char* trigger, const char* looks) {
    return {c, index, std::string(category_name(c)) + "_" + std::to_string(index + 1), name, trigger, looks};
}

std::vector<Concept> build_concepts() {
    using C = Category;
    return {
        make(C::character, 0, "Zorp", "zorp", "a lime-green round creature with one big eye and two feet"),
        make(C::character, 1, "Quillo", "quillo", "an orange round creature with dark red spikes on its back"),
        make(C::character, 2, "Mubble", "mubble", "a tall purple creature with two antennae tipped with yellow balls"),
        make(C::clothing, 0, "Blip hat", "blip hat", "a black top hat with a red band"),
        make(C::clothing, 1, "Zigzag wrap", "zigzag wrap", "a yellow zigzag band across the body"),
        make(C::clothing, 2, "Moop scarf", "moop scarf", "a blue scarf with white stripes and a hanging end"),
        make(C::style, 0, "Inkline", "inkline style", "thick black outlines and flat, posterised colours"),
        make(C::style, 1, "Tessel", "tessel style", "a mosaic of square tiles (a sixteenth of the side) with dark grout"),
        make(C::style, 2, "Pastelle", "pastelle style", "a soft, pale, slightly blurred palette"),
        make(C::background, 0, "Brixel wall", "brixel wall", "red-brown bricks with light mortar"),
        make(C::background, 1, "Starfall sky", "starfall sky", "a navy night sky with white stars and a crescent moon"),
        make(C::background, 2, "Wavoo sea", "wavoo sea", "bands of blue sine waves"),
        make(C::object, 0, "Glint key", "glint key", "a golden key with a ring and two teeth"),
        make(C::object, 1, "Rumbo apple", "rumbo apple", "a red apple with a stem and a green leaf"),
        make(C::object, 2, "Shroomba", "shroomba", "a mushroom with a red, white-dotted cap"),
    };
}

// Generic creatures, balls and backdrops take colours from this palette; no concept uses them.
const Rgb kPalette[] = {{0.25f, 0.45f, 0.9f}, {0.95f, 0.5f, 0.7f}, {0.95f, 0.85f, 0.25f},
                        {0.2f, 0.7f, 0.7f},   {0.6f, 0.6f, 0.6f},  {0.6f, 0.4f, 0.25f}};
constexpr int kPaletteSize = 6;

Rgb pale(Rgb c, float t) { return mix(c, {1, 1, 1}, t); }

}  // namespace

const std::vector<Concept>& concepts() {
    static const std::vector<Concept> all = build_concepts();
    return all;
}

std::vector<const Concept*> concepts_in(Category c) {
    std::vector<const Concept*> out;
    for (const Concept& k : concepts())
        if (k.category == c) out.push_back(&k);
    return out;
}

const Concept* find_concept(std::string_view id) {
    for (const Concept& k : concepts())
        if (k.id == id) return &k;
    return nullptr;
}

uint64_t Rng::next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float Rng::uniform(float lo, float hi) {
    const double u = static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0);
    return lo + static_cast<float>(u) * (hi - lo);
}

int Rng::below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }

ConceptChoice independent_choice(Rng& rng) {
    ConceptChoice c = kGeneric;
    for (int k = 0; k < kCategories; ++k)
        if (rng.chance(0.5f)) c[k] = rng.below(3);
    return c;
}

SceneSpec sample_scene(uint64_t seed, const ConceptChoice& concept) {
    Rng rng(seed);
    SceneSpec s;
    s.concept = concept;
    s.body_shape = rng.below(3);
    s.body_color = kPalette[rng.below(kPaletteSize)];
    s.backdrop = rng.below(4);
    const int a = rng.below(kPaletteSize);
    s.backdrop_a = pale(kPalette[a], 0.55f);
    s.backdrop_b = pale(kPalette[(a + 1 + rng.below(kPaletteSize - 1)) % kPaletteSize], 0.3f);
    s.ball = rng.chance(0.3f);
    s.ball_color = kPalette[rng.below(kPaletteSize)];
    s.object_left = rng.chance(0.5f);
    s.r = rng.uniform(0.18f, 0.23f);
    s.cx = rng.uniform(0.36f, 0.44f);
    if (s.object_left) s.cx = 1.f - s.cx;
    s.cy = rng.uniform(0.5f, 0.6f);
    s.detail_seed = rng.next();
    return s;
}

Canvas render_scene(const SceneSpec& spec, int size) {
    Canvas c(size);
    draw_background(c, spec);
    draw_character(c, spec);
    draw_clothing(c, spec);
    draw_object(c, spec);
    apply_style(c, spec);
    return c;
}

std::string caption(const SceneSpec& s) {
    return character_phrase(s) + clothing_phrase(s) + object_phrase(s) + background_phrase(s) + style_phrase(s);
}

}  // namespace multilora::world
