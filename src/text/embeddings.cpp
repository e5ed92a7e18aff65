#include "multilora/text/embeddings.h"

#include <torch/torch.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>

#include "multilora/io/safetensors.h"
#include "multilora/text/clip_text_model.h"
#include "multilora/text/clip_tokenizer.h"
#include "multilora/util/error.h"
#include "multilora/util/strings.h"

namespace fs = std::filesystem;

namespace multilora::text {
namespace {

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// The tensor holding the vectors, its format, and (for diffusers) the token it names.
std::string pick_tensor(const io::SafetensorsFile& f, std::string& format, std::string& token) {
    const auto& names = f.names();
    if (std::find(names.begin(), names.end(), "emb_params") != names.end()) {
        format = "a1111";
        return "emb_params";
    }
    for (const auto& n : names)
        if (starts_with(n, "string_to_param.")) {
            format = "a1111-converted";
            return n;
        }
    if (names.size() == 1) {
        format = "diffusers";
        token = names.front();
        return names.front();
    }
    throw RuntimeError("'" + f.path() + "' is not a textual-inversion embedding (expected emb_params, string_to_param.* "
                       "or one token key as in diffusers' learned_embeds); its keys: " + join(names, ", "));
}

}  // namespace

TextualInversion read_textual_inversion(const std::string& path) {
    auto f = io::open_refusing_pickle(path, "file");
    TextualInversion e;
    e.path = path;
    std::string token;
    const std::string key = pick_tensor(*f, e.format, token);
    e.vectors = f->tensor(key, static_cast<int8_t>(at::kFloat));
    if (e.vectors.dim() == 1) e.vectors = e.vectors.unsqueeze(0);
    if (e.vectors.dim() != 2 || e.vectors.size(0) == 0)
        throw RuntimeError("'" + path + "': '" + key + "' has shape " + shape_str(e.vectors.sizes().vec()) +
                           "; an embedding is [vectors, width]");
    if (!at::isfinite(e.vectors).all().item<bool>())
        throw RuntimeError("'" + path + "' has NaN or Inf values in '" + key + "'; the file is damaged");
    auto meta = f->metadata().find("name");
    e.name = meta != f->metadata().end() ? meta->second : !token.empty() ? token : fs::path(path).stem().string();
    if (e.name.empty() || e.name.find_first_of(" \t\n") != std::string::npos)
        throw RuntimeError("'" + path + "': embedding name '" + e.name + "' is empty or has spaces");
    return e;
}

std::vector<std::string> embedding_files(const std::string& dir) {
    if (!fs::is_directory(dir)) throw RuntimeError("embedding folder not found: '" + dir + "'");
    std::vector<std::string> files;
    for (const auto& entry : fs::directory_iterator(dir)) {
        const std::string ext = lower(entry.path().extension().string());
        if (ext == ".safetensors") files.push_back(entry.path().string());
        else if (ext == ".pt" || ext == ".bin")
            spdlog::warn("{}: a pickle file, skipped. {}", entry.path().string(), io::pickle_conversion_hint());
    }
    std::sort(files.begin(), files.end());
    return files;
}

std::shared_ptr<const ClipTokenizer> add_textual_inversions(ClipTextModelImpl& encoder, const ClipTokenizer& tokenizer,
                                                            const std::vector<TextualInversion>& embeddings) {
    at::Tensor table = encoder.token_embedding->weight;
    const int64_t width = table.size(1);
    int32_t next = std::max(static_cast<int32_t>(table.size(0)), tokenizer.next_free_id());
    std::vector<std::pair<std::string, std::vector<int32_t>>> tokens;
    std::vector<at::Tensor> rows{table};
    if (table.size(0) < next) rows.push_back(at::zeros({next - table.size(0), width}, table.options()));
    std::set<std::string> seen;
    for (const auto& e : embeddings) {
        if (e.vectors.size(1) != width)
            throw RuntimeError("'" + e.path + "': embedding '" + e.name + "' is " + std::to_string(e.vectors.size(1)) +
                               " wide, but this text encoder's token embeddings are " + std::to_string(width) +
                               " (is it for SD2 or SDXL?)");
        if (!seen.insert(e.name).second) throw RuntimeError("two embeddings are named '" + e.name + "' (" + e.path + ")");
        std::vector<int32_t> ids;
        for (int64_t i = 0; i < e.vectors.size(0); ++i) ids.push_back(next++);
        tokens.emplace_back(e.name, ids);
        if (lower(e.name) != e.name) tokens.emplace_back(lower(e.name), ids);
        rows.push_back(e.vectors.to(table.device(), table.scalar_type()));
    }
    if (embeddings.empty()) return nullptr;
    c10::InferenceMode guard(false);
    encoder.token_embedding->weight.set_data(at::cat(rows, 0));
    return tokenizer.with_added_tokens(tokens);
}

}  // namespace multilora::text
