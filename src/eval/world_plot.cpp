// The world scorer's plot: element recall against k, one line per method, with 95% interval bars.
#include <filesystem>
#include <map>

#include "multilora/batch/sheet.h"
#include "multilora/eval/world_scorer.h"
#include "multilora/io/atomic_file.h"
#include "multilora/io/png_writer.h"
#include "multilora/world/canvas.h"

using nlohmann::json;

namespace multilora::eval {
namespace {

constexpr int kWidth = 720, kHeight = 480;
constexpr float kLeft = 60, kRight = 520, kTop = 40, kBottom = 430;

const world::Rgb kMethodColors[] = {
    {0.0f, 0.0f, 0.0f},   {0.85f, 0.15f, 0.1f}, {0.1f, 0.35f, 0.9f}, {0.1f, 0.6f, 0.2f},    {0.6f, 0.2f, 0.7f},
    {0.95f, 0.55f, 0.0f}, {0.0f, 0.65f, 0.7f},  {0.55f, 0.35f, 0.15f}, {0.9f, 0.4f, 0.65f}, {0.5f, 0.5f, 0.5f}};

// recall mean and interval by method, then k (the first style's numeric ks).
using ScoresByMethod = std::map<std::string, std::map<int, std::array<double, 3>>>;

ScoresByMethod recall_series(const json& world, std::vector<int>& ks) {
    ScoresByMethod s;
    std::string style;
    for (const auto& g : world.at("groups")) {
        if (!g.at("k").is_number()) continue;
        if (style.empty()) style = g.at("style").get<std::string>();
        if (g.at("style") != style) continue;
        const int k = g.at("k").get<int>();
        const json& r = g.at("recall");
        const double mean = r.at("mean").get<double>();
        const json& ci = r.at("ci95");
        s[g.at("method").get<std::string>()][k] = {mean, ci.is_array() ? ci[0].get<double>() : mean,
                                                   ci.is_array() ? ci[1].get<double>() : mean};
        if (std::find(ks.begin(), ks.end(), k) == ks.end()) ks.push_back(k);
    }
    std::sort(ks.begin(), ks.end());
    return s;
}

void to_rgb8(const world::Rgb& c, uint8_t out[3]) {
    out[0] = static_cast<uint8_t>(255 * c.r), out[1] = static_cast<uint8_t>(255 * c.g), out[2] = static_cast<uint8_t>(255 * c.b);
}

}  // namespace

void write_world_recall_plot(const std::string& path, const json& world) {
    std::vector<int> ks;
    const ScoresByMethod series = recall_series(world, ks);
    auto xpos = [&](int k) {
        const size_t i = std::find(ks.begin(), ks.end(), k) - ks.begin();
        return ks.size() < 2 ? (kLeft + kRight) / 2 : kLeft + 20 + (kRight - kLeft - 40) * i / float(ks.size() - 1);
    };
    auto ypos = [&](double pct) { return kBottom - static_cast<float>(pct / 100) * (kBottom - kTop); };
    world::Canvas c(kWidth, {1, 1, 1});  // square; the plot uses its top kHeight rows
    for (int p = 0; p <= 100; p += 25) c.line({kLeft, ypos(p)}, {kRight, ypos(p)}, 1, {0.87f, 0.87f, 0.87f});
    c.line({kLeft, kTop}, {kLeft, kBottom}, 1.5f, {0, 0, 0});
    c.line({kLeft, kBottom}, {kRight, kBottom}, 1.5f, {0, 0, 0});
    const std::vector<std::string> methods = world.value("methods", std::vector<std::string>{});
    for (size_t m = 0; m < methods.size(); ++m) {
        auto it = series.find(methods[m]);
        if (it == series.end()) continue;
        const world::Rgb color = kMethodColors[m % std::size(kMethodColors)];
        const float dx = (static_cast<float>(m) - methods.size() / 2.f) * 2.5f;  // spread the interval bars
        const std::array<double, 3>* prev = nullptr;
        int prev_k = 0;
        for (const auto& [k, v] : it->second) {
            c.line({xpos(k) + dx, ypos(v[1])}, {xpos(k) + dx, ypos(v[2])}, 1, mix(color, {1, 1, 1}, 0.45f));
            if (prev) c.line({xpos(prev_k) + dx, ypos((*prev)[0])}, {xpos(k) + dx, ypos(v[0])}, 2.5f, color);
            c.circle(xpos(k) + dx, ypos(v[0]), 3.5f, color);
            prev = &v, prev_k = k;
        }
    }
    batch::Canvas out(kWidth, kHeight);
    const std::vector<uint8_t> rgb = c.to_rgb8();
    out.blit(0, 0, std::vector<uint8_t>(rgb.begin(), rgb.begin() + 3 * kWidth * kHeight), kWidth, kHeight);
    const uint8_t black[3] = {20, 20, 20};
    out.text(static_cast<int>(kLeft), 10, "element recall (percent, 95 pct interval) against k", 2, black);
    for (int p = 0; p <= 100; p += 25) out.text(14, static_cast<int>(ypos(p)) - 6, std::to_string(p), 2, black);
    for (int k : ks) out.text(static_cast<int>(xpos(k)) - 10, static_cast<int>(kBottom) + 10, "k=" + std::to_string(k), 2, black);
    for (size_t m = 0; m < methods.size(); ++m) {
        uint8_t col[3];
        to_rgb8(kMethodColors[m % std::size(kMethodColors)], col);
        const int y = static_cast<int>(kTop) + 10 + 24 * static_cast<int>(m);
        out.fill_rect(static_cast<int>(kRight) + 30, y + 4, 22, 6, col);
        out.text(static_cast<int>(kRight) + 60, y, methods[m], 2, col, kWidth - static_cast<int>(kRight) - 64);
    }
    io::ensure_writable_dir(std::filesystem::path(path).parent_path().string());
    io::write_png(path, out.rgb.data(), out.width, out.height);
}

}  // namespace multilora::eval
