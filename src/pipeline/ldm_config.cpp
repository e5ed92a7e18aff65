#include "multilora/pipeline/ldm_config.h"

#if MULTILORA_WITH_YAML
#include <yaml-cpp/yaml.h>
#endif

#include <filesystem>

#include "multilora/models/model_configs.h"
#include "multilora/util/error.h"

namespace fs = std::filesystem;

namespace multilora::pipeline {

#if MULTILORA_WITH_YAML
namespace {

template <typename T>
std::optional<T> read_key(const YAML::Node& node, const char* key, const std::string& path, const std::string& where) {
    const YAML::Node v = node[key];
    if (!v || v.IsNull()) return std::nullopt;
    try {
        return v.as<T>();
    } catch (const YAML::Exception&) {
        throw RuntimeError("'" + path + "': " + where + "." + key + " is not " +
                           (std::is_same_v<T, bool> ? "true or false" : "a number") + " (line " +
                           std::to_string(v.Mark().line + 1) + ")");
    }
}

std::string read_string(const YAML::Node& node, const char* key) {
    const YAML::Node v = node[key];
    return v && v.IsScalar() ? v.as<std::string>() : "";
}

void read_unet_params(const YAML::Node& params, LdmConfig& c) {
    const YAML::Node unet = params["unet_config"]["params"];
    if (!unet || !unet.IsMap()) return;
    const std::string where = "model.params.unet_config.params";
    c.num_heads = read_key<int>(unet, "num_heads", c.path, where);
    c.num_head_channels = read_key<int>(unet, "num_head_channels", c.path, where);
    if (unet["context_dim"] && unet["context_dim"].IsSequence())
        throw RuntimeError("'" + c.path + "': " + where + ".context_dim is a list (an SDXL-style config); multilora runs SD1.x");
    c.context_dim = read_key<int>(unet, "context_dim", c.path, where);
    c.use_linear_in_transformer = read_key<bool>(unet, "use_linear_in_transformer", c.path, where);
    c.model_channels = read_key<int>(unet, "model_channels", c.path, where);
    c.in_channels = read_key<int>(unet, "in_channels", c.path, where);
    if (unet["transformer_depth"] && unet["transformer_depth"].IsScalar())
        c.transformer_depth = read_key<int>(unet, "transformer_depth", c.path, where);
}

}  // namespace

LdmConfig read_ldm_config(const std::string& path) {
    LdmConfig c;
    c.path = path;
    YAML::Node root;
    try {
        root = YAML::LoadFile(path);
    } catch (const YAML::BadFile&) {
        throw RuntimeError("cannot read the model config '" + path + "'");
    } catch (const YAML::Exception& e) {
        throw RuntimeError("'" + path + "' is not valid YAML (line " + std::to_string(e.mark.line + 1) + "): " + e.msg);
    }
    const YAML::Node params = root.IsMap() ? root["model"]["params"] : YAML::Node();
    if (!params || !params.IsMap())
        throw RuntimeError("'" + path + "' has no model.params section; is it an LDM model config (like v1-inference.yaml)?");
    c.model_target = root.IsMap() && root["model"].IsMap() ? read_string(root["model"], "target") : "";
    c.linear_start = read_key<double>(params, "linear_start", path, "model.params");
    c.linear_end = read_key<double>(params, "linear_end", path, "model.params");
    c.timesteps = read_key<int>(params, "timesteps", path, "model.params");
    c.scale_factor = read_key<double>(params, "scale_factor", path, "model.params");
    if (params["parameterization"]) c.parameterization = read_string(params, "parameterization");
    if (c.parameterization != "eps" && c.parameterization != "v" && c.parameterization != "x0")
        throw RuntimeError("'" + path + "': parameterization '" + c.parameterization + "' is not one of eps, v, x0");
    const std::string schedule = read_string(params, "beta_schedule");
    if (!schedule.empty() && schedule != "linear")
        throw RuntimeError("'" + path + "': beta_schedule '" + schedule + "' is not supported (only LDM's \"linear\")");
    if (params["cond_stage_config"].IsMap()) c.cond_stage_target = read_string(params["cond_stage_config"], "target");
    read_unet_params(params, c);
    return c;
}
#else
LdmConfig read_ldm_config(const std::string& path) {
    throw RuntimeError("cannot read the model config '" + path + "': this build has no yaml-cpp (install libyaml-cpp-dev and rebuild)");
}
#endif

std::string config_beside(const std::string& checkpoint) {
    if (checkpoint.empty() || fs::is_directory(checkpoint)) return "";
    for (const char* ext : {".yaml", ".yml"}) {
        fs::path p = fs::path(checkpoint).replace_extension(ext);
        std::error_code ec;
        if (fs::is_regular_file(p, ec)) return p.string();
    }
    return "";
}

namespace {

[[noreturn]] void other_model(const LdmConfig& c, const std::string& what) {
    throw RuntimeError("'" + c.path + "' does not describe this checkpoint: " + what);
}

void check_model_kind(const LdmConfig& c) {
    if (c.cond_stage_target.find("OpenCLIP") != std::string::npos)
        throw RuntimeError("'" + c.path + "' is an SD2.x config (text encoder " + c.cond_stage_target +
                           "); multilora runs SD1.x models with CLIP ViT-L");
    if (c.model_target.find("sgm.") != std::string::npos || c.model_target.find("DiffusionEngine") != std::string::npos)
        throw RuntimeError("'" + c.path + "' is an SDXL-style config (" + c.model_target + "); multilora runs SD1.x models");
}

// Head counts: num_heads for every level, or each level's width over num_head_channels (LDM's rule).
void apply_heads(const LdmConfig& c, models::UNetConfig& unet) {
    const bool by_heads = c.num_heads && *c.num_heads > 0;
    const bool by_width = !by_heads && c.num_head_channels && *c.num_head_channels > 0;
    if (!by_heads && !by_width) return;
    for (size_t i = 0; i < unet.block_out_channels.size(); ++i) {
        const int ch = unet.block_out_channels[i];
        const int heads = by_heads ? *c.num_heads : ch / *c.num_head_channels;
        if (heads <= 0 || ch % heads != 0 || (by_width && ch % *c.num_head_channels != 0))
            other_model(c, "level " + std::to_string(i) + " has " + std::to_string(ch) + " channels, which " +
                               (by_heads ? "num_heads " + std::to_string(*c.num_heads)
                                         : "num_head_channels " + std::to_string(*c.num_head_channels)) +
                               " does not divide");
        unet.num_attention_heads[i] = heads;
    }
}

// Fields the weights already fix must agree with them.
void check_against_weights(const LdmConfig& c, const models::UNetConfig& unet) {
    if (c.context_dim && *c.context_dim != unet.cross_attention_dim)
        other_model(c, "context_dim " + std::to_string(*c.context_dim) + ", but the weights' cross-attention reads " +
                           std::to_string(unet.cross_attention_dim) + "-wide text features");
    if (c.use_linear_in_transformer && *c.use_linear_in_transformer != unet.use_linear_projection)
        other_model(c, std::string("use_linear_in_transformer ") + (*c.use_linear_in_transformer ? "true" : "false") +
                           ", but the weights' proj_in is " + (unet.use_linear_projection ? "a Linear" : "a 1x1 convolution"));
    if (c.model_channels && *c.model_channels != unet.block_out_channels.at(0))
        other_model(c, "model_channels " + std::to_string(*c.model_channels) + ", but the weights' first level has " +
                           std::to_string(unet.block_out_channels.at(0)));
    if (c.transformer_depth && *c.transformer_depth != unet.transformer_layers_per_block)
        other_model(c, "transformer_depth " + std::to_string(*c.transformer_depth) + ", but the weights have " +
                           std::to_string(unet.transformer_layers_per_block));
    if (c.in_channels && *c.in_channels != unet.in_channels)
        other_model(c, "in_channels " + std::to_string(*c.in_channels) + ", but the weights take " +
                           std::to_string(unet.in_channels) + (*c.in_channels == 9 ? " (inpainting models are not supported)" : ""));
}

}  // namespace

void apply_ldm_config(const LdmConfig& c, models::UNetConfig& unet, models::VaeConfig& vae, nlohmann::json& scheduler) {
    check_model_kind(c);
    check_against_weights(c, unet);
    apply_heads(c, unet);
    if (c.linear_start) scheduler["beta_start"] = *c.linear_start;
    if (c.linear_end) scheduler["beta_end"] = *c.linear_end;
    if (c.timesteps) {
        if (*c.timesteps < 2) throw RuntimeError("'" + c.path + "': timesteps " + std::to_string(*c.timesteps) + " is too few");
        scheduler["num_train_timesteps"] = *c.timesteps;
    }
    if (c.parameterization == "v") scheduler["prediction_type"] = "v_prediction";
    if (c.parameterization == "x0") scheduler["prediction_type"] = "sample";
    if (c.scale_factor) {
        if (!(*c.scale_factor > 0)) throw RuntimeError("'" + c.path + "': scale_factor must be positive");
        vae.scaling_factor = *c.scale_factor;
    }
}

}  // namespace multilora::pipeline
