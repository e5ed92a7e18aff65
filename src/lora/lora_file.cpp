#include "multilora/lora/lora_file.h"

#include <torch/torch.h>

#include <cctype>
#include <map>
#include <set>
#include <sstream>

#include "multilora/io/safetensors.h"
#include "multilora/lora/lycoris.h"
#include "multilora/util/error.h"
#include "multilora/util/strings.h"

namespace multilora::lora {
namespace {

bool ends_with(const std::string& s, const std::string& x) {
    return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}

std::string first_keys(const std::vector<std::string>& keys, size_t n = 5) {
    std::ostringstream o;
    for (size_t i = 0; i < keys.size() && i < n; ++i) o << (i ? ", " : "") << keys[i];
    if (keys.size() > n) o << " (and " << keys.size() - n << " more)";
    return o.str();
}

// Kinds of adapter multilora does not implement, recognised by their key names.
void refuse_unsupported(const std::string& path, const std::vector<std::string>& keys) {
    const std::vector<std::pair<std::string, std::string>> kinds{
        {"oft_", "OFT/BOFT (oft_*)"}, {".a1.weight", "GLoRA (a1/a2/b1/b2)"}, {".b1.weight", "GLoRA (a1/a2/b1/b2)"}};
    for (const auto& [needle, kind] : kinds) {
        std::vector<std::string> hits;
        for (const auto& k : keys)
            if (k.find(needle) != std::string::npos) hits.push_back(k);
        if (!hits.empty())
            throw RuntimeError("'" + path + "': unsupported adapter kind " + kind +
                               "; multilora applies LoRA, LoCon, LoHa, LoKr, IA3, full diffs and DoRA. Offending keys: " +
                               first_keys(hits));
    }
}

struct Parsed {
    std::string stem;
    std::string role;  // "down", "up", "alpha", "dora_scale", "on_input", or a LyCORIS factor's name
};

// Splits a key into its group stem and role, for each known format. Empty role: not an adapter key.
Parsed parse_key(const std::string& key, std::string& format) {
    static const std::vector<std::tuple<std::string, std::string, std::string>> suffixes{
        {".lora_down.weight", "down", "kohya"},   {".lora_up.weight", "up", "kohya"},
        {".lora_mid.weight", "lora_mid", "kohya"},
        {".lora_A.weight", "down", "peft"},       {".lora_B.weight", "up", "peft"},
        {".lora_magnitude_vector.weight", "dora_scale", "peft"}, {".lora_magnitude_vector", "dora_scale", "peft"},
        {".lora.down.weight", "down", "diffusers"}, {".lora.up.weight", "up", "diffusers"},
        {".lora_linear_layer.down.weight", "down", "diffusers"}, {".lora_linear_layer.up.weight", "up", "diffusers"},
        {"_lora.down.weight", "down", "diffusers"}, {"_lora.up.weight", "up", "diffusers"},
        {".alpha", "alpha", ""}, {".dora_scale", "dora_scale", ""},
        {".hada_w1_a", "hada_w1_a", ""}, {".hada_w1_b", "hada_w1_b", ""}, {".hada_w2_a", "hada_w2_a", ""},
        {".hada_w2_b", "hada_w2_b", ""}, {".hada_t1", "hada_t1", ""}, {".hada_t2", "hada_t2", ""},
        {".lokr_w1", "lokr_w1", ""}, {".lokr_w1_a", "lokr_w1_a", ""}, {".lokr_w1_b", "lokr_w1_b", ""},
        {".lokr_w2", "lokr_w2", ""}, {".lokr_w2_a", "lokr_w2_a", ""}, {".lokr_w2_b", "lokr_w2_b", ""},
        {".lokr_t2", "lokr_t2", ""}, {".diff_b", "diff_b", ""}, {".diff", "diff", ""}, {".on_input", "on_input", ""},
    };
    for (const auto& [suffix, role, fmt] : suffixes)
        if (ends_with(key, suffix)) {
            if (!fmt.empty()) format = fmt;
            // diffusers' attention-processor form ("to_q_lora.down.weight") leaves the stem "...to_q".
            return {key.substr(0, key.size() - suffix.size()), role};
        }
    // IA3's scale is the bare ".weight" of a kohya-named module.
    if (ends_with(key, ".weight") && (starts_with(key, "lora_unet_") || starts_with(key, "lora_te_") ||
                                       starts_with(key, "lora_te1_") || starts_with(key, "lycoris_")))
        return {key.substr(0, key.size() - 7), "weight"};
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
    // The LyCORIS library's own wrapper (create_lycoris) names modules "lycoris_" + the flattened path of
    // whatever model it wrapped: a UNet, or a CLIP text model ("text_model_...").
    if (starts_with(stem, "lycoris_")) {
        g.target = stem.substr(8);
        g.part = starts_with(g.target, "text_model_") ? LoraPart::TextEncoder : LoraPart::Unet;
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

namespace {

void add_tensor(LoraGroup& g, const std::string& role, const at::Tensor& t) {
    if (role == "down") g.down = t;
    else if (role == "up") g.up = t;
    else if (role == "dora_scale") g.dora_scale = t;
    else if (role == "on_input") g.on_input = t.numel() == 1 && t.reshape({}).item<double>() != 0;
    else if (role == "alpha") g.alpha = t.numel() == 1 ? std::optional<double>(t.reshape({}).item<double>()) : std::nullopt;
    else g.factors[role] = t;
}

struct Collected {
    std::map<std::string, LoraGroup> groups;
    std::vector<std::string> order;
    std::string format;
};

// Every adapter key, by group stem; other keys go to `ignored`.
Collected collect_groups(const std::string& path, io::SafetensorsFile& file, std::vector<std::string>& ignored) {
    Collected c;
    for (const auto& k : file.names()) {
        std::string fmt;
        Parsed p = parse_key(k, fmt);
        if (p.role.empty()) {
            ignored.push_back(k);
            continue;
        }
        if (!fmt.empty()) {
            if (!c.format.empty() && c.format != fmt)
                throw RuntimeError("'" + path + "' mixes LoRA formats (" + c.format + " and " + fmt + ", at key '" + k + "')");
            c.format = fmt;
        }
        auto [it, inserted] = c.groups.try_emplace(p.stem);
        if (inserted) c.order.push_back(p.stem);
        at::Tensor t = file.tensor(k, static_cast<int8_t>(at::kFloat));
        // A NaN or Inf factor would turn every image it touches into NaN: refused here, naming the key.
        if (!at::isfinite(t).all().item<bool>())
            throw RuntimeError("'" + path + "' has NaN or Inf values in '" + k + "'; the file is damaged");
        add_tensor(it->second, p.role, t);
    }
    return c;
}

// The forms a group's keys belong to (more than one: a damaged or mixed file).
std::vector<AdapterForm> forms_of(const LoraGroup& g) {
    std::set<AdapterForm> f;
    if (g.down.defined() || g.up.defined() || g.factors.count("lora_mid")) f.insert(AdapterForm::Lora);
    for (const auto& [name, t] : g.factors) {
        if (starts_with(name, "hada_")) f.insert(AdapterForm::LoHa);
        else if (starts_with(name, "lokr_")) f.insert(AdapterForm::LoKr);
        else if (starts_with(name, "diff")) f.insert(AdapterForm::Full);
        else if (name == "weight") f.insert(AdapterForm::IA3);
    }
    return {f.begin(), f.end()};
}

// The keys a form needs that the group lacks ("" when complete).
std::string missing_keys(const LoraGroup& g) {
    auto has = [&](const char* n) { return g.factors.count(n) > 0; };
    std::vector<std::string> miss;
    switch (g.form) {
        case AdapterForm::Lora:
            if (!g.down.defined()) miss.push_back("down");
            if (!g.up.defined()) miss.push_back("up");
            break;
        case AdapterForm::LoHa:
            for (const char* n : {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"})
                if (!has(n)) miss.push_back(n);
            break;
        case AdapterForm::LoKr:
            if (!has("lokr_w1") && !(has("lokr_w1_a") && has("lokr_w1_b"))) miss.push_back("lokr_w1 (or lokr_w1_a and lokr_w1_b)");
            if (!has("lokr_w2") && !(has("lokr_w2_a") && has("lokr_w2_b"))) miss.push_back("lokr_w2 (or lokr_w2_a and lokr_w2_b)");
            break;
        case AdapterForm::Full:
            if (!has("diff")) miss.push_back("diff");
            break;
        case AdapterForm::IA3: break;
    }
    std::string out;
    for (const auto& m : miss) out += (out.empty() ? "" : ", ") + m;
    return out;
}

struct Problems {
    std::vector<std::string> incomplete, rank_mismatch, unknown, mixed, factors;
};

// Classifies and checks one group; true when it is a complete, consistent adapter for a known module.
bool finish_group(const std::string& stem, LoraGroup& g, Problems& p, std::vector<std::string>& ignored) {
    const std::vector<AdapterForm> forms = forms_of(g);
    if (forms.empty()) {  // alpha, dora_scale or on_input alone
        ignored.push_back(stem + " (no factors)");
        return false;
    }
    if (forms.size() > 1) return p.mixed.push_back(stem), false;
    g.form = forms.front();
    if (const std::string miss = missing_keys(g); !miss.empty()) return p.incomplete.push_back(stem + ": " + miss), false;
    if (g.form == AdapterForm::Lora && (g.down.dim() < 2 || g.up.dim() < 2 || g.up.size(1) != g.down.size(0))) {
        p.rank_mismatch.push_back(stem + " (down " + std::to_string(g.down.size(0)) + ", up " +
                                  std::to_string(g.up.dim() >= 2 ? g.up.size(1) : -1) + ")");
        return false;
    }
    std::string problem = factor_problem(g);
    if (problem.empty() && g.dora_scale.defined() && (g.form == AdapterForm::IA3 || g.form == AdapterForm::Full))
        problem = "a DoRA magnitude on an IA3 or full-diff module";
    if (!problem.empty()) return p.factors.push_back(stem + ": " + problem), false;
    if (!resolve_stem(stem, g)) return p.unknown.push_back(stem), false;
    return true;
}

void report(const std::string& path, const Problems& p) {
    if (!p.mixed.empty())
        throw RuntimeError("'" + path + "': keys of different adapter forms (LoRA, LoHa, LoKr, IA3, full) for one module: " +
                           first_keys(p.mixed));
    if (!p.incomplete.empty())
        throw RuntimeError("'" + path + "': incomplete adapter (down weight without up weight, or a LyCORIS factor missing) for " +
                           first_keys(p.incomplete, 3));
    if (!p.rank_mismatch.empty()) throw RuntimeError("'" + path + "': up and down ranks differ for " + first_keys(p.rank_mismatch));
    if (!p.factors.empty()) throw RuntimeError("'" + path + "': corrupt factor shapes for " + first_keys(p.factors, 3));
}

}  // namespace

at::Tensor LoraGroup::factor(const std::string& name) const {
    auto it = factors.find(name);
    return it == factors.end() ? at::Tensor() : it->second;
}

int64_t LoraGroup::rank() const {
    switch (form) {
        case AdapterForm::Lora: return down.size(0);
        case AdapterForm::LoHa: return factor("hada_w1_b").size(0);
        case AdapterForm::LoKr:
            if (factor("lokr_w1_b").defined()) return factor("lokr_w1_b").size(0);
            if (factor("lokr_w2_b").defined()) return factor("lokr_w2_b").size(0);
            return 0;
        default: return 0;
    }
}

double LoraGroup::scale() const {
    const int64_t r = rank();
    switch (form) {
        case AdapterForm::Lora: return alpha ? *alpha / static_cast<double>(r) : 1.0;
        case AdapterForm::LoHa:
        case AdapterForm::LoKr: return alpha && *alpha != 0 && r > 0 ? *alpha / static_cast<double>(r) : 1.0;
        default: return 1.0;
    }
}

LoraFile read_lora_file(const std::string& path) {
    auto file = io::open_refusing_pickle(path, "file");
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

    Collected c = collect_groups(path, *file, out.ignored_keys);
    if (c.groups.empty())
        throw RuntimeError("'" + path + "' holds no LoRA weights (no lora_down/lora_up, lora_A/lora_B, lora.down/lora.up, "
                           "hada_*, lokr_*, diff or IA3 keys)");
    out.format = c.format.empty() ? "kohya" : c.format;
    Problems p;
    for (const auto& stem : c.order) {
        LoraGroup g = c.groups[stem];
        if (finish_group(stem, g, p, out.ignored_keys)) out.groups.push_back(std::move(g));
    }
    report(path, p);
    if (!p.unknown.empty() && out.groups.empty())
        throw RuntimeError("'" + path + "': no key names a UNet or text-encoder module: " + first_keys(p.unknown));
    for (const auto& u : p.unknown) out.ignored_keys.push_back(u);
    return out;
}

}  // namespace multilora::lora
