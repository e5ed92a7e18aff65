#include "multilora/eval/clip_score.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "multilora/io/png_writer.h"
#include "multilora/io/atomic_file.h"
#include "multilora/io/safetensors.h"
#include "multilora/models/weight_loading.h"
#include "multilora/text/clip_tokenizer.h"
#include "multilora/util/error.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace multilora::eval {

namespace {

const std::vector<int64_t>& shape(const models::WeightIndex& index, const std::string& name, const std::string& what) {
    auto it = index.find(name);
    if (it == index.end()) throw RuntimeError(what + ": tensor '" + name + "' is missing (not a CLIP model?)");
    return it->second.file->info(it->second.key).shape;
}

template <typename T>
void read_if(const json& j, const char* key, T& out) {
    auto it = j.find(key);
    if (it != j.end() && !it->is_null()) out = it->get<T>();
}

json section(const json& cfg, const std::string& name) {
    json out = json::object();
    if (cfg.contains(name + "_dict") && cfg[name + "_dict"].is_object()) out.update(cfg[name + "_dict"]);
    if (cfg.contains(name) && cfg[name].is_object()) out.update(cfg[name]);
    return out;
}

}  // namespace

namespace {

// The .safetensors weight files of a model folder (model.safetensors, else every *.safetensors) or the one
// file given; `dir` is where config and tokenizer files are looked for.
std::vector<fs::path> weight_files(const std::string& path, fs::path& dir) {
    fs::path p(path);
    std::error_code ec;
    if (!fs::exists(p, ec)) throw RuntimeError("--clip-model: '" + path + "' not found");
    std::vector<fs::path> files;
    if (!fs::is_directory(p, ec)) {
        if (io::looks_like_pickle_checkpoint(path))
            throw RuntimeError("--clip-model: '" + path + "' is a pickle checkpoint; multilora reads safetensors only");
        dir = p.parent_path();
        return {p};
    }
    dir = p;
    if (fs::is_regular_file(p / "model.safetensors", ec)) return {p / "model.safetensors"};
    for (const auto& e : fs::directory_iterator(p, ec))
        if (e.is_regular_file(ec) && e.path().extension() == ".safetensors") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    if (files.empty()) {
        std::string hint;
        for (const char* name : {"pytorch_model.bin", "model.bin"})
            if (fs::exists(p / name, ec))
                hint = " (it has " + std::string(name) +
                       ", a pickle; convert it once with: python -c \"import torch; from safetensors.torch import "
                       "save_file; save_file(torch.load('" + (p / name).string() + "', map_location='cpu'), '" +
                       (p / "model.safetensors").string() + "')\")";
        throw RuntimeError("--clip-model: no .safetensors weights in '" + path + "'" + hint);
    }
    return files;
}

// The vision tower's sizes from the tensors' shapes, then what shapes cannot tell from config.json.
ClipVisionConfig read_vision_config(const models::WeightIndex& index, const json& vcfg, const std::string& what) {
    ClipVisionConfig v;
    const auto& pe = shape(index, "vision_model.embeddings.patch_embedding.weight", what);
    if (pe.size() != 4 || pe[2] != pe[3]) throw RuntimeError(what + ": patch_embedding.weight is not [hidden, C, p, p]");
    v.hidden_size = static_cast<int>(pe[0]);
    v.num_channels = static_cast<int>(pe[1]);
    v.patch_size = static_cast<int>(pe[2]);
    const int64_t positions = shape(index, "vision_model.embeddings.position_embedding.weight", what)[0];
    const int64_t grid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(positions - 1))));
    if (grid * grid + 1 != positions) throw RuntimeError(what + ": vision position embeddings are not a square grid + 1");
    v.image_size = static_cast<int>(grid * v.patch_size);
    v.intermediate_size = static_cast<int>(shape(index, "vision_model.encoder.layers.0.mlp.fc1.weight", what)[0]);
    v.num_hidden_layers = 0;
    while (index.count("vision_model.encoder.layers." + std::to_string(v.num_hidden_layers) + ".mlp.fc1.weight"))
        ++v.num_hidden_layers;
    v.num_attention_heads = std::max(1, v.hidden_size / 64);
    read_if(vcfg, "num_attention_heads", v.num_attention_heads);
    read_if(vcfg, "layer_norm_eps", v.layer_norm_eps);
    read_if(vcfg, "hidden_act", v.hidden_act);
    int cfg_image_size = v.image_size;
    read_if(vcfg, "image_size", cfg_image_size);
    if (cfg_image_size != v.image_size)
        throw RuntimeError(what + ": config.json's vision image_size " + std::to_string(cfg_image_size) +
                           " does not match the position embeddings (" + std::to_string(v.image_size) + ")");
    if (v.hidden_act != "quick_gelu" && v.hidden_act != "gelu")
        throw RuntimeError(what + ": unsupported vision hidden_act '" + v.hidden_act + "'");
    if (v.hidden_size % v.num_attention_heads != 0)
        throw RuntimeError(what + ": vision hidden size is not a multiple of the head count");
    return v;
}

text::ClipTextConfig read_text_config(const models::WeightIndex& index, const json& tcfg, const std::string& what) {
    text::ClipTextConfig t = text::ClipTextConfig::detect_from_weights(models::shapes_of(index));
    read_if(tcfg, "num_attention_heads", t.num_attention_heads);
    read_if(tcfg, "layer_norm_eps", t.layer_norm_eps);
    read_if(tcfg, "hidden_act", t.hidden_act);
    if (t.hidden_act != "quick_gelu" && t.hidden_act != "gelu")
        throw RuntimeError(what + ": unsupported text hidden_act '" + t.hidden_act + "'");
    return t;
}

void read_preprocessor_json(const json& pc, ClipPreprocessConfig& pre, const std::string& what) {
    read_if(pc, "do_resize", pre.do_resize);
    read_if(pc, "do_center_crop", pre.do_center_crop);
    if (pc.contains("size")) {
        if (pc["size"].is_number_integer()) pre.shortest_edge = pc["size"].get<int>();
        else if (pc["size"].is_object() && pc["size"].contains("shortest_edge"))
            pre.shortest_edge = pc["size"]["shortest_edge"].get<int>();
    }
    if (pc.contains("crop_size")) {
        if (pc["crop_size"].is_number_integer()) {
            pre.crop_height = pre.crop_width = pc["crop_size"].get<int>();
        } else if (pc["crop_size"].is_object()) {
            read_if(pc["crop_size"], "height", pre.crop_height);
            read_if(pc["crop_size"], "width", pre.crop_width);
        }
    }
    if (pc.contains("image_mean") && pc["image_mean"].is_array() && pc["image_mean"].size() == 3)
        for (int c = 0; c < 3; ++c) pre.mean[c] = pc["image_mean"][c].get<double>();
    if (pc.contains("image_std") && pc["image_std"].is_array() && pc["image_std"].size() == 3)
        for (int c = 0; c < 3; ++c) pre.std[c] = pc["image_std"][c].get<double>();
    int resample = 3;
    read_if(pc, "resample", resample);
    if (resample != 3)
        spdlog::warn("{}: preprocessor_config.json asks for resample={}, multilora resizes bicubic (3)", what, resample);
}

// CLIP's defaults at the model's image size, then preprocessor_config.json.
ClipPreprocessConfig read_preprocess_config(const fs::path& dir, int image_size, const std::string& what) {
    ClipPreprocessConfig pre;
    pre.shortest_edge = pre.crop_height = pre.crop_width = image_size;
    std::error_code ec;
    if (!dir.empty() && fs::is_regular_file(dir / "preprocessor_config.json", ec)) {
        std::ifstream in(dir / "preprocessor_config.json");
        json pc = json::parse(in, nullptr, false);
        if (pc.is_object()) read_preprocessor_json(pc, pre, what);
    }
    if (pre.crop_height != image_size || pre.crop_width != image_size)
        throw RuntimeError(what + ": the preprocessor's crop size does not match the vision model's image size " +
                           std::to_string(image_size));
    return pre;
}

std::shared_ptr<const text::ClipTokenizer> clip_tokenizer(const fs::path& dir) {
    std::error_code ec;
    if (!dir.empty() && fs::is_regular_file(dir / "vocab.json", ec) && fs::is_regular_file(dir / "merges.txt", ec))
        return text::ClipTokenizer::from_folder(dir.string());
    if (!dir.empty() && fs::is_directory(dir / "tokenizer", ec))
        return text::ClipTokenizer::from_folder((dir / "tokenizer").string());
    return text::ClipTokenizer::builtin();
}

}  // namespace

std::unique_ptr<ClipScorer> ClipScorer::load(const std::string& path) {
    fs::path dir;
    const std::vector<fs::path> files = weight_files(path, dir);
    std::unique_ptr<ClipScorer> s(new ClipScorer());
    models::WeightIndex index;
    uintmax_t bytes = 0;
    std::error_code ec;
    for (const auto& f : files) {
        auto file = io::SafetensorsFile::open(f.string());
        s->keep_alive_.push_back(file);
        bytes += fs::file_size(f, ec);
        for (const auto& name : file->names()) index[name] = models::TensorSource{file, name};
    }
    s->identity_ = path + " (" + std::to_string(bytes) + " bytes of weights)";
    const std::string what = "CLIP model '" + path + "'";

    json cfg = json::object();
    if (fs::is_directory(path, ec) && fs::is_regular_file(fs::path(path) / "config.json", ec)) {
        std::ifstream in(fs::path(path) / "config.json");
        cfg = json::parse(in, nullptr, false);
        if (!cfg.is_object()) throw RuntimeError(what + ": config.json is not a JSON object");
    }
    s->vision_cfg_ = read_vision_config(index, section(cfg, "vision_config"), what);
    s->text_cfg_ = read_text_config(index, section(cfg, "text_config"), what);
    const auto& vp = shape(index, "visual_projection.weight", what);
    const auto& tp = shape(index, "text_projection.weight", what);
    if (vp.size() != 2 || tp.size() != 2 || vp[0] != tp[0])
        throw RuntimeError(what + ": visual_projection and text_projection do not project to one dimension");
    s->pre_ = read_preprocess_config(dir, s->vision_cfg_.image_size, what);

    torch::NoGradGuard no_grad;
    s->vision_ = ClipVisionModel(s->vision_cfg_, vp[0]);
    s->text_ = text::ClipTextModel(s->text_cfg_);
    s->text_proj_ = ClipTextProjection(s->text_cfg_.hidden_size, tp[0]);
    models::assign_weights(*s->vision_, index, at::kFloat, at::kCPU, what + " (vision)");
    models::assign_weights(*s->text_, index, at::kFloat, at::kCPU, what + " (text)");
    models::assign_weights(*s->text_proj_, index, at::kFloat, at::kCPU, what + " (text projection)");
    s->vision_->eval();
    s->text_->eval();
    s->tokenizer_ = clip_tokenizer(dir);
    return s;
}

at::Tensor ClipScorer::embed_images(const at::Tensor& pixel_values) {
    torch::NoGradGuard no_grad;
    return vision_->forward(pixel_values);
}

at::Tensor ClipScorer::embed_texts(const std::vector<std::string>& texts) {
    torch::NoGradGuard no_grad;
    const int64_t n = static_cast<int64_t>(texts.size());
    const int64_t t = std::min<int64_t>(text::ClipTokenizer::kMaxLength, text_cfg_.max_position_embeddings);
    at::Tensor ids = at::empty({n, t}, at::kLong);
    std::vector<int64_t> pool(n);
    for (int64_t i = 0; i < n; ++i) {
        // bos + ids + eos, truncated (eos kept) and padded to t, as the tokenizer's max_length padding.
        std::vector<int32_t> body = tokenizer_->encode(texts[i]);
        std::vector<int32_t> v;
        v.reserve(t);
        v.push_back(tokenizer_->bos_id());
        v.insert(v.end(), body.begin(), body.begin() + std::min<int64_t>(static_cast<int64_t>(body.size()), t - 2));
        v.push_back(tokenizer_->eos_id());
        v.resize(t, tokenizer_->pad_id());
        int64_t best = 0;
        for (int64_t j = 0; j < t; ++j) {
            ids[i][j] = static_cast<int64_t>(v[j]);
            if (v[j] > v[best]) best = j;  // first position of the highest id, as argmax
        }
        pool[i] = best;
    }
    at::Tensor hidden = text_->forward(ids);  // [n, t, hidden]
    at::Tensor index = torch::tensor(pool, at::kLong);
    at::Tensor pooled = hidden.index({torch::arange(n), index});
    return text_proj_->text_projection->forward(pooled);
}

double ClipScorer::score_rgb(const uint8_t* rgb, int width, int height, const std::string& text) {
    at::Tensor px = clip_preprocess(rgb, width, height, pre_).unsqueeze(0);
    at::Tensor ie = embed_images(px), te = embed_texts({text});
    double cos = at::cosine_similarity(ie, te, 1, 1e-8).item<double>();
    return 100.0 * std::max(cos, 0.0);
}

std::vector<double> ClipScorer::score_files(const std::vector<std::string>& image_paths,
                                            const std::vector<std::string>& texts, int batch) {
    if (image_paths.size() != texts.size()) throw RuntimeError("CLIPScore: one text per image is needed");
    std::vector<double> out;
    out.reserve(image_paths.size());
    batch = std::max(1, batch);
    for (size_t start = 0; start < image_paths.size(); start += batch) {
        size_t end = std::min(image_paths.size(), start + batch);
        std::vector<at::Tensor> px;
        std::vector<std::string> tx;
        for (size_t i = start; i < end; ++i) {
            int w = 0, h = 0;
            std::vector<uint8_t> rgb;
            try {
                rgb = io::decode_png_rgb(io::read_file(image_paths[i]), &w, &h);
            } catch (const std::exception& e) {
                throw RuntimeError("CLIPScore: cannot read image '" + image_paths[i] + "': " + e.what());
            }
            px.push_back(clip_preprocess(rgb.data(), w, h, pre_));
            tx.push_back(texts[i]);
        }
        at::Tensor ie = embed_images(at::stack(px)), te = embed_texts(tx);
        at::Tensor cos = at::cosine_similarity(ie, te, 1, 1e-8);
        for (int64_t i = 0; i < cos.size(0); ++i) out.push_back(100.0 * std::max(cos[i].item<double>(), 0.0));
    }
    return out;
}

}  // namespace multilora::eval
