// Comparison sheets: the images of one ComposLoRA set side by side (one column per method, one row per
// seed), each labelled with its method and the set's LoRA names, text drawn with stb_easy_font.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace multilora::batch {

struct SheetCell {
    std::string png_path;
    std::string heading;             // drawn large, e.g. "composite"
    std::vector<std::string> lines;  // drawn below it, e.g. the LoRA names
};

struct SheetSpec {
    std::string title;  // top line
    int columns = 1;
    std::vector<SheetCell> cells;  // row-major
};

// Returns the PNG bytes of the sheet. Images are scaled by whole factors so a cell is 256-512 px high.
// Throws RuntimeError when a cell's PNG cannot be read.
std::string render_sheet(const SheetSpec& spec);

// An 8-bit RGB canvas with stb_easy_font text (also used by tests).
struct Canvas {
    int width = 0, height = 0;
    std::vector<uint8_t> rgb;
    Canvas(int w, int h, uint8_t fill = 255);
    void fill_rect(int x, int y, int w, int h, const uint8_t color[3]);
    // Draws ASCII text (other bytes become '?') with its top-left corner at (x, y), `scale` pixels per font
    // unit; clipped to max_width when given (ending in ".."). Returns the drawn width.
    int text(int x, int y, const std::string& s, int scale, const uint8_t color[3], int max_width = -1);
    void blit(int x, int y, const std::vector<uint8_t>& src, int w, int h);
};

int text_width(const std::string& s, int scale);
constexpr int kTextLineHeight = 12;  // font units per line

}  // namespace multilora::batch
