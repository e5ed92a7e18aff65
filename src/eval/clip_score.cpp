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

models::ClipTextConfig ClipVisionConfig::encoder_config() const {
    models::ClipTextConfig c;
    c.hidden_size = hidden_size;
    c.intermediate_size = intermediate_size;
    c.num_hidden_layers = num_hidden_layers;
    c.num_attention_heads = num_attention_heads;
    c.layer_norm_eps = layer_norm_eps;
    c.hidden_act = hidden_act;
    return c;
}

ClipVisionModelImpl::ClipVisionModelImpl(const ClipVisionConfig& c, int64_t projection_dim) : cfg(c) {
    const int64_t grid = cfg.image_size / cfg.patch_size;
    auto vision = register_module("vision_model", std::make_shared<torch::nn::Module>());
    auto emb = vision->register_module("embeddings", std::make_shared<torch::nn::Module>());
    auto patch = emb->register_module("patch_embedding", std::make_shared<torch::nn::Module>());
    patch_weight = patch->register_parameter(
        "weight", torch::zeros({cfg.hidden_size, cfg.num_channels, cfg.patch_size, cfg.patch_size}), false);
    class_embedding = emb->register_parameter("class_embedding", torch::zeros({cfg.hidden_size}), false);
    auto pos = emb->register_module("position_embedding", std::make_shared<torch::nn::Module>());
    position_embedding = pos->register_parameter("weight", torch::zeros({grid * grid + 1, cfg.hidden_size}), false);
    pre_layrnorm = vision->register_module("pre_layrnorm", models::LayerNorm(cfg.hidden_size, cfg.layer_norm_eps));
    auto encoder = vision->register_module("encoder", std::make_shared<torch::nn::Module>());
    layers = encoder->register_module("layers", torch::nn::ModuleList());
    const models::ClipTextConfig block = cfg.encoder_config();
    for (int i = 0; i < cfg.num_hidden_layers; ++i) layers->push_back(text::ClipEncoderLayer(block));
    post_layernorm = vision->register_module("post_layernorm", models::LayerNorm(cfg.hidden_size, cfg.layer_norm_eps));
    visual_projection = register_module("visual_projection", models::Linear(cfg.hidden_size, projection_dim, false));
}

at::Tensor ClipVisionModelImpl::forward(const at::Tensor& pixel_values) {
    if (pixel_values.dim() != 4 || pixel_values.size(1) != cfg.num_channels ||
        pixel_values.size(2) != cfg.image_size || pixel_values.size(3) != cfg.image_size)
        throw RuntimeError("CLIP vision model: expected pixel values [B, " + std::to_string(cfg.num_channels) + ", " +
                           std::to_string(cfg.image_size) + ", " + std::to_string(cfg.image_size) + "]");
    const int64_t b = pixel_values.size(0);
    at::Tensor x = at::conv2d(pixel_values, patch_weight, {}, {cfg.patch_size, cfg.patch_size});
    x = x.flatten(2).transpose(1, 2);  // [B, N, hidden]
    at::Tensor cls = class_embedding.view({1, 1, -1}).expand({b, 1, class_embedding.size(0)});
    x = at::cat({cls, x}, 1) + position_embedding.unsqueeze(0);
    x = pre_layrnorm->forward(x);
    const int64_t t = x.size(1);
    at::Tensor no_mask = at::zeros({t, t}, x.options());
    for (const auto& layer : *layers) x = layer->as<text::ClipEncoderLayerImpl>()->forward(x, no_mask);
    at::Tensor pooled = post_layernorm->forward(x.select(1, 0));
    return visual_projection->forward(pooled);
}

ClipTextProjectionImpl::ClipTextProjectionImpl(int64_t hidden, int64_t projection_dim) {
    text_projection = register_module("text_projection", models::Linear(hidden, projection_dim, false));
}

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

std::unique_ptr<ClipScorer> ClipScorer::load(const std::string& path) {
    fs::path p(path);
    std::error_code ec;
    if (!fs::exists(p, ec)) throw RuntimeError("--clip-model: '" + path + "' not found");
    std::vector<fs::path> files;
    fs::path dir;
    if (fs::is_directory(p, ec)) {
        dir = p;
        if (fs::is_regular_file(p / "model.safetensors", ec)) {
            files.push_back(p / "model.safetensors");
        } else {
            for (const auto& e : fs::directory_iterator(p, ec))
                if (e.is_regular_file(ec) && e.path().extension() == ".safetensors") files.push_back(e.path());
            std::sort(files.begin(), files.end());
        }
        if (files.empty()) {
            std::string hint;
            for (const char* name : {"pytorch_model.bin", "model.bin"})
                if (fs::exists(p / name, ec))
                    hint = " (it has " + std::string(name) +
                           ", a pickle; convert it once with: python -c \"import torch; from safetensors.torch import "
                           "save_file; save_file(torch.load('" + (p / name).string() +
                           "', map_location='cpu'), '" + (p / "model.safetensors").string() + "')\")";
            throw RuntimeError("--clip-model: no .safetensors weights in '" + path + "'" + hint);
        }
    } else {
        if (io::looks_like_pickle_checkpoint(path))
            throw RuntimeError("--clip-model: '" + path + "' is a pickle checkpoint; multilora reads safetensors only");
        files.push_back(p);
        dir = p.parent_path();
    }

    std::unique_ptr<ClipScorer> s(new ClipScorer());
    models::WeightIndex index;
    uintmax_t bytes = 0;
    for (const auto& f : files) {
        auto file = io::SafetensorsFile::open(f.string());
        s->keep_alive_.push_back(file);
        bytes += fs::file_size(f, ec);
        for (const auto& name : file->names()) index[name] = models::TensorSource{file, name};
    }
    s->identity_ = path + " (" + std::to_string(bytes) + " bytes of weights)";
    const std::string what = "CLIP model '" + path + "'";

    json cfg = json::object();
    if (fs::is_directory(p, ec) && fs::is_regular_file(p / "config.json", ec)) {
        std::ifstream in(p / "config.json");
        cfg = json::parse(in, nullptr, false);
        if (!cfg.is_object()) throw RuntimeError(what + ": config.json is not a JSON object");
    }
    json tcfg = section(cfg, "text_config"), vcfg = section(cfg, "vision_config");

    // Shapes first, then what shapes cannot tell from the config.
    ClipVisionConfig& v = s->vision_cfg_;
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

    s->text_cfg_ = models::ClipTextConfig::detect_from_weights(models::shapes_of(index));
    read_if(tcfg, "num_attention_heads", s->text_cfg_.num_attention_heads);
    read_if(tcfg, "layer_norm_eps", s->text_cfg_.layer_norm_eps);
    read_if(tcfg, "hidden_act", s->text_cfg_.hidden_act);
    if (s->text_cfg_.hidden_act != "quick_gelu" && s->text_cfg_.hidden_act != "gelu")
        throw RuntimeError(what + ": unsupported text hidden_act '" + s->text_cfg_.hidden_act + "'");

    const auto& vp = shape(index, "visual_projection.weight", what);
    const auto& tp = shape(index, "text_projection.weight", what);
    if (vp.size() != 2 || tp.size() != 2 || vp[0] != tp[0])
        throw RuntimeError(what + ": visual_projection and text_projection do not project to one dimension");

    // Preprocessing: CLIP's defaults at the model's image size, then preprocessor_config.json.
    ClipPreprocessConfig& pre = s->pre_;
    pre.shortest_edge = pre.crop_height = pre.crop_width = v.image_size;
    if (!dir.empty() && fs::is_regular_file(dir / "preprocessor_config.json", ec)) {
        std::ifstream in(dir / "preprocessor_config.json");
        json pc = json::parse(in, nullptr, false);
        if (pc.is_object()) {
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
                spdlog::warn("{}: preprocessor_config.json asks for resample={}, multilora resizes bicubic (3)", what,
                             resample);
        }
    }
    if (pre.crop_height != v.image_size || pre.crop_width != v.image_size)
        throw RuntimeError(what + ": the preprocessor's crop size does not match the vision model's image size " +
                           std::to_string(v.image_size));

    torch::NoGradGuard no_grad;
    s->vision_ = ClipVisionModel(v, vp[0]);
    s->text_ = text::ClipTextModel(s->text_cfg_);
    s->text_proj_ = ClipTextProjection(s->text_cfg_.hidden_size, tp[0]);
    models::assign_weights(*s->vision_, index, at::kFloat, at::kCPU, what + " (vision)");
    models::assign_weights(*s->text_, index, at::kFloat, at::kCPU, what + " (text)");
    models::assign_weights(*s->text_proj_, index, at::kFloat, at::kCPU, what + " (text projection)");
    s->vision_->eval();
    s->text_->eval();

    if (!dir.empty() && fs::is_regular_file(dir / "vocab.json", ec) && fs::is_regular_file(dir / "merges.txt", ec))
        s->tokenizer_ = text::ClipTokenizer::from_folder(dir.string());
    else if (!dir.empty() && fs::is_directory(dir / "tokenizer", ec))
        s->tokenizer_ = text::ClipTokenizer::from_folder((dir / "tokenizer").string());
    else
        s->tokenizer_ = text::ClipTokenizer::builtin();
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
