// CLIP's byte-level BPE tokenizer, as used by Stable Diffusion v1.5 (transformers' CLIPTokenizer).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace multilora::text {

class ClipTokenizer {
public:
    static constexpr int32_t kBosId = 49406;  // <|startoftext|>
    static constexpr int32_t kEosId = 49407;  // <|endoftext|>
    static constexpr int kMaxLength = 77;

    // The vocabulary built into the binary (CLIP's MIT-licensed merges, third_party/clip).
    static std::shared_ptr<const ClipTokenizer> builtin();
    // A diffusers tokenizer/ folder (vocab.json + merges.txt); pad id from special_tokens_map.json /
    // tokenizer_config.json when given (SD1.5 pads with <|endoftext|>). Throws RuntimeError when unreadable.
    static std::shared_ptr<const ClipTokenizer> from_folder(const std::string& dir);

    // Text -> BPE ids with no bos/eos, no truncation.
    std::vector<int32_t> encode(const std::string& text) const;

    // bos + ids + eos, truncated to 77 (eos kept last) and padded with pad_id() to 77.
    // `truncated` (when not null) tells whether tokens were dropped.
    std::vector<int32_t> encode_padded(const std::string& text, bool* truncated = nullptr) const;

    // A1111/sd.cpp-style long prompts: ids split into chunks of 75, each wrapped as bos + chunk + eos and
    // padded to 77. An empty prompt gives one chunk.
    std::vector<std::vector<int32_t>> encode_chunks(const std::string& text) const;

    int32_t pad_id() const { return pad_id_; }
    size_t vocab_size() const { return encoder_.size(); }
    // Id -> token string (byte-level unicode form, "</w>" marks word ends); for debugging and tests.
    std::string id_to_token(int32_t id) const;

private:
    ClipTokenizer() = default;
    void build_from_merges(const std::vector<std::pair<std::string, std::string>>& merges);
    std::vector<std::string> bpe(const std::string& word) const;

    std::unordered_map<std::string, int32_t> encoder_;
    std::vector<std::string> decoder_;
    std::unordered_map<std::string, int> merge_ranks_;  // key: first + ' ' + second
    int32_t pad_id_ = kEosId;
    mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace multilora::text
