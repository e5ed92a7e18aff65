#include "multilora/lora/lora_file.h"

#include <torch/torch.h>

#include <cctype>
#include <map>
#include <sstream>

#include "multilora/io/safetensors.h"
#include "multilora/util/error.h"
#include "multilora/util/strings.h"

namespace multilora::lora {
namespace {

bool ends_with(const std::string& s, const std::string& x) {
    return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}

std::string some(const std::vector<std::string>& keys, size_t n = 5) {
    std::ostringstream o;
    for (size_t i = 0; i < keys.size() && i < n; ++i) o << (i ? ", " : "") << keys[i];
    if (keys.size() > n) o << " (and " << keys.size() - n << " more)";
    return o.str();
}

// Kinds of adapter multilora does not implement, recognised by their key names.
void refuse_unsupported(const std::string& path, const std::vector<std::string>& keys) {
    const std::vector<std::pair<std::string, std::string>> kinds{
        {"hada_w1_a", "LoHa (hada_*)"}, {"hada_w2_a", "LoHa (hada_*)"}, {"lokr_w1", "LoKr (lokr_*)"},
        {"lokr_w2", "LoKr (lokr_*)"},   {"dora_scale", "DoRA (dora_scale)"}, {"lora_mid", "LoCon with Tucker mid weights (lora_mid)"},
        {".diff", "full-weight diff (.diff)"}, {"oft_", "OFT/BOFT"}, {"ia3", "(IA)^3"}};
    for (const auto& [needle, kind] : kinds) {
        std::vector<std::string> hits;
        for (const auto& k : keys)
            if (k.find(needle) != std::string::npos) hits.push_back(k);
        if (!hits.empty())
            throw RuntimeError("'" + path + "': unsupported adapter kind " + kind +
                               "; multilora applies plain LoRA/LoCon only. Offending keys: " + some(hits));
    }
}

struct Parsed {
    std::string stem;
    std::string role;  // "down", "up", "alpha"
};

// Splits a key into its group stem and role, for each known format. Empty role: not a LoRA key.
Parsed parse_key(const std::string& key, std::string& format) {
    static const std::vector<std::tuple<std::string, std::string, std::string>> suffixes{
        {".lora_down.weight", "down", "kohya"},   {".lora_up.weight", "up", "kohya"},
        {".lora_A.weight", "down", "peft"},       {".lora_B.weight", "up", "peft"},
        {".lora.down.weight", "down", "diffusers"}, {".lora.up.weight", "up", "diffusers"},
        {".lora_linear_layer.down.weight", "down", "diffusers"}, {".lora_linear_layer.up.weight", "up", "diffusers"},
        {"_lora.down.weight", "down", "diffusers"}, {"_lora.up.weight", "up", "diffusers"},
        {".alpha", "alpha", ""},
    };
    for (const auto& [suffix, role, fmt] : suffixes)
        if (ends_with(key, suffix)) {
            if (!fmt.empty()) format = fmt;
            // diffusers' attention-processor form ("to_q_lora.down.weight") leaves the stem "...to_q".
            return {key.substr(0, key.size() - suffix.size()), role};
        }
    return {"", ""};
}

// The target module of a stem, in the file's own naming.
bool resolve_stem(const std::string& stem, LoraGroup& g) {
    g.stem = stem;
    if (starts_with(stem, "lora_unet_")) {
        g.part = LoraPart::Unet;
        g.target = stem.substr(10);
        g.flattened = true;
        return true;
    }
    for (const char* te : {"lora_te_", "lora_te1_"})
        if (starts_with(stem, te)) {
            g.part = LoraPart::TextEncoder;
            g.target = stem.substr(std::string(te).size());
            g.flattened = true;
            return true;
        }
    std::string s = stem;
    if (starts_with(s, "base_model.model.")) s = s.substr(17);
    std::string path;
    if (starts_with(s, "unet.")) {
        g.part = LoraPart::Unet;
        path = s.substr(5);
    } else if (starts_with(s, "text_encoder.")) {
        g.part = LoraPart::TextEncoder;
        path = s.substr(13);
    } else {
        return false;
    }
    // diffusers' attention-processor spelling: "attn1.processor.to_q_lora" -> "attn1.to_q".
    auto pos = path.find(".processor.");
    if (pos != std::string::npos) path.erase(pos, 10);
    if (ends_with(path, "_lora")) path.erase(path.size() - 5);
    if (ends_with(path, ".to_out")) path += ".0";
    g.target = path;
    return true;
}

const char* family_name(const std::string& family) {
    if (family == "sdxl") return "an SDXL";
    if (family == "sd2") return "an SD2";
    if (family == "sd3") return "an SD3";
    if (family == "flux") return "a Flux";
    return "an SD1";
}

std::string family_of_version(std::string v) {
    for (auto& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (v.find("sdxl") != std::string::npos || v.find("stable-diffusion-xl") != std::string::npos) return "sdxl";
    if (v.find("flux") != std::string::npos) return "flux";
    if (v.find("sd3") != std::string::npos || v.find("stable-diffusion-3") != std::string::npos ||
        v.find("stable-diffusion-v3") != std::string::npos)
        return "sd3";
    if (v.find("v2") != std::string::npos || v.find("sd2") != std::string::npos) return "sd2";
    if (v.find("v1") != std::string::npos || v.find("sd1") != std::string::npos) return "sd1";
    return "";
}

}  // namespace

BaseModel base_model_of(const std::map<std::string, std::string>& meta) {
    for (const char* key : {"ss_base_model_version", "modelspec.architecture"}) {
        auto it = meta.find(key);
        if (it == meta.end()) continue;
        const std::string family = family_of_version(it->second);
        if (!family.empty()) return {family, key, it->second};
    }
    auto v2 = meta.find("ss_v2");
    if (v2 != meta.end() && (v2->second == "True" || v2->second == "true")) return {"sd2", "ss_v2", v2->second};
    return {};
}

LoraFile read_lora_file(const std::string& path) {
    if (io::looks_like_pickle_checkpoint(path))
        throw RuntimeError("'" + path + "' is a PyTorch pickle file. " + io::pickle_conversion_hint());
    auto file = io::SafetensorsFile::open(path);
    LoraFile out;
    out.path = path;
    out.metadata = file->metadata();
    out.base_model = base_model_of(out.metadata);
    if (!out.base_model.supported())
        throw RuntimeError("'" + path + "' is " + family_name(out.base_model.family) + " LoRA (its metadata says " +
                           out.base_model.key + " = " + out.base_model.value + "); multilora supports SD1.x models");
    const auto& keys = file->names();
    refuse_unsupported(path, keys);
    for (const auto& k : keys)
        if (starts_with(k, "lora_te2_"))
            throw RuntimeError("'" + path + "' is an SDXL LoRA (it has second-text-encoder keys such as '" + k +
                               "'); multilora supports SD1.x models");

    std::map<std::string, LoraGroup> groups;
    std::vector<std::string> order;
    std::string format;
    for (const auto& k : keys) {
        std::string fmt;
        Parsed p = parse_key(k, fmt);
        if (p.role.empty()) {
            out.ignored_keys.push_back(k);
            continue;
        }
        if (!fmt.empty()) {
            if (!format.empty() && format != fmt)
                throw RuntimeError("'" + path + "' mixes LoRA formats (" + format + " and " + fmt + ", at key '" + k + "')");
            format = fmt;
        }
        auto [it, inserted] = groups.try_emplace(p.stem);
        if (inserted) order.push_back(p.stem);
        LoraGroup& g = it->second;
        at::Tensor t = file->tensor(k, static_cast<int8_t>(at::kFloat));
        // A NaN or Inf factor would turn every image it touches into NaN: refused here, naming the key.
        if (!at::isfinite(t).all().item<bool>())
            throw RuntimeError("'" + path + "' has NaN or Inf values in '" + k + "'; the file is damaged");
        if (p.role == "down") g.down = t;
        else if (p.role == "up") g.up = t;
        else g.alpha = t.numel() == 1 ? std::optional<double>(t.reshape({}).item<double>()) : std::nullopt;
    }
    if (groups.empty())
        throw RuntimeError("'" + path + "' holds no LoRA weights (no lora_down/lora_up, lora_A/lora_B or lora.down/lora.up keys)");
    out.format = format.empty() ? "kohya" : format;

    std::vector<std::string> incomplete, rank_mismatch, unknown;
    for (const auto& stem : order) {
        LoraGroup g = groups[stem];
        if (!g.down.defined() || !g.up.defined()) {
            if (g.down.defined() || g.up.defined()) incomplete.push_back(stem);
            else out.ignored_keys.push_back(stem + ".alpha");
            continue;
        }
        if (g.down.dim() < 2 || g.up.dim() < 2 || g.up.size(1) != g.down.size(0)) {
            rank_mismatch.push_back(stem + " (down " + std::to_string(g.down.size(0)) + ", up " +
                                    std::to_string(g.up.dim() >= 2 ? g.up.size(1) : -1) + ")");
            continue;
        }
        if (!resolve_stem(stem, g)) {
            unknown.push_back(stem);
            continue;
        }
        out.groups.push_back(std::move(g));
    }
    if (!incomplete.empty())
        throw RuntimeError("'" + path + "': down weight without up weight (or the reverse) for " + some(incomplete));
    if (!rank_mismatch.empty())
        throw RuntimeError("'" + path + "': up and down ranks differ for " + some(rank_mismatch));
    if (!unknown.empty() && out.groups.empty())
        throw RuntimeError("'" + path + "': no key names a UNet or text-encoder module: " + some(unknown));
    for (const auto& u : unknown) out.ignored_keys.push_back(u);
    return out;
}

}  // namespace multilora::lora
