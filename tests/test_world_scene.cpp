// The trained world's renderer: its concepts, captions, deterministic scenes, and shapes whose areas are
// worked by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "multilora/world/canvas.h"
#include "multilora/world/scene.h"

using namespace multilora::world;

namespace {

double covered(const Canvas& c) {  // sum over pixels of 1 - red channel: the painted area on white
    double s = 0;
    for (int y = 0; y < c.size(); ++y)
        for (int x = 0; x < c.size(); ++x) s += 1.0 - c.at(x, y).r;
    return s;
}

int differing_pixels(const Canvas& a, const Canvas& b) {
    int n = 0;
    for (int y = 0; y < a.size(); ++y)
        for (int x = 0; x < a.size(); ++x) {
            const Rgb p = a.at(x, y), q = b.at(x, y);
            n += std::fabs(p.r - q.r) + std::fabs(p.g - q.g) + std::fabs(p.b - q.b) > 0.05f;
        }
    return n;
}

Canvas render_with(uint64_t seed, Category cat, int index) {
    ConceptChoice choice = kGeneric;
    choice[static_cast<int>(cat)] = index;
    return render_scene(sample_scene(seed, choice));
}

}  // namespace

TEST(WorldRng, SplitMix64ReferenceValues) {
    // Vigna's splitmix64.c from state 0: the first three outputs.
    Rng rng(0);
    EXPECT_EQ(rng.next(), 0xE220A8397B1DCDAFull);
    EXPECT_EQ(rng.next(), 0x6E789E6AA1B965F4ull);
    EXPECT_EQ(rng.next(), 0x06C45D188009454Full);
}

TEST(WorldCanvas, AreasMatchTheFormulas) {
    Canvas disc(64, {1, 1, 1});
    disc.circle(32, 32, 10, {0, 0, 0});
    EXPECT_NEAR(covered(disc), M_PI * 100, 2.0);  // πr², anti-aliased edges within a couple of pixels
    Canvas square(64, {1, 1, 1});
    square.rect(10, 10, 30, 20, {0, 0, 0});
    EXPECT_DOUBLE_EQ(covered(square), 200.0);  // 20 x 10, on pixel edges: exact
    Canvas tri(64, {1, 1, 1});
    // (A hypotenuse through the 4x4 sample points would count those points as outside: 6 of 16 instead of
    // 8 of 16 on each diagonal pixel. A slope of 3/4 meets them only now and then.)
    tri.polygon({{2, 2}, {42, 2}, {2, 32}}, {0, 0, 0});
    EXPECT_NEAR(covered(tri), 600.0, 2.0);  // ½·40·30
    Canvas half(8, {1, 1, 1});
    half.rect(0, 0, 8, 0.5f, {0, 0, 0});  // half a pixel row: 8 pixels half covered
    EXPECT_NEAR(covered(half), 4.0, 1e-6);
}

TEST(WorldConcepts, FiveCategoriesOfThreeWithUniqueIdsAndTriggers) {
    EXPECT_EQ(concepts().size(), 15u);
    std::set<std::string> ids, triggers;
    for (const Concept& c : concepts()) {
        ids.insert(c.id);
        triggers.insert(c.trigger);
        EXPECT_EQ(c.id, std::string(category_name(c.category)) + "_" + std::to_string(c.index + 1));
    }
    EXPECT_EQ(ids.size(), 15u);
    EXPECT_EQ(triggers.size(), 15u);
    for (Category c : {Category::character, Category::clothing, Category::style, Category::background, Category::object})
        EXPECT_EQ(concepts_in(c).size(), 3u);
    EXPECT_EQ(find_concept("object_2")->trigger, "rumbo apple");
    EXPECT_EQ(find_concept("object_9"), nullptr);
}

TEST(WorldScene, CaptionsNameTheConceptsAndOnlyThem) {
    const SceneSpec generic = sample_scene(5);
    const std::string g = caption(generic);
    EXPECT_NE(g.find("creature"), std::string::npos) << g;
    EXPECT_NE(g.find("background"), std::string::npos) << g;
    for (const Concept& c : concepts()) EXPECT_EQ(g.find(c.trigger), std::string::npos) << g;
    const SceneSpec all = sample_scene(5, {1, 0, 2, 0, 1});
    EXPECT_EQ(caption(all), "quillo wearing a blip hat with a rumbo apple on a brixel wall, pastelle style");
}

TEST(WorldScene, SameSeedSameImage) {
    const auto a = render_scene(sample_scene(1234, {0, 1, -1, 2, 0})).to_rgb8();
    const auto b = render_scene(sample_scene(1234, {0, 1, -1, 2, 0})).to_rgb8();
    EXPECT_EQ(a, b);
    const auto c = render_scene(sample_scene(1235, {0, 1, -1, 2, 0})).to_rgb8();
    EXPECT_NE(a, c);
}

TEST(WorldScene, EachConceptChangesThePictureWhereItShould) {
    for (uint64_t seed : {3, 17, 99}) {
        const Canvas base = render_scene(sample_scene(seed));
        const int n = base.size() * base.size();
        for (int k = 0; k < 3; ++k) {
            // Characters and clothing change part of the picture; objects a small part; backgrounds and
            // styles most of it.
            const int ch = differing_pixels(base, render_with(seed, Category::character, k));
            const int cl = differing_pixels(base, render_with(seed, Category::clothing, k));
            const int ob = differing_pixels(base, render_with(seed, Category::object, k));
            const int bg = differing_pixels(base, render_with(seed, Category::background, k));
            const int st = differing_pixels(base, render_with(seed, Category::style, k));
            EXPECT_GT(ch, n / 40) << seed << " character " << k;
            EXPECT_LT(ch, n / 3) << seed << " character " << k;
            EXPECT_GT(cl, n / 200) << seed << " clothing " << k;
            EXPECT_LT(cl, n / 8) << seed << " clothing " << k;
            EXPECT_GT(ob, n / 200) << seed << " object " << k;
            EXPECT_LT(ob, n / 10) << seed << " object " << k;
            EXPECT_GT(bg, n / 2) << seed << " background " << k;
            EXPECT_GT(st, n / 5) << seed << " style " << k;
        }
    }
}

// A render does not depend on the compiler: every random draw is sequenced (a function's arguments are not;
// GCC evaluates them right to left, clang left to right, and the stars of the sky once differed). The value was
// written by the GCC build, with the world that ships; the sanitizer build, compiled by clang, checks it.
TEST(WorldScene, RendersDoNotDependOnTheCompiler) {
    ConceptChoice sky = kGeneric;
    sky[static_cast<int>(Category::background)] = 1;  // starfall sky: 40 stars of random place and size
    const std::vector<uint8_t> px = render_scene(sample_scene(12345, sky)).to_rgb8();
    uint64_t weighted = 0;
    for (size_t i = 0; i < px.size(); ++i) weighted += px[i] * (i % 251 + 1);
    EXPECT_EQ(weighted, 72433899u);
}
