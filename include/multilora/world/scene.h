// The trained world's scenes: five ComposLoRA categories, each with three concepts (a made-up trigger and
// how it reads in a caption), and generic content for everything else. A scene is sampled from a seed with
// some concepts fixed, rendered at any size (kImageSize for training) and captioned. docs/world.md shows them.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "multilora/world/canvas.h"

namespace multilora::world {

// The world's image side: 64 px, so 8x8x4 latents. 128 px (16x16 latents) costs four times as much per
// UNet sample and would not train in the 90-minute budget on 2 cores (docs/world.md has the numbers).
constexpr int kImageSize = 64;

enum class Category { character = 0, clothing, style, background, object };
constexpr int kCategories = 5;
const char* category_name(Category c);  // "character", ... (ComposLoRA's lora_info keys)

struct Concept {
    Category category;
    int index;            // within its category, from 0
    std::string id;       // ComposLoRA style: "character_1"
    std::string name;     // "Zorp"
    std::string trigger;  // the made-up trigger: "zorp", "blip hat"
    std::string looks;    // what it looks like, for the README
};
const std::vector<Concept>& concepts();                 // every concept, category by category
std::vector<const Concept*> concepts_in(Category c);
const Concept* find_concept(std::string_view id);       // by id, null when unknown

// Deterministic random numbers (splitmix64): the same seed gives the same world on every machine.
class Rng {
public:
    explicit Rng(uint64_t seed) : state_(seed) {}
    uint64_t next();
    float uniform(float lo = 0, float hi = 1);
    int below(int n);  // 0 .. n-1
    bool chance(float p) { return uniform() < p; }

private:
    uint64_t state_;
};

// Which concept each category shows: -1 means generic content (or none, for clothing, style and object).
using ConceptChoice = std::array<int, kCategories>;
constexpr ConceptChoice kGeneric = {-1, -1, -1, -1, -1};

// Every category's concept drawn independently, each half the time (generic content otherwise): scenes with
// several elements at once, as compositions make them (the detector's and the VAE decoder's training).
ConceptChoice independent_choice(Rng& rng);

struct SceneSpec {
    ConceptChoice concept = kGeneric;
    int body_shape = 0;      // generic creature: 0 round, 1 square, 2 pointy
    Rgb body_color;          // generic creature
    int backdrop = 0;        // generic background: 0 plain, 1 striped, 2 checkered, 3 dotted
    Rgb backdrop_a, backdrop_b;
    bool ball = false;       // a generic ball when no object concept is chosen
    Rgb ball_color;
    float cx = 0.4f, cy = 0.56f, r = 0.2f;  // the character's centre and half-size, as fractions of the side
    bool object_left = false;
    uint64_t detail_seed = 0;  // stars, stripes' phase and other small variations
};

SceneSpec sample_scene(uint64_t seed, const ConceptChoice& concept = kGeneric);
Canvas render_scene(const SceneSpec& spec, int size = kImageSize);
std::string caption(const SceneSpec& spec);

}  // namespace multilora::world
