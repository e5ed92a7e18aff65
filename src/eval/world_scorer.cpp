// `evaluate --scorer world`: checks, detection and per-image verdicts (the aggregation is in
// world_aggregate.cpp, the plot in world_plot.cpp).
#include "multilora/eval/world_scorer.h"

#include <torch/torch.h>

#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "world_internal.h"
#include "multilora/eval/text_util.h"
#include "multilora/io/atomic_file.h"
#include "multilora/io/png_writer.h"
#include "multilora/io/safetensors.h"
#include "multilora/train/image_folder.h"
#include "multilora/io/sha256.h"
#include "multilora/util/error.h"
#include "multilora/util/strings.h"
#include "multilora/world/detector.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace multilora::eval {
namespace {

constexpr const char* kWorldInfoHint =
    "the world scorer understands the trained world's LoRAs only (pass --lora-info models/world/world_lora_info.json "
    "when the run does not carry them)";

bool same_words(const std::string& a, const std::string& b) { return ascii_lower(trim(a)) == ascii_lower(trim(b)); }

// The world concept an element stands for: by trigger word, else by name.
const world::Concept* concept_of(const LoraElement& e) {
    for (const world::Concept& c : world::concepts())
        for (const auto& t : e.triggers)
            if (same_words(t, c.trigger)) return &c;
    for (const world::Concept& c : world::concepts())
        if (e.described && same_words(e.name, c.name)) return &c;
    return nullptr;
}

// Each set's expected concept per category. Throws UsageError for a LoRA that is not a world concept, or two
// concepts of one category (the detector has one head per category).
std::vector<world::ConceptChoice> expected_choices(const std::vector<CompositionSet>& sets) {
    std::vector<world::ConceptChoice> out;
    for (const auto& s : sets) {
        world::ConceptChoice choice = world::kGeneric;
        for (const auto& e : s.elements) {
            const world::Concept* c = concept_of(e);
            if (!c)
                throw UsageError("set " + s.id() + ": LoRA '" + e.id + "'" +
                                 (e.triggers.empty() ? std::string(" (no trigger words known)")
                                                     : " (trigger '" + join(e.triggers, "', '") + "')") +
                                 " is not a concept of the trained world; " + kWorldInfoHint);
            int& slot = choice[static_cast<int>(c->category)];
            if (slot >= 0)
                throw UsageError("set " + s.id() + ": two LoRAs of category " + world::category_name(c->category) +
                                 "; the world detector sees one concept per category");
            slot = c->index;
        }
        out.push_back(choice);
    }
    return out;
}

struct ModelFile {
    std::string path, sha256;
};

ModelFile manifest_model(const std::string& manifest) {
    if (manifest.empty()) return {};
    std::ifstream in(manifest);
    json m = json::parse(in, nullptr, false);
    if (m.is_discarded() || !m.contains("model") || !m["model"].is_object()) return {};
    const json& files = m["model"].value("files", json::array());
    if (!files.is_array() || files.empty() || !files[0].is_object()) return {};
    return {files[0].value("path", ""), files[0].value("sha256", "")};
}

// The detector file, checked against the model the images were made with.
std::string locate_detector(const std::vector<CompositionSet>& sets, const WorldScoreOptions& o) {
    std::map<std::string, ModelFile> models;  // sha -> file
    for (const auto& s : sets)
        for (const auto& [m, img] : s.images) {
            ModelFile f = manifest_model(img.manifest);
            if (!f.sha256.empty()) models.emplace(f.sha256, f);
        }
    if (models.size() > 1)
        throw UsageError("the images were made with " + std::to_string(models.size()) +
                         " different models; the world scorer scores one world at a time (--style/--k select)");
    const ModelFile model = models.empty() ? ModelFile{} : models.begin()->second;
    std::string path = o.detector;
    if (path.empty()) {
        if (model.path.empty())
            throw UsageError("no image manifest names the model; pass --detector FILE (models/world/detector.safetensors)");
        path = (fs::path(model.path).parent_path() / "detector.safetensors").string();
        if (!fs::exists(path))
            throw UsageError("the images were made with " + model.path + ", which is not a trained world (no "
                             "detector.safetensors beside it); --detector FILE names a world's detector");
    }
    if (!fs::exists(path)) throw UsageError("--detector " + path + " does not exist");
    const auto meta = io::SafetensorsFile::open(path)->metadata();
    auto it = meta.find("world_model_sha256");
    if (it != meta.end() && !model.sha256.empty() && it->second != model.sha256)
        throw UsageError("the images were made with " + model.path + " (sha256 " + model.sha256.substr(0, 12) +
                         "...), not the world " + path + " was trained for (sha256 " + it->second.substr(0, 12) +
                         "...): images from another model or world cannot be scored with it");
    if (model.sha256.empty()) spdlog::warn("world scorer: no manifest names the images' model; it is not checked");
    return path;
}

// Width and height from a PNG's IHDR, without decoding; {0, 0} when the file is not a PNG.
std::pair<int, int> png_size(const std::string& path) {
    unsigned char b[24] = {};
    std::ifstream in(path, std::ios::binary);
    if (!in.read(reinterpret_cast<char*>(b), sizeof b) || b[1] != 'P' || b[2] != 'N' || b[3] != 'G') return {0, 0};
    auto be32 = [&](int o) { return int(b[o]) << 24 | int(b[o + 1]) << 16 | int(b[o + 2]) << 8 | int(b[o + 3]); };
    return {be32(16), be32(20)};
}

void check_image_sizes(const std::vector<WorldItem>& items) {
    for (const auto& it : items) {
        const auto [w, h] = png_size(it.png);
        if (w == world::kImageSize && h == world::kImageSize) continue;
        throw UsageError(it.png + (w == 0 ? std::string(" is not a PNG") : " is " + std::to_string(w) + "x" + std::to_string(h)) +
                         "; the world detector reads " + std::to_string(world::kImageSize) + "x" +
                         std::to_string(world::kImageSize) + " images (the world's size)");
    }
}

std::vector<WorldItem> plan_items(const std::vector<CompositionSet>& sets, const WorldScoreOptions& o) {
    std::vector<std::string> methods{o.base};
    methods.insert(methods.end(), o.compares.begin(), o.compares.end());
    std::vector<WorldItem> items;
    for (size_t i = 0; i < sets.size(); ++i)
        for (const auto& m : methods) {
            auto img = sets[i].images.find(m);
            if (img != sets[i].images.end()) items.push_back({i, m, img->second.png, {}});
        }
    if (items.empty()) throw UsageError("the world scorer found no image of the compared methods");
    return items;
}

// Runs the detector over every item, `batch` images per forward.
void detect_items(std::vector<WorldItem>& items, const world::ElementDetector& detector,
                  const std::function<void(size_t, size_t)>& on_image) {
    constexpr size_t batch = 64;
    const int n = world::kImageSize;
    for (size_t start = 0; start < items.size(); start += batch) {
        const size_t end = std::min(items.size(), start + batch);
        std::vector<at::Tensor> images;  // [3, n, n] in [-1, 1], as the detector's own detect_rgb converts them
        for (size_t i = start; i < end; ++i) {
            int w = 0, h = 0;
            const std::vector<uint8_t> rgb = io::decode_png_rgb(io::read_file(items[i].png), &w, &h);
            if (w != n || h != n) throw RuntimeError(items[i].png + " changed size while it was being scored");
            images.push_back(train::rgb8_to_tensor(rgb.data(), w, h));
        }
        const std::vector<world::Verdict> v = detector.detect(torch::stack(images));
        for (size_t i = start; i < end; ++i) items[i].verdict = v[i - start];
        if (on_image) on_image(end, items.size());
    }
}

std::string concept_id(int category, int index) {
    if (index < 0) return "";
    return world::concepts_in(static_cast<world::Category>(category)).at(static_cast<size_t>(index))->id;
}

// Fills the item's figures from its verdict and the set's expected concepts; returns its summary line.
json verdict_line(WorldItem& it, const CompositionSet& s, const world::ConceptChoice& want, const std::string& eval_dir) {
    json expected = json::object(), found = json::object(), confidence = json::object();
    json leaked = json::array(), hits = json::array();
    int elements = 0, got = 0;
    for (int c = 0; c < world::kCategories; ++c) {
        const std::string cat = world::category_name(static_cast<world::Category>(c));
        const int f = it.verdict.found[c];
        found[cat] = f < 0 ? json(nullptr) : json(concept_id(c, f));
        confidence[cat] = it.verdict.confidence[c];
        if (want[c] >= 0) {
            ++elements;
            expected[cat] = concept_id(c, want[c]);
            if (f == want[c]) ++got, hits.push_back(concept_id(c, f));
        }
        if (f >= 0 && f != want[c]) leaked.push_back(concept_id(c, f));
    }
    it.recall = elements ? double(got) / elements : 0;
    it.success = got == elements;
    it.leaked = static_cast<int>(leaked.size());
    it.in_world = it.verdict.is_in_world();
    json line = {{"set", s.id()}, {"style", s.style}, {"k", s.k}, {"lora_ids", s.lora_ids}, {"method", it.method},
                 {"image", relative_path(it.png, eval_dir)}, {"expected", expected}, {"found", found},
                 {"confidence", confidence}, {"elements_found", hits}, {"leaked", leaked},
                 {"in_world_probability", it.verdict.in_world}, {"in_world", it.in_world},
                 {"recall", it.recall}, {"success", it.success}};
    if (s.seed) line["seed"] = *s.seed;
    return line;
}

}  // namespace

json score_world(const std::vector<CompositionSet>& sets, const WorldScoreOptions& o,
                 const std::function<void(size_t, size_t)>& on_image) {
    // Checks first: nothing is detected or written when one fails.
    const std::vector<world::ConceptChoice> want = expected_choices(sets);
    const std::string detector_path = locate_detector(sets, o);
    std::vector<WorldItem> items = plan_items(sets, o);
    check_image_sizes(items);

    const world::ElementDetector detector = world::ElementDetector::load(detector_path);
    detect_items(items, detector, on_image);
    json lines = json::array();
    for (auto& it : items) lines.push_back(verdict_line(it, sets[it.set], want[it.set], o.eval_dir));

    json out = aggregate_world(sets, items, o);
    out["detector"] = {{"path", detector_path}, {"sha256", io::sha256_file_hex(detector_path)}};
    out["images"] = std::move(lines);
    return out;
}

}  // namespace multilora::eval
