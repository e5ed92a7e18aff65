#include "multilora/lora/adapter_set.h"

#include <torch/torch.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <set>
#include <sstream>

#include "multilora/lora/layer_adapters.h"
#include "multilora/lora/lycoris.h"
#include "multilora/models/layers.h"
#include "multilora/models/ldm_key_map.h"
#include "multilora/models/unet.h"
#include "multilora/text/clip_text_model.h"
#include "multilora/util/error.h"
#include "multilora/util/strings.h"

namespace multilora::lora {
namespace {


std::string flatten(std::string s) {
    std::replace(s.begin(), s.end(), '.', '_');
    return s;
}


std::string some(const std::vector<std::string>& items, size_t n = 5) {
    std::ostringstream o;
    for (size_t i = 0; i < items.size() && i < n; ++i) o << "\n  " << items[i];
    if (items.size() > n) o << "\n  ... and " << items.size() - n << " more";
    return o.str();
}

// Does a group's pair of factors fit the target weight? Linear [out, in]; Conv2d [out, in, kh, kw].
bool lora_fits(const LoraGroup& g, const at::Tensor& w, bool conv) {
    const int64_t out = w.size(0), in = w.size(1), r = g.down.size(0);
    if (g.up.size(0) != out || g.up.size(1) != r || g.down.size(1) != in) return false;
    if (g.up.dim() == 4 && (g.up.size(2) != 1 || g.up.size(3) != 1)) return false;
    if (!conv) return g.down.dim() == 2 || (g.down.dim() == 4 && g.down.size(2) == 1 && g.down.size(3) == 1);
    if (g.down.dim() == 2) return w.size(2) == 1 && w.size(3) == 1;
    return g.down.size(2) == w.size(2) && g.down.size(3) == w.size(3);
}

// "" when the group fits the target weight, else why not.
std::string misfit(const LoraGroup& g, const at::Tensor& w, bool conv) {
    if (is_full_rank(g)) return fit_problem(g, w.sizes().vec());
    if (lora_fits(g, w, conv)) return "";
    return "down " + shape_str(g.down.sizes().vec()) + ", up " + shape_str(g.up.sizes().vec());
}

// A guess at the architecture a mismatching LoRA was made for, from its text-feature widths.
std::string architecture_hint(const std::vector<LoraGroup>& groups) {
    for (const auto& g : groups) {
        bool cross = g.target.find("attn2") != std::string::npos &&
                     (g.target.find("to_k") != std::string::npos || g.target.find("to_v") != std::string::npos);
        bool text = g.part == LoraPart::TextEncoder;
        const std::vector<int64_t> shape = delta_shape(g);
        if (shape.size() < 2) continue;
        int64_t in = shape[1];
        if ((cross && in == 2048) || (text && in == 1280)) return " It looks made for SDXL.";
        if ((cross && in == 1024) || (text && in == 1024)) return " It looks made for SD2.x.";
    }
    return "";
}

}  // namespace

LoraSpec parse_lora_spec(const std::string& text) {
    auto pos = text.rfind(':');
    if (pos != std::string::npos && pos > 0) {
        const std::string tail = text.substr(pos + 1);
        // PATH:KEYFRAMES or PATH:KEYFRAMES:MODE (an unknown MODE is reported by the parser).
        size_t keys_at = pos;
        if (!looks_like_schedule(tail)) keys_at = text.rfind(':', pos - 1);
        if (keys_at != std::string::npos && keys_at > 0 &&
            looks_like_schedule(text.substr(keys_at + 1, pos == keys_at ? std::string::npos : pos - keys_at - 1))) {
            LoraSpec spec{text.substr(0, keys_at), 1.0, {}};
            spec.schedule = parse_weight_schedule(text.substr(keys_at + 1), "--lora " + text);
            return spec;
        }
    }
    if (pos != std::string::npos && pos + 1 < text.size()) {
        const std::string tail = text.substr(pos + 1);
        try {
            size_t used = 0;
            double w = std::stod(tail, &used);
            if (used == tail.size()) return {text.substr(0, pos), w};
        } catch (const std::exception&) {
        }
    }
    return {text, 1.0};
}

nlohmann::json LoraSummary::to_json() const {
    nlohmann::json j = {{"path", path},       {"format", format},      {"weight", weight},
            {"ranks", ranks},     {"alphas", alphas},      {"matched_modules", matched_unet + matched_text},
            {"matched_unet", matched_unet}, {"matched_text_encoder", matched_text}, {"unmatched", unmatched},
            {"misfit", misfit},
            {"targets", by_kind}, {"forms", forms}};
    if (!schedule.empty()) j["weight_schedule"] = schedule.to_json();
    j["base_model"] = base_model.family.empty()
                          ? nlohmann::json(nullptr)
                          : nlohmann::json{{"family", base_model.family}, {"from", base_model.key + " = " + base_model.value}};
    return j;
}

nlohmann::json LoraSummary::coverage_json() const {
    return {{"unet", {{"matched", matched_unet}, {"layers", unet_layers}}},
            {"text_encoder", {{"matched", matched_text}, {"layers", text_layers}}}};
}

std::string layer_kind(const std::string& path) {
    if (path.find("attn1") != std::string::npos || path.find("attn2") != std::string::npos ||
        path.find("self_attn") != std::string::npos || path.find("attentions.0.to_") != std::string::npos)
        return "attention";
    if (path.find(".ff.") != std::string::npos) return "ff";
    if (path.find(".mlp.") != std::string::npos) return "mlp";
    if (path.find("proj_in") != std::string::npos || path.find("proj_out") != std::string::npos) return "proj";
    if (path.find("time_emb") != std::string::npos || path.find("time_embedding") != std::string::npos) return "time";
    return "conv";
}

TargetIndex::TargetIndex(torch::nn::Module& root, bool unet, const nlohmann::json& unet_config) {
    std::optional<models::UNetConfig> cfg;
    if (unet && !unet_config.is_null()) cfg = models::UNetConfig::from_json(unet_config);
    for (const auto& item : root.named_modules("", /*include_self=*/false)) {
        torch::nn::Module* m = item.value().get();
        bool conv = dynamic_cast<models::Conv2dImpl*>(m) != nullptr;
        bool lin = dynamic_cast<models::LinearImpl*>(m) != nullptr;
        if (!conv && !lin) continue;
        const std::string& path = item.key();
        by_path_[path] = {m, conv, path};
        flat_to_path_[flatten(path)] = path;
        if (cfg) {
            // Some trainers name UNet modules by their LDM path (input_blocks_1_1_proj_in).
            std::string ldm = models::unet_key_to_ldm(path + ".weight", *cfg);
            const std::string prefix = models::kLdmUnetPrefix;
            if (!ldm.empty()) flat_to_path_[flatten(ldm.substr(prefix.size(), ldm.size() - prefix.size() - 7))] = path;
        }
    }
}

const TargetLayer* TargetIndex::find(const LoraGroup& g) const {
    std::string path = g.target;
    if (g.flattened) {
        auto it = flat_to_path_.find(g.target);
        if (it == flat_to_path_.end()) return nullptr;
        path = it->second;
    }
    auto it = by_path_.find(path);
    return it == by_path_.end() ? nullptr : &it->second;
}

namespace {

const at::Tensor& weight_of(const TargetLayer& t) {
    if (t.is_conv) return static_cast<models::Conv2dImpl*>(t.module)->weight;
    return static_cast<models::LinearImpl*>(t.module)->weight;
}

std::shared_ptr<models::WeightAdapter>& adapter_slot(const TargetLayer& t) {
    if (t.is_conv) return static_cast<models::Conv2dImpl*>(t.module)->adapter;
    return static_cast<models::LinearImpl*>(t.module)->adapter;
}

// Resolves a file against the two indexes; fills `summary`, and `matches` with (group, target) pairs.
void match_file(const LoraFile& file, const TargetIndex& unet, const TargetIndex& text, LoraSummary& summary,
                std::vector<std::pair<const LoraGroup*, const TargetLayer*>>& matches, std::vector<std::string>& misfits,
                bool check_shapes) {
    std::set<int64_t> ranks;
    std::set<double> alphas;
    for (const auto& g : file.groups) {
        if (g.rank() > 0) ranks.insert(g.rank());
        if (g.alpha) alphas.insert(*g.alpha);
    }
    for (const auto& g : file.groups) {
        const TargetIndex& idx = g.part == LoraPart::Unet ? unet : text;
        const TargetLayer* t = idx.find(g);
        if (!t) {
            ++summary.unmatched;
            continue;
        }
        if (const std::string why = check_shapes ? misfit(g, weight_of(*t), t->is_conv) : ""; !why.empty()) {
            misfits.push_back(g.stem + " (" + form_name(g) + "): " + why + " vs weight " +
                              shape_str(weight_of(*t).sizes().vec()) + " of " + t->path);
            continue;
        }
        (g.part == LoraPart::Unet ? summary.matched_unet : summary.matched_text)++;
        summary.forms[form_name(g)]++;
        summary.modules.push_back({g.stem, t->path, form_name(g)});
        summary.by_kind[std::string(g.part == LoraPart::Unet ? "unet/" : "text/") + layer_kind(t->path)]++;
        matches.emplace_back(&g, t);
    }
    summary.ignored_keys = file.ignored_keys;
    summary.ranks.assign(ranks.begin(), ranks.end());
    summary.alphas.assign(alphas.begin(), alphas.end());
}

// The group's delta for one layer. Plain LoRA stays factored, with alpha/rank in its scale; every other form
// builds its full-rank ΔW from its (device-resident) factors when the layer asks, the form's scale inside.
LayerDelta layer_delta(const LoraGroup& g, const at::Tensor& weight, int slot, double strength, c10::Device device) {
    LayerDelta d;
    d.slot = slot;
    if (!is_full_rank(g)) {
        d.down = g.down.to(device);
        d.up = g.up.to(device);
        d.scale = g.scale() * strength;
        return d;
    }
    LoraGroup on_device = g;
    for (auto& [name, t] : on_device.factors) t = t.to(device);
    if (g.down.defined()) on_device.down = g.down.to(device);
    if (g.up.defined()) on_device.up = g.up.to(device);
    if (g.dora_scale.defined()) on_device.dora_scale = g.dora_scale.to(device);
    if (g.form == AdapterForm::Full && g.factor("diff_b").defined()) d.bias = g.factor("diff_b").to(device);
    d.dense = [group = std::move(on_device), weight] { return form_delta(group, weight); };
    d.scale = strength;
    d.rank = g.rank();
    return d;
}

}  // namespace

AdapterSet::AdapterSet(torch::nn::Module& unet, torch::nn::Module& text_encoder, const nlohmann::json& unet_config,
                       const std::vector<LoraSpec>& specs, double lora_scale, c10::ScalarType dtype, c10::Device device) {
    TargetIndex unet_idx(unet, true, unet_config);
    TargetIndex text_idx(text_encoder, false);
    std::set<LayerAdapters*> unet_seen, text_seen;
    for (size_t slot = 0; slot < specs.size(); ++slot) {
        const LoraSpec& spec = specs[slot];
        LoraFile file = read_lora_file(spec.path);
        LoraSummary summary;
        summary.path = spec.path;
        summary.format = file.format;
        summary.base_model = file.base_model;
        summary.weight = spec.weight;
        summary.schedule = spec.schedule;
        std::vector<std::pair<const LoraGroup*, const TargetLayer*>> matches;
        std::vector<std::string> misfits;
        match_file(file, unet_idx, text_idx, summary, matches, misfits, true);
        if (!misfits.empty())
            throw RuntimeError("'" + spec.path + "': " + std::to_string(misfits.size()) +
                               " LoRA weight(s) do not fit this model's layers." + architecture_hint(file.groups) +
                               some(misfits));
        if (matches.empty())
            throw RuntimeError("'" + spec.path + "': none of its " + std::to_string(file.groups.size()) +
                               " modules exists in this SD1.x model (is it for another architecture?); first keys:" +
                               some([&] {
                                   std::vector<std::string> s;
                                   for (const auto& g : file.groups) s.push_back(g.stem);
                                   return s;
                               }()));
        if (!file.ignored_keys.empty())
            spdlog::warn("{}: {} key(s) belong to no adapter multilora applies and are ignored (first: {})", spec.path,
                         file.ignored_keys.size(), file.ignored_keys.front());
        if (summary.unmatched > 0)
            spdlog::warn("{}: {} of {} modules matched this model; {} did not and are ignored", spec.path,
                         matches.size(), file.groups.size(), summary.unmatched);
        for (const auto& [g, t] : matches) {
            std::shared_ptr<LayerAdapters> ad = layer_adapters(*t);
            ad->add_delta(layer_delta(*g, weight_of(*t), static_cast<int>(slot), spec.weight * lora_scale, device));
            auto& seen = g->part == LoraPart::Unet ? unet_seen : text_seen;
            auto& list = g->part == LoraPart::Unet ? unet_layers_ : text_layers_;
            if (seen.insert(ad.get()).second) list.push_back({t->path, ad});
        }
        (void)dtype;
        spdlog::info("LoRA {}: {} ({}), rank {}, {} UNet + {} text-encoder modules, weight {}", slot, spec.path,
                     summary.format, summary.ranks.empty() ? 0 : summary.ranks.back(), summary.matched_unet,
                     summary.matched_text, spec.weight);
        summaries_.push_back(std::move(summary));
    }
}

std::shared_ptr<LayerAdapters> AdapterSet::layer_adapters(const TargetLayer& t) {
    std::shared_ptr<models::WeightAdapter>& slot = adapter_slot(t);
    if (slot) {
        if (!owned_.count(&slot)) throw RuntimeError("internal: LoRA adapters are already attached to " + t.path);
        return std::static_pointer_cast<LayerAdapters>(slot);
    }
    int64_t stride = 1, padding = 0;
    if (t.is_conv) {
        auto* c = static_cast<models::Conv2dImpl*>(t.module);
        stride = c->stride;
        padding = c->padding;
    }
    auto made = std::make_shared<LayerAdapters>(weight_of(t), t.is_conv, stride, padding);
    owned_.insert(&slot);
    slot = made;
    return made;
}

AdapterSet::~AdapterSet() {
    // Detach from the model: its layers run on their base weights again.
    for (auto* slot : owned_) slot->reset();
}

void AdapterSet::activate_text(const std::vector<int>& slots) {
    const std::vector<int> attached = image_slots_.empty() ? slots : attached_slots(slots, text_image_);
    for (auto& l : text_layers_) l.adapters->set_fused(attached);
}

void AdapterSet::activate_unet(const std::vector<int>& slots, int64_t amortize_steps) {
    if (image_slots_.empty()) {
        for (auto& l : unet_layers_) l.adapters->set_fused(slots, amortize_steps);
        return;
    }
    const size_t n = image_slots_.size();
    std::vector<std::vector<int>> rows;
    for (size_t r = 0; r < n * static_cast<size_t>(rows_per_image_); ++r) rows.push_back(attached_slots(slots, r % n));
    if (std::all_of(rows.begin(), rows.end(), [&](const std::vector<int>& row) { return row == rows.front(); })) {
        for (auto& l : unet_layers_) l.adapters->set_fused(rows.front(), amortize_steps);
        return;
    }
    for (auto& l : unet_layers_) l.adapters->set_row_slots(rows, {amortize_steps, rows_per_image_, true});
}

namespace {

// The batch rows one image brings to a per-row block laid out for an image map (row r is image r % n's):
// the first run of rows with the same LoRAs (Composite's block of one LoRA: 2n rows with classifier-free
// guidance), divided among the n images. Alone the image's block is one group of that many rows.
int64_t image_block_rows(const std::vector<std::vector<int>>& row_slots, size_t images) {
    size_t first = 0;
    while (first < row_slots.size() && row_slots[first].empty()) ++first;
    size_t end = first;
    while (end < row_slots.size() && row_slots[end] == row_slots[first]) ++end;
    return std::max<int64_t>(1, static_cast<int64_t>((end - first) / std::max<size_t>(1, images)));
}

}  // namespace

void AdapterSet::activate_unet_rows(const std::vector<std::vector<int>>& row_slots, int64_t image_rows) {
    if (image_slots_.empty()) {
        for (auto& l : unet_layers_) l.adapters->set_row_slots(row_slots, {1, image_rows, false});
        return;
    }
    std::vector<std::vector<int>> rows;
    for (size_t r = 0; r < row_slots.size(); ++r) rows.push_back(attached_slots(row_slots[r], r % image_slots_.size()));
    // Each group decides as its image's block would alone, for one forward, keeping its cached weights
    // (every step selects the same groups).
    const int64_t block_rows = image_block_rows(row_slots, image_slots_.size());
    for (auto& l : unet_layers_) l.adapters->set_row_slots(rows, {1, block_rows, false});
}

void AdapterSet::map_images(std::vector<std::vector<int>> image_slots, int rows_per_image) {
    for (const auto& slots : image_slots)
        for (int s : slots)
            if (s < 0 || s >= count())
                throw RuntimeError("image map names LoRA slot " + std::to_string(s) + ", but " + std::to_string(count()) +
                                   " LoRA(s) are attached");
    image_slots_ = std::move(image_slots);
    rows_per_image_ = std::max(1, rows_per_image);
    text_image_ = 0;
}

std::vector<int> AdapterSet::attached_slots(const std::vector<int>& composition, size_t image) const {
    const std::vector<int>& mine = image_slots_.at(image);
    std::vector<int> attached;
    for (int c : composition) {
        if (c < 0 || c >= static_cast<int>(mine.size()))
            throw RuntimeError("composition slot " + std::to_string(c) + " is outside image " + std::to_string(image) +
                               "'s " + std::to_string(mine.size()) + " LoRA(s)");
        attached.push_back(mine[c]);
    }
    return attached;
}

void AdapterSet::set_gains(const std::vector<double>& gains) {
    for (int slot = 0; slot < static_cast<int>(gains.size()); ++slot) {
        for (auto& l : unet_layers_) l.adapters->set_gain(slot, gains[slot]);
        for (auto& l : text_layers_) l.adapters->set_gain(slot, gains[slot]);
    }
}

void AdapterSet::clear() {
    for (auto& l : unet_layers_) l.adapters->clear();
    for (auto& l : text_layers_) l.adapters->clear();
    image_slots_.clear();
    text_image_ = 0;
}

LoraSummary inspect_lora(const std::string& path, torch::nn::Module* unet, torch::nn::Module* text_encoder,
                         const nlohmann::json& unet_config) {
    LoraFile file = read_lora_file(path);
    std::optional<models::UNet2DConditionModel> sd_unet;
    std::optional<text::ClipTextModel> sd_text;
    nlohmann::json cfg = unet_config;
    if (!unet || !text_encoder) {
        sd_unet.emplace(models::UNetConfig::v1_5());
        sd_text.emplace(text::ClipTextConfig::v1_5());
        unet = sd_unet->get();
        text_encoder = sd_text->get();
        cfg = models::UNetConfig::v1_5().to_json();
    }
    TargetIndex unet_idx(*unet, true, cfg);
    TargetIndex text_idx(*text_encoder, false);
    LoraSummary summary;
    summary.path = path;
    summary.format = file.format;
    summary.base_model = file.base_model;
    for (const auto& [key, value] : file.metadata)
        if (key.rfind("ss_", 0) == 0) summary.training[key] = value;
    std::vector<std::pair<const LoraGroup*, const TargetLayer*>> matches;
    std::vector<std::string> misfits;
    match_file(file, unet_idx, text_idx, summary, matches, misfits, true);
    summary.misfit = static_cast<int>(misfits.size());
    summary.unet_layers = static_cast<int>(unet_idx.size());
    summary.text_layers = static_cast<int>(text_idx.size());
    return summary;
}

}  // namespace multilora::lora
