// One drawing function per category (one file each), used by scene.cpp in this order: background,
// character, clothing, object, style. Sizes scale with the canvas.
#pragma once

#include "multilora/world/canvas.h"
#include "multilora/world/scene.h"

namespace multilora::world {

// The character's frame in pixels: its centre, half-size, and the top of its head.
struct BodyFrame {
    float cx, cy, r, top, half_width;
};
BodyFrame body_frame(const SceneSpec& s, int size);

void draw_background(Canvas& c, const SceneSpec& s);
void draw_character(Canvas& c, const SceneSpec& s);
void draw_clothing(Canvas& c, const SceneSpec& s);
void draw_object(Canvas& c, const SceneSpec& s);
void apply_style(Canvas& c, const SceneSpec& s);

// Caption phrases: the generic part when the category's choice is -1.
std::string character_phrase(const SceneSpec& s);
std::string clothing_phrase(const SceneSpec& s);
std::string object_phrase(const SceneSpec& s);
std::string background_phrase(const SceneSpec& s);
std::string style_phrase(const SceneSpec& s);

}  // namespace multilora::world
