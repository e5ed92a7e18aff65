#include "multilora/batch/sheet.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "multilora/io/atomic_file.h"
#include "multilora/io/png_writer.h"
#include "multilora/util/error.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb_easy_font.h>
#pragma GCC diagnostic pop

namespace multilora::batch {
namespace {

std::string printable(const std::string& s) {
    std::string out = s;
    for (char& c : out)
        if (static_cast<unsigned char>(c) < 32 || static_cast<unsigned char>(c) > 126) c = '?';
    return out;
}

struct Image {
    int w = 0, h = 0;
    std::vector<uint8_t> rgb;
};

// Whole-factor scaling: nearest-neighbour up, box-filter down.
Image rescale(const Image& src, int up, int down) {
    Image out;
    if (down > 1) {
        out.w = std::max(1, src.w / down);
        out.h = std::max(1, src.h / down);
        out.rgb.assign(size_t(out.w) * out.h * 3, 0);
        for (int y = 0; y < out.h; ++y)
            for (int x = 0; x < out.w; ++x)
                for (int ch = 0; ch < 3; ++ch) {
                    int sum = 0, n = 0;
                    for (int dy = 0; dy < down; ++dy)
                        for (int dx = 0; dx < down; ++dx) {
                            int sy = y * down + dy, sx = x * down + dx;
                            if (sy >= src.h || sx >= src.w) continue;
                            sum += src.rgb[(size_t(sy) * src.w + sx) * 3 + ch];
                            ++n;
                        }
                    out.rgb[(size_t(y) * out.w + x) * 3 + ch] = static_cast<uint8_t>((sum + n / 2) / std::max(1, n));
                }
        return out;
    }
    if (up <= 1) return src;
    out.w = src.w * up;
    out.h = src.h * up;
    out.rgb.resize(size_t(out.w) * out.h * 3);
    for (int y = 0; y < out.h; ++y)
        for (int x = 0; x < out.w; ++x)
            std::memcpy(&out.rgb[(size_t(y) * out.w + x) * 3], &src.rgb[(size_t(y / up) * src.w + x / up) * 3], 3);
    return out;
}

const uint8_t kBlack[3] = {20, 20, 20};
const uint8_t kGrey[3] = {90, 90, 90};
const uint8_t kPanel[3] = {235, 235, 235};

}  // namespace

int text_width(const std::string& s, int scale) {
    std::string t = printable(s);
    return stb_easy_font_width(t.data()) * scale;
}

Canvas::Canvas(int w, int h, uint8_t fill) : width(w), height(h), rgb(size_t(w) * h * 3, fill) {}

void Canvas::fill_rect(int x, int y, int w, int h, const uint8_t color[3]) {
    int x0 = std::max(0, x), y0 = std::max(0, y), x1 = std::min(width, x + w), y1 = std::min(height, y + h);
    for (int yy = y0; yy < y1; ++yy)
        for (int xx = x0; xx < x1; ++xx) std::memcpy(&rgb[(size_t(yy) * width + xx) * 3], color, 3);
}

int Canvas::text(int x, int y, const std::string& s_in, int scale, const uint8_t color[3], int max_width) {
    std::string s = printable(s_in);
    if (max_width >= 0 && text_width(s, scale) > max_width) {
        while (!s.empty() && text_width(s + "..", scale) > max_width) s.pop_back();
        s += "..";
        if (text_width(s, scale) > max_width) return 0;
    }
    // stb_easy_font emits axis-aligned quads (4 vertices of 16 bytes: x, y, z floats and RGBA).
    std::vector<char> buf(s.size() * 300 + 64);
    const int quads = stb_easy_font_print(0, 0, s.data(), nullptr, buf.data(), static_cast<int>(buf.size()));
    for (int q = 0; q < quads; ++q) {
        float xs[4], ys[4];
        for (int v = 0; v < 4; ++v) {
            const char* p = buf.data() + (q * 4 + v) * 16;
            std::memcpy(&xs[v], p, 4);
            std::memcpy(&ys[v], p + 4, 4);
        }
        const float qx0 = *std::min_element(xs, xs + 4), qx1 = *std::max_element(xs, xs + 4);
        const float qy0 = *std::min_element(ys, ys + 4), qy1 = *std::max_element(ys, ys + 4);
        const int px0 = x + static_cast<int>(std::lround(qx0 * scale)), px1 = x + static_cast<int>(std::lround(qx1 * scale));
        const int py0 = y + static_cast<int>(std::lround(qy0 * scale)), py1 = y + static_cast<int>(std::lround(qy1 * scale));
        fill_rect(px0, py0, px1 - px0, py1 - py0, color);
    }
    return text_width(s, scale);
}

void Canvas::blit(int x, int y, const std::vector<uint8_t>& src, int w, int h) {
    for (int yy = 0; yy < h; ++yy) {
        const int ty = y + yy;
        if (ty < 0 || ty >= height) continue;
        for (int xx = 0; xx < w; ++xx) {
            const int tx = x + xx;
            if (tx < 0 || tx >= width) continue;
            std::memcpy(&rgb[(size_t(ty) * width + tx) * 3], &src[(size_t(yy) * w + xx) * 3], 3);
        }
    }
}

std::string render_sheet(const SheetSpec& spec) {
    if (spec.cells.empty()) throw RuntimeError("a comparison sheet needs at least one image");
    const int columns = std::max(1, std::min<int>(spec.columns, static_cast<int>(spec.cells.size())));
    const int rows = (static_cast<int>(spec.cells.size()) + columns - 1) / columns;

    std::vector<Image> images;
    for (const auto& cell : spec.cells) {
        Image im;
        std::string bytes = io::read_file(cell.png_path);
        try {
            im.rgb = io::decode_png_rgb(bytes, &im.w, &im.h);
        } catch (const std::exception& e) {
            throw RuntimeError("cannot read '" + cell.png_path + "' for a comparison sheet: " + e.what());
        }
        // A cell 256..512 px high: small images grow by a whole factor, large ones shrink by one.
        const int up = im.h < 256 ? (256 + im.h - 1) / im.h : 1;
        const int down = im.h > 512 ? (im.h + 511) / 512 : 1;
        images.push_back(rescale(im, up, down));
    }
    int img_w = 0, img_h = 0;
    size_t max_lines = 0;
    for (size_t i = 0; i < images.size(); ++i) {
        img_w = std::max(img_w, images[i].w);
        img_h = std::max(img_h, images[i].h);
        max_lines = std::max(max_lines, spec.cells[i].lines.size());
    }
    const int pad = 8;
    const int cell_w = std::max(img_w, 200);
    // Label lines at scale 2 when every line fits the cell, else scale 1 (clipped).
    int line_scale = 2;
    for (const auto& cell : spec.cells)
        for (const auto& l : cell.lines)
            if (text_width(l, 2) > cell_w - 2 * pad) line_scale = 1;
    const int heading_h = kTextLineHeight * 2 + 4;
    const int label_h = pad + heading_h + static_cast<int>(max_lines) * kTextLineHeight * line_scale + pad;
    const int cell_h = img_h + label_h;
    const int title_h = spec.title.empty() ? 0 : kTextLineHeight * 2 + 2 * pad;
    const int width = pad + columns * (cell_w + pad);
    const int height = title_h + pad + rows * (cell_h + pad);

    Canvas canvas(width, height, 255);
    if (!spec.title.empty()) canvas.text(pad, pad, spec.title, 2, kBlack, width - 2 * pad);
    for (size_t i = 0; i < spec.cells.size(); ++i) {
        const int col = static_cast<int>(i) % columns, row = static_cast<int>(i) / columns;
        const int x = pad + col * (cell_w + pad);
        const int y = title_h + pad + row * (cell_h + pad);
        canvas.fill_rect(x, y, cell_w, cell_h, kPanel);
        const Image& im = images[i];
        canvas.blit(x + (cell_w - im.w) / 2, y, im.rgb, im.w, im.h);
        int ty = y + img_h + pad;
        canvas.text(x + pad, ty, spec.cells[i].heading, 2, kBlack, cell_w - 2 * pad);
        ty += heading_h;
        for (const auto& line : spec.cells[i].lines) {
            canvas.text(x + pad, ty, line, line_scale, kGrey, cell_w - 2 * pad);
            ty += kTextLineHeight * line_scale;
        }
    }
    return io::encode_png(canvas.rgb.data(), canvas.width, canvas.height, {{"Software", "multilora batch"}});
}

}  // namespace multilora::batch
