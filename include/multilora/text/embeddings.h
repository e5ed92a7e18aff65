// Textual-inversion embeddings (`--embedding FILE`, `--embedding-dir DIR`): vectors that a prompt reaches by
// the embedding's name, as A1111 and diffusers' load_textual_inversion read them. Each name becomes a token of
// its own whose ids are new rows of the text encoder's token table, one per vector, so every prompt path
// (plain, chunked, A1111 syntax) reads them alike.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace multilora::text {

class ClipTokenizer;
class ClipTextModelImpl;

struct TextualInversion {
    std::string name;    // the word a prompt uses
    std::string path;
    std::string format;  // "a1111" (emb_params), "a1111-converted" (string_to_param.*), "diffusers" (one token key)
    at::Tensor vectors;  // [n, width], float32
};

// Reads a .safetensors embedding. The name: the file's "name" metadata, else the token key of a diffusers
// learned_embeds file, else the file stem. Throws RuntimeError for a pickle file (.pt/.bin, with the
// one-line conversion), an unknown layout (naming its keys), or non-finite values.
TextualInversion read_textual_inversion(const std::string& path);

// The .safetensors files of a folder, sorted; pickle files there are skipped with a warning.
std::vector<std::string> embedding_files(const std::string& dir);

// Appends every embedding's vectors to the encoder's token table and returns the tokenizer that reads their
// names (as written, and lowercased). Throws RuntimeError when a width differs from the encoder's or two
// embeddings share a name.
std::shared_ptr<const ClipTokenizer> add_textual_inversions(ClipTextModelImpl& encoder, const ClipTokenizer& tokenizer,
                                                            const std::vector<TextualInversion>& embeddings);

}  // namespace multilora::text
