#include "multilora/pipeline/model_loader.h"

#include <torch/torch.h>

#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "multilora/io/atomic_file.h"
#include "multilora/io/safetensors.h"
#include "multilora/models/ldm_key_map.h"
#include "multilora/pipeline/ldm_config.h"
#include "multilora/text/embeddings.h"
#include "multilora/models/weight_loading.h"
#include "multilora/sampling/scheduler.h"
#include "multilora/util/error.h"
#include "multilora/util/strings.h"

namespace fs = std::filesystem;

namespace multilora::pipeline {

using models::WeightIndex;

c10::ScalarType parse_dtype(const std::string& name) {
    if (name == "fp32" || name == "float32") return at::kFloat;
    if (name == "bf16" || name == "bfloat16") return at::kBFloat16;
    if (name == "fp16" || name == "float16") return at::kHalf;
    throw UsageError("unknown dtype '" + name + "' (expected fp32, bf16 or fp16)");
}

c10::Device parse_device(const std::string& name) {
    if (name == "cpu") return c10::Device(c10::DeviceType::CPU);
    if (name.rfind("cuda", 0) == 0) {
        if (!torch::cuda::is_available())
            throw RuntimeError("--device " + name + " was asked for, but this libtorch build sees no CUDA device");
        return c10::Device(name);
    }
    throw UsageError("unknown device '" + name + "' (expected cpu or cuda[:N])");
}

namespace {

std::shared_ptr<io::SafetensorsFile> open_weights(const std::string& path) {
    if (!fs::exists(path)) throw RuntimeError("model file not found: '" + path + "'");
    return io::open_refusing_pickle(path, "checkpoint");
}

nlohmann::json read_json_file(const fs::path& path) {
    try {
        return nlohmann::json::parse(io::read_file(path.string()));
    } catch (const nlohmann::json::exception& e) {
        throw RuntimeError("invalid JSON in '" + path.string() + "': " + e.what());
    }
}

// ------------------------------------------------------------------ LDM single file

// The part of a UNet config that the LDM key layout depends on: levels, layers per level, and which up
// levels carry attention (that moves the upsampler's slot).
models::UNetConfig provisional_unet_config(const std::vector<std::string>& keys) {
    std::set<int> inputs, downsample_blocks;
    std::set<int> output_attn;
    const std::regex in_re(R"(^model\.diffusion_model\.input_blocks\.(\d+)\.(\d+)\.(op\.)?)");
    const std::regex out_attn_re(R"(^model\.diffusion_model\.output_blocks\.(\d+)\.1\.proj_in\.)");
    std::smatch m;
    for (const auto& k : keys) {
        if (std::regex_search(k, m, in_re)) {
            int idx = std::stoi(m[1]);
            inputs.insert(idx);
            if (m[3].matched) downsample_blocks.insert(idx);
        } else if (std::regex_search(k, m, out_attn_re)) {
            output_attn.insert(std::stoi(m[1]));
        }
    }
    if (inputs.empty()) throw RuntimeError("no UNet tensors (model.diffusion_model.input_blocks.*) found");
    int levels = static_cast<int>(downsample_blocks.size()) + 1;
    int blocks = static_cast<int>(inputs.size()) - 1;  // without conv_in
    int layers = (blocks - (levels - 1)) / levels;
    models::UNetConfig cfg;
    cfg.layers_per_block = layers;
    cfg.block_out_channels.assign(levels, 0);
    cfg.num_attention_heads.assign(levels, 8);
    cfg.down_block_types.assign(levels, "DownBlock2D");
    cfg.up_block_types.assign(levels, "UpBlock2D");
    for (int i = 0; i < levels; ++i)
        if (output_attn.count(i * (layers + 1))) cfg.up_block_types[i] = "CrossAttnUpBlock2D";
    return cfg;
}

models::VaeConfig provisional_vae_config(const std::vector<std::string>& keys, const std::string& prefix) {
    std::set<int> ups;
    const std::regex up_re("^" + std::regex_replace(prefix, std::regex(R"(\.)"), R"(\.)") + R"(decoder\.up\.(\d+)\.)");
    std::smatch m;
    for (const auto& k : keys)
        if (std::regex_search(k, m, up_re)) ups.insert(std::stoi(m[1]));
    if (ups.empty()) throw RuntimeError("no VAE decoder tensors (" + prefix + "decoder.up.*) found");
    models::VaeConfig cfg;
    cfg.block_out_channels.assign(ups.size(), 0);
    return cfg;
}

nlohmann::json metadata_json(const io::SafetensorsFile& f, const std::string& key) {
    auto it = f.metadata().find(key);
    if (it == f.metadata().end()) return nullptr;
    try {
        return nlohmann::json::parse(it->second);
    } catch (const nlohmann::json::exception&) {
        throw RuntimeError("'" + f.path() + "': metadata '" + key + "' is not valid JSON");
    }
}

// VAE keys of a single file: LDM names (with or without first_stage_model.) or diffusers names,
// including the legacy query/key/value/proj_attn spelling of the mid-block attention.
WeightIndex index_vae(const std::shared_ptr<io::SafetensorsFile>& file, const std::string& ldm_prefix,
                      const models::VaeConfig& provisional, std::vector<std::string>& unused) {
    WeightIndex idx;
    static const std::vector<std::pair<std::string, std::string>> legacy{
        {".query.", ".to_q."}, {".key.", ".to_k."}, {".value.", ".to_v."}, {".proj_attn.", ".to_out.0."}};
    for (const auto& key : file->names()) {
        std::string name;
        if (!ldm_prefix.empty() && !starts_with(key, ldm_prefix)) continue;
        std::string k = key.substr(ldm_prefix.size());
        if (k.find("down_blocks.") != std::string::npos || k.find("up_blocks.") != std::string::npos ||
            k.find("mid_block.") != std::string::npos || k.find("conv_norm_out") != std::string::npos) {
            name = k;  // already diffusers-named
            for (const auto& [from, to] : legacy) {
                auto pos = name.find(from);
                if (pos != std::string::npos && name.find("mid_block.attentions.") != std::string::npos)
                    name.replace(pos, from.size(), to);
            }
        } else {
            name = models::vae_key_from_ldm(k, provisional);
        }
        if (name.empty()) {
            unused.push_back(key);
            continue;
        }
        idx[name] = {file, key};
    }
    return idx;
}


}  // namespace

std::string detect_layout(const std::string& path) {
    if (fs::is_directory(path)) {
        if (fs::exists(fs::path(path) / "model_index.json") || fs::exists(fs::path(path) / "unet"))
            return "diffusers-folder";
        throw RuntimeError("'" + path + "' is a folder but not a diffusers model (no model_index.json or unet/)");
    }
    if (!fs::exists(path)) throw RuntimeError("model not found: '" + path + "'");
    return "ldm-single-file";
}

namespace {

// An LDM single file, split into its three models' diffusers-named indexes, with their configs.
struct SingleFileIndex {
    std::shared_ptr<io::SafetensorsFile> file;
    WeightIndex unet, text, vae;
    std::vector<std::string> unused;
    models::UNetConfig unet_cfg;
    models::VaeConfig vae_cfg;
    text::ClipTextConfig text_cfg;
};

SingleFileIndex index_single_file(const std::string& path) {
    SingleFileIndex s;
    s.file = open_weights(path);
    const auto& keys = s.file->names();
    models::UNetConfig unet_prov = provisional_unet_config(keys);
    models::VaeConfig vae_prov = provisional_vae_config(keys, models::kLdmVaePrefix);
    for (const auto& key : keys) {
        if (starts_with(key, models::kLdmUnetPrefix)) {
            std::string name = models::unet_key_from_ldm(key, unet_prov);
            if (name.empty()) s.unused.push_back(key);
            else s.unet[name] = {s.file, key};
        } else if (starts_with(key, models::kLdmTextPrefix)) {
            std::string name = models::text_key_from_ldm(key);
            if (name.empty() || name == "text_model.embeddings.position_ids") s.unused.push_back(key);
            else s.text[name] = {s.file, key};
        } else if (!starts_with(key, models::kLdmVaePrefix)) {
            s.unused.push_back(key);
        }
    }
    s.vae = index_vae(s.file, models::kLdmVaePrefix, vae_prov, s.unused);
    if (s.text.empty())
        throw RuntimeError("'" + path + "' has no CLIP text encoder (cond_stage_model.transformer.*); "
                           "is it an SD1.x checkpoint? (SD2.x and SDXL files are not supported)");
    // Configs: the project's own files carry them as metadata; otherwise they are read off the shapes.
    nlohmann::json unet_meta = metadata_json(*s.file, "multilora.unet_config");
    nlohmann::json vae_meta = metadata_json(*s.file, "multilora.vae_config");
    nlohmann::json text_meta = metadata_json(*s.file, "multilora.text_encoder_config");
    s.unet_cfg = unet_meta.is_null() ? models::UNetConfig::detect_from_weights(models::shapes_of(s.unet))
                                     : models::UNetConfig::from_json(unet_meta);
    s.vae_cfg = vae_meta.is_null() ? models::VaeConfig::detect_from_weights(models::shapes_of(s.vae))
                                   : models::VaeConfig::from_json(vae_meta);
    s.text_cfg = text_meta.is_null() ? text::ClipTextConfig::detect_from_weights(models::shapes_of(s.text))
                                     : text::ClipTextConfig::from_json(text_meta);
    return s;
}

void load_single_file(const LoadOptions& opt, StableDiffusionModel& model) {
    SingleFileIndex s = index_single_file(opt.model_path);
    model.scheduler_config = sampling::sd15_scheduler_config();
    model.model_config = opt.model_config.empty() ? config_beside(opt.model_path) : opt.model_config;
    if (!model.model_config.empty()) {
        if (!fs::is_regular_file(model.model_config)) throw RuntimeError("model config not found: '" + model.model_config + "'");
        apply_ldm_config(read_ldm_config(model.model_config), s.unet_cfg, s.vae_cfg, model.scheduler_config);
        spdlog::info("model config {} applied", model.model_config);
    }
    model.model_files = {opt.model_path};
    model.unused_tensors = s.unused;
    model.unet = models::UNet2DConditionModel(s.unet_cfg);
    model.text_encoder = text::ClipTextModel(s.text_cfg);
    auto unused = models::assign_weights(*model.unet, s.unet, model.dtype, model.device, "UNet in '" + opt.model_path + "'");
    model.unused_tensors.insert(model.unused_tensors.end(), unused.begin(), unused.end());
    unused = models::assign_weights(*model.text_encoder, s.text, model.dtype, model.device,
                                    "text encoder in '" + opt.model_path + "'");
    model.unused_tensors.insert(model.unused_tensors.end(), unused.begin(), unused.end());
    if (opt.vae_path.empty()) {
        model.vae = models::AutoencoderKL(s.vae_cfg);
        unused = models::assign_weights(*model.vae, s.vae, model.dtype, model.device, "VAE in '" + opt.model_path + "'");
        model.unused_tensors.insert(model.unused_tensors.end(), unused.begin(), unused.end());
    } else {
        for (const auto& [name, src] : s.vae) model.unused_tensors.push_back(src.key);
    }
    model.tokenizer = text::ClipTokenizer::builtin();
    model.tokenizer_source = "builtin";
}

nlohmann::json dtype_counts(const io::SafetensorsFile& f) {
    nlohmann::json counts = nlohmann::json::object();
    for (const auto& n : f.names()) counts[f.info(n).dtype] = counts.value(f.info(n).dtype, 0) + 1;
    return counts;
}

// A diffusers component folder's weights: plain, fp16 variant, or sharded with an index.
WeightIndex index_component(const fs::path& dir, const std::string& stem, std::vector<std::string>& files) {
    std::vector<std::string> candidates{stem + ".safetensors", stem + ".fp16.safetensors"};
    for (const auto& c : candidates) {
        fs::path p = dir / c;
        if (fs::exists(p)) {
            auto f = open_weights(p.string());
            files.push_back(p.string());
            WeightIndex idx;
            for (const auto& k : f->names()) idx[k] = {f, k};
            return idx;
        }
    }
    fs::path index_path = dir / (stem + ".safetensors.index.json");
    if (fs::exists(index_path)) {
        auto j = read_json_file(index_path);
        std::map<std::string, std::shared_ptr<io::SafetensorsFile>> shards;
        WeightIndex idx;
        for (const auto& [name, shard] : j.at("weight_map").items()) {
            std::string s = shard.get<std::string>();
            if (!shards.count(s)) {
                shards[s] = open_weights((dir / s).string());
                files.push_back((dir / s).string());
            }
            idx[name] = {shards[s], name};
        }
        return idx;
    }
    for (const auto& ext : {".bin", ".ckpt", ".pt"})
        if (fs::exists(dir / (stem + ext)))
            throw RuntimeError("'" + (dir / (stem + ext)).string() + "' is a PyTorch pickle. " + io::pickle_conversion_hint());
    throw RuntimeError("no weights in '" + dir.string() + "' (expected " + stem + ".safetensors)");
}

void load_folder(const LoadOptions& opt, StableDiffusionModel& model) {
    fs::path root(opt.model_path);
    auto config_of = [&](const std::string& sub) {
        fs::path p = root / sub / "config.json";
        if (!fs::exists(p)) throw RuntimeError("missing '" + p.string() + "'");
        return read_json_file(p);
    };
    WeightIndex unet_idx = index_component(root / "unet", "diffusion_pytorch_model", model.model_files);
    WeightIndex text_idx = index_component(root / "text_encoder", "model", model.model_files);
    // transformers files may omit the "text_model." prefix (old CLIPTextModel checkpoints).
    WeightIndex text_named;
    for (const auto& [k, src] : text_idx) {
        std::string name = models::text_key_from_ldm(k);
        if (name.empty() || name == "text_model.embeddings.position_ids") model.unused_tensors.push_back(k);
        else text_named[name] = src;
    }
    model.unet = models::UNet2DConditionModel(models::UNetConfig::from_json(config_of("unet")));
    model.text_encoder = text::ClipTextModel(text::ClipTextConfig::from_json(config_of("text_encoder")));
    auto unused = models::assign_weights(*model.unet, unet_idx, model.dtype, model.device, "UNet in '" + (root / "unet").string() + "'");
    model.unused_tensors.insert(model.unused_tensors.end(), unused.begin(), unused.end());
    unused = models::assign_weights(*model.text_encoder, text_named, model.dtype, model.device,
                                    "text encoder in '" + (root / "text_encoder").string() + "'");
    model.unused_tensors.insert(model.unused_tensors.end(), unused.begin(), unused.end());
    if (opt.vae_path.empty()) {
        std::vector<std::string> vae_files;
        WeightIndex raw = index_component(root / "vae", "diffusion_pytorch_model", vae_files);
        model.model_files.insert(model.model_files.end(), vae_files.begin(), vae_files.end());
        auto vae_cfg = models::VaeConfig::from_json(config_of("vae"));
        WeightIndex vae_idx = index_vae(raw.begin()->second.file, "", vae_cfg, model.unused_tensors);
        model.vae = models::AutoencoderKL(vae_cfg);
        unused = models::assign_weights(*model.vae, vae_idx, model.dtype, model.device, "VAE in '" + (root / "vae").string() + "'");
        model.unused_tensors.insert(model.unused_tensors.end(), unused.begin(), unused.end());
    }
    fs::path sched = root / "scheduler" / "scheduler_config.json";
    model.scheduler_config = fs::exists(sched) ? read_json_file(sched) : sampling::sd15_scheduler_config();
    fs::path tok = root / "tokenizer";
    if (fs::exists(tok / "vocab.json") && fs::exists(tok / "merges.txt")) {
        model.tokenizer = text::ClipTokenizer::from_folder(tok.string());
        model.tokenizer_source = tok.string();
    } else {
        model.tokenizer = text::ClipTokenizer::builtin();
        model.tokenizer_source = "builtin";
    }
}

void load_separate_vae(const LoadOptions& opt, StableDiffusionModel& model) {
    const std::string& path = opt.vae_path;
    if (!fs::exists(path)) throw RuntimeError("VAE not found: '" + path + "'");
    models::VaeConfig cfg;
    WeightIndex idx;
    std::vector<std::string> ignored;
    if (fs::is_directory(path)) {
        WeightIndex raw = index_component(path, "diffusion_pytorch_model", model.vae_files);
        fs::path cfg_path = fs::path(path) / "config.json";
        cfg = fs::exists(cfg_path) ? models::VaeConfig::from_json(read_json_file(cfg_path))
                                   : models::VaeConfig::detect_from_weights(models::shapes_of(raw));
        idx = index_vae(raw.begin()->second.file, "", cfg, ignored);
    } else {
        auto file = open_weights(path);
        model.vae_files = {path};
        const auto& keys = file->names();
        bool prefixed = std::any_of(keys.begin(), keys.end(),
                                    [](const std::string& k) { return starts_with(k, models::kLdmVaePrefix); });
        std::string prefix = prefixed ? models::kLdmVaePrefix : "";
        bool ldm = std::any_of(keys.begin(), keys.end(), [&](const std::string& k) {
            return k.find("decoder.up.") != std::string::npos;
        });
        models::VaeConfig prov = ldm ? provisional_vae_config(keys, prefix) : models::VaeConfig{};
        idx = index_vae(file, prefix, prov, ignored);
        nlohmann::json meta = metadata_json(*file, "multilora.vae_config");
        cfg = meta.is_null() ? models::VaeConfig::detect_from_weights(models::shapes_of(idx))
                             : models::VaeConfig::from_json(meta);
    }
    for (const auto& k : ignored) model.unused_tensors.push_back(k);
    model.vae = models::AutoencoderKL(cfg);
    auto unused = models::assign_weights(*model.vae, idx, model.dtype, model.device, "VAE in '" + path + "'");
    model.unused_tensors.insert(model.unused_tensors.end(), unused.begin(), unused.end());
}

}  // namespace

nlohmann::json describe_checkpoint(const std::string& path) {
    nlohmann::json j;
    j["path"] = path;
    j["layout"] = detect_layout(path);
    if (j["layout"] == "ldm-single-file") {
        SingleFileIndex s = index_single_file(path);
        j["tensor_count"] = s.file->names().size();
        j["dtypes"] = dtype_counts(*s.file);
        j["unused_tensor_count"] = s.unused.size();
        j["unet_config"] = s.unet_cfg.to_json();
        j["vae_config"] = s.vae_cfg.to_json();
        j["text_encoder_config"] = s.text_cfg.to_json();
        j["config_source"] = s.file->metadata().count("multilora.unet_config") ? "metadata" : "detected from shapes";
        return j;
    }
    fs::path root(path);
    size_t tensors = 0;
    nlohmann::json dtypes = nlohmann::json::object();
    for (const auto& [sub, stem] : std::vector<std::pair<std::string, std::string>>{
             {"unet", "diffusion_pytorch_model"}, {"text_encoder", "model"}, {"vae", "diffusion_pytorch_model"}}) {
        std::vector<std::string> files;
        WeightIndex idx = index_component(root / sub, stem, files);
        tensors += idx.size();
        for (const auto& [name, src] : idx) {
            const std::string& dt = src.file->info(src.key).dtype;
            dtypes[dt] = dtypes.value(dt, 0) + 1;
        }
        fs::path cfg = root / sub / "config.json";
        if (fs::exists(cfg)) j[(sub == "text_encoder" ? std::string("text_encoder") : sub) + "_config"] = read_json_file(cfg);
    }
    j["tensor_count"] = tensors;
    j["dtypes"] = dtypes;
    j["config_source"] = "config.json";
    return j;
}

namespace {

// --embedding files, then each --embedding-dir's, appended to the text encoder and the tokenizer.
void add_embeddings(const LoadOptions& opt, StableDiffusionModel& model) {
    std::vector<std::string> files = opt.embeddings;
    for (const auto& dir : opt.embedding_dirs)
        for (const auto& f : text::embedding_files(dir)) files.push_back(f);
    if (files.empty()) return;
    std::vector<text::TextualInversion> embeddings;
    for (const auto& f : files) {
        if (!fs::is_regular_file(f)) throw RuntimeError("embedding not found: '" + f + "'");
        embeddings.push_back(text::read_textual_inversion(f));
    }
    model.tokenizer = text::add_textual_inversions(*model.text_encoder, *model.tokenizer, embeddings);
    for (const auto& e : embeddings) {
        model.embeddings.push_back({{"name", e.name}, {"path", e.path}, {"format", e.format}, {"vectors", e.vectors.size(0)}});
        spdlog::info("embedding '{}' ({} vector(s)) from {}", e.name, e.vectors.size(0), e.path);
    }
}

}  // namespace

StableDiffusionModel load_stable_diffusion(const LoadOptions& opt) {
    StableDiffusionModel model;
    model.dtype = parse_dtype(opt.dtype);
    model.device = parse_device(opt.device);
    model.layout = detect_layout(opt.model_path);
    if (model.layout == "diffusers-folder" && !opt.model_config.empty())
        throw UsageError("--model-config is for single-file checkpoints; '" + opt.model_path +
                         "' is a diffusers folder, whose configs are in its folders");
    if (model.layout == "diffusers-folder") load_folder(opt, model);
    else load_single_file(opt, model);
    if (!opt.vae_path.empty()) load_separate_vae(opt, model);
    add_embeddings(opt, model);
    for (auto* m : std::initializer_list<torch::nn::Module*>{model.unet.get(), model.text_encoder.get(), model.vae.get()})
        m->eval();
    for (const auto& k : model.unused_tensors) spdlog::debug("unused tensor: {}", k);
    if (!model.unused_tensors.empty())
        spdlog::debug("{} tensor(s) in the checkpoint were not used", model.unused_tensors.size());
    return model;
}

size_t release_resident_weights(const torch::nn::Module& part) {
    size_t released = 0;
    for (const auto& t : part.parameters())
        if (t.defined() && t.device().is_cpu()) released += io::release_mapped_pages(t.data_ptr(), t.nbytes());
    for (const auto& t : part.buffers())
        if (t.defined() && t.device().is_cpu()) released += io::release_mapped_pages(t.data_ptr(), t.nbytes());
    return released;
}

}  // namespace multilora::pipeline
