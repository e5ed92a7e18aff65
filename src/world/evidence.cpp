#include "multilora/world/evidence.h"

#include <torch/torch.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "multilora/batch/sheet.h"
#include "multilora/compose/registry.h"
#include "multilora/io/atomic_file.h"
#include "multilora/io/png_writer.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/pipeline/generation.h"
#include "multilora/pipeline/model_loader.h"
#include "multilora/world/canvas.h"
#include "multilora/world/detector.h"
#include "multilora/world/scene.h"

namespace fs = std::filesystem;

namespace multilora::world {

namespace {

// Attaching a LoRA logs a line; 2 x 15 x seeds of them would bury the progress bar. Warnings still show.
struct QuietLogs {
    spdlog::level::level_enum level = spdlog::get_level();
    QuietLogs() { spdlog::set_level(std::max(level, spdlog::level::warn)); }
    ~QuietLogs() { spdlog::set_level(level); }
};

// A kImageSize image shown at kTile px (nearest neighbour: every pixel the model drew stays visible).
std::vector<uint8_t> enlarged(const std::vector<uint8_t>& rgb, int size, int tile) {
    std::vector<uint8_t> out(static_cast<size_t>(tile) * tile * 3);
    for (int y = 0; y < tile; ++y)
        for (int x = 0; x < tile; ++x)
            for (int c = 0; c < 3; ++c)
                out[(static_cast<size_t>(y) * tile + x) * 3 + c] = rgb[(static_cast<size_t>(y * size / tile) * size + x * size / tile) * 3 + c];
    return out;
}

// A sheet of 128 px tiles, `cols` per row, each row labelled on its left.
struct Sheet {
    static constexpr int kTile = 128, kLabel = 150;
    int cols;
    batch::Canvas canvas;
    Sheet(int cols_, int rows) : cols(cols_), canvas(kLabel + kTile * cols_, kTile * rows) {}
    void put(int row, int col, const std::vector<uint8_t>& rgb) {
        canvas.blit(kLabel + col * kTile, row * kTile, enlarged(rgb, kImageSize, kTile), kTile, kTile);
    }
    void label(int row, const std::string& line1, const std::string& line2) {
        static const uint8_t black[3] = {20, 20, 20}, grey[3] = {90, 90, 90};
        canvas.text(6, row * kTile + 44, line1, 2, black, kLabel - 10);
        canvas.text(6, row * kTile + 72, line2, 1, grey, kLabel - 10);
    }
    void write(const std::string& path) const { io::write_png(path, canvas.rgb.data(), canvas.width, canvas.height); }
};

struct Generator {
    pipeline::StableDiffusionModel model;
    EvidenceOptions o;
    static Generator open(const std::string& world_dir, const EvidenceOptions& o) {
        pipeline::LoadOptions load;
        load.model_path = (fs::path(world_dir) / "world-sd15.safetensors").string();
        return Generator{pipeline::load_stable_diffusion(load), o};
    }
    std::vector<uint8_t> image(const std::string& prompt, uint64_t seed, const std::string& lora) {
        pipeline::GenerationRequest r;
        r.prompt = prompt;
        r.steps = o.steps;
        r.guidance_scale = o.guidance_scale;
        r.seed = seed;
        r.width = r.height = kImageSize;
        std::unique_ptr<lora::AdapterSet> adapters;
        if (!lora.empty())
            adapters = std::make_unique<lora::AdapterSet>(*model.unet, *model.text_encoder, model.unet->config().to_json(),
                                                          std::vector<lora::LoraSpec>{{lora, 1.0}}, 1.0, model.dtype, model.device);
        const std::string method = lora.empty() ? "none" : "merge";
        auto m = compose::registry().create(method, {pipeline::model_parts(model), adapters.get(), {}, compose::default_args(method)});
        return pipeline::generate(model, r, m.get()).images.at(0);
    }
};

}  // namespace

std::string write_concept_sheet(const std::string& path, int seeds, uint64_t first_seed) {
    io::ensure_writable_dir(fs::path(path).parent_path().string());
    Sheet sheet(seeds, static_cast<int>(concepts().size()) + 1);
    sheet.label(0, "generic", "base data");
    for (int s = 0; s < seeds; ++s) sheet.put(0, s, render_scene(sample_scene(first_seed + s)).to_rgb8());
    int row = 1;
    for (const Concept& c : concepts()) {
        ConceptChoice choice = kGeneric;
        choice[static_cast<int>(c.category)] = c.index;
        sheet.label(row, c.trigger, category_name(c.category));
        for (int s = 0; s < seeds; ++s) sheet.put(row, s, render_scene(sample_scene(first_seed + 100 * row + s, choice)).to_rgb8());
        ++row;
    }
    sheet.write(path);
    return path;
}

EvidenceFiles write_evidence(const std::string& world_dir, const std::string& out_dir, const EvidenceOptions& o,
                             const std::function<void(int, int)>& on_image) {
    io::ensure_writable_dir(out_dir);
    QuietLogs quiet;
    Generator gen = Generator::open(world_dir, o);
    const int total = 2 * o.seeds + static_cast<int>(concepts().size()) * 2 * o.seeds;
    int done = 0;
    auto tick = [&] { if (on_image) on_image(++done, total); };
    EvidenceFiles files;
    Sheet base(o.seeds, 2);
    base.label(0, "base model", "generic prompts");
    base.label(1, "base model", "generic prompts");
    for (int i = 0; i < 2 * o.seeds; ++i) {
        const uint64_t seed = o.first_seed + static_cast<uint64_t>(i);
        base.put(i / o.seeds, i % o.seeds, gen.image(caption(sample_scene(seed)), seed, ""));
        tick();
    }
    files.base_grid = (fs::path(out_dir) / "samples.png").string();
    base.write(files.base_grid);
    for (int c = 0; c < kCategories; ++c) {
        const auto list = concepts_in(static_cast<Category>(c));
        Sheet sheet(o.seeds, 2 * static_cast<int>(list.size()));
        for (size_t k = 0; k < list.size(); ++k) {
            ConceptChoice choice = kGeneric;
            choice[c] = list[k]->index;
            const std::string lora = (fs::path(world_dir) / "loras" / (list[k]->id + ".safetensors")).string();
            sheet.label(2 * static_cast<int>(k), list[k]->trigger, "with its LoRA");
            sheet.label(2 * static_cast<int>(k) + 1, list[k]->trigger, "same prompt, no LoRA");
            for (int s = 0; s < o.seeds; ++s) {
                const uint64_t seed = o.first_seed + 100 + static_cast<uint64_t>(s);
                const std::string prompt = caption(sample_scene(seed, choice));
                sheet.put(2 * static_cast<int>(k), s, gen.image(prompt, seed, lora));
                tick();
                sheet.put(2 * static_cast<int>(k) + 1, s, gen.image(prompt, seed, ""));
                tick();
            }
        }
        files.lora_sheets.push_back((fs::path(out_dir) / ("loras-" + std::string(category_name(static_cast<Category>(c))) + ".png")).string());
        sheet.write(files.lora_sheets.back());
    }
    return files;
}

WorldCheck check_world(const std::string& world_dir, const ElementDetector& detector, const EvidenceOptions& o, int seeds,
                       const std::function<void(int, int)>& on_image) {
    QuietLogs quiet;
    Generator gen = Generator::open(world_dir, o);
    const int total = 2 * seeds + static_cast<int>(concepts().size()) * 2 * seeds;
    int done = 0;
    auto tick = [&] { if (on_image) on_image(++done, total); };
    WorldCheck check;
    int in_world = 0;
    for (int i = 0; i < 2 * seeds; ++i) {
        const uint64_t seed = o.first_seed + 5000 + static_cast<uint64_t>(i);
        in_world += detector.detect_rgb(gen.image(caption(sample_scene(seed)), seed, ""), kImageSize, kImageSize).is_in_world();
        tick();
    }
    check.base_images = 2 * seeds;
    check.base_in_world = double(in_world) / check.base_images;
    for (const Concept& c : concepts()) {
        ConceptChoice choice = kGeneric;
        const int k = static_cast<int>(c.category);
        choice[k] = c.index;
        const std::string lora = (fs::path(world_dir) / "loras" / (c.id + ".safetensors")).string();
        int with = 0, without = 0;
        for (int s = 0; s < seeds; ++s) {
            const uint64_t seed = o.first_seed + 6000 + 100 * static_cast<uint64_t>(k) + static_cast<uint64_t>(s);
            const std::string prompt = caption(sample_scene(seed, choice));
            with += detector.detect_rgb(gen.image(prompt, seed, lora), kImageSize, kImageSize).found[k] == c.index;
            tick();
            without += detector.detect_rgb(gen.image(prompt, seed, ""), kImageSize, kImageSize).found[k] == c.index;
            tick();
        }
        check.loras.push_back({c.id, c.trigger, seeds, double(with) / seeds, double(without) / seeds});
    }
    return check;
}

std::string WorldCheck::markdown() const {
    std::string md = "| concept | trigger | images | found with its LoRA | found without (same prompt and seed) |\n| --- | --- | --- | --- | --- |\n";
    char line[256];
    for (const LoraCheck& l : loras) {
        std::snprintf(line, sizeof line, "| `%s` | %s | %d | %.0f%% | %.0f%% |\n", l.id.c_str(), l.trigger.c_str(), l.images,
                      100 * l.with_lora, 100 * l.without_lora);
        md += line;
    }
    std::snprintf(line, sizeof line, "\nBase model, generic prompts: %.0f%% of %d images in-world.\n", 100 * base_in_world, base_images);
    return md + line;
}

namespace {

std::vector<double> smoothed(const std::vector<double>& v) {
    const int w = std::max<int>(1, static_cast<int>(v.size()) / 50);
    std::vector<double> out(v.size());
    double sum = 0;
    for (size_t i = 0; i < v.size(); ++i) {
        sum += v[i];
        if (i >= static_cast<size_t>(w)) sum -= v[i - w];
        out[i] = sum / std::min<double>(static_cast<double>(i + 1), w);
    }
    return out;
}

}  // namespace

void write_loss_plot(const std::string& path, const std::map<std::string, std::vector<double>>& curves) {
    const float n = 512, left = 64, right = 500, top = 40, bottom = 470;
    double lo = 1e30, hi = -1e30;
    for (const auto& [name, v] : curves)
        for (double x : smoothed(v)) if (x > 0) lo = std::min(lo, std::log10(x)), hi = std::max(hi, std::log10(x));
    lo = std::floor(lo), hi = std::ceil(std::max(hi, lo + 1));
    auto ypos = [&](double e) { return bottom - static_cast<float>((e - lo) / (hi - lo)) * (bottom - top); };
    Canvas c(static_cast<int>(n), {1, 1, 1});
    for (double e = lo; e <= hi; e += 1) c.line({left, ypos(e)}, {right, ypos(e)}, 1, {0.85f, 0.85f, 0.85f});
    c.line({left, top}, {left, bottom}, 1.5f, {0, 0, 0});
    c.line({left, bottom}, {right, bottom}, 1.5f, {0, 0, 0});
    const Rgb vae{0.85f, 0.15f, 0.1f}, decoder{0.95f, 0.6f, 0.05f}, unet{0.1f, 0.3f, 0.9f}, lora{0.55f, 0.55f, 0.55f};
    for (const auto& [name, v] : curves) {
        const Rgb color = name == "vae" ? vae : name == "decoder" ? decoder : name == "unet" ? unet : lora;
        const std::vector<double> s = smoothed(v);
        for (size_t i = 1; i < s.size(); ++i) {
            if (s[i - 1] <= 0 || s[i] <= 0) continue;
            const float x0 = left + (right - left) * (i - 1) / (s.size() - 1), x1 = left + (right - left) * i / (s.size() - 1);
            c.line({x0, ypos(std::log10(s[i - 1]))}, {x1, ypos(std::log10(s[i]))}, 2, color);
        }
    }
    batch::Canvas out(static_cast<int>(n), static_cast<int>(n));
    out.blit(0, 0, c.to_rgb8(), static_cast<int>(n), static_cast<int>(n));
    const uint8_t black[3] = {20, 20, 20}, red[3] = {217, 38, 25}, orange[3] = {242, 153, 13}, blue[3] = {25, 77, 230},
                  grey[3] = {140, 140, 140};
    for (double e = lo; e <= hi; e += 1) out.text(4, static_cast<int>(ypos(e)) - 6, "1e" + std::to_string(static_cast<int>(e)), 2, black);
    const char* ticks[] = {"0", "1/4", "1/2", "3/4", "end"};  // the font has no '%'
    for (int q = 0; q <= 4; ++q) {
        const int x = static_cast<int>(left + (right - left) * q / 4.f) - batch::text_width(ticks[q], 2) / 2;
        out.text(std::min(x, static_cast<int>(n) - batch::text_width(ticks[q], 2) - 2), static_cast<int>(bottom) + 8, ticks[q], 2, black);
    }
    out.text(static_cast<int>(left), 8, "loss (smoothed) vs share of training:", 2, black);
    int x = static_cast<int>(left) + 10;
    const std::pair<const char*, const uint8_t*> legend[] = {{"VAE", red}, {"VAE decoder", orange}, {"UNet", blue}, {"each concept's LoRA", grey}};
    for (const auto& [label, colour] : legend) {
        out.text(x, 24, label, 1, colour);
        x += batch::text_width(label, 1) + 16;
    }
    io::ensure_writable_dir(fs::path(path).parent_path().string());
    io::write_png(path, out.rgb.data(), out.width, out.height);
}

}  // namespace multilora::world
