// The catalogue of bad inputs (docs/errors.md): each row of the document's table is one test here. The row
// gives the exit code and a piece of the message; this file gives how to make the input, and checks that
// nothing partial is left on disk (by default: no file at all under the run's output folder, and no temporary
// file anywhere in the case's folder). The document is the source of truth for codes and messages: a row
// without a case here, or a case without a row, fails DocsAndCasesAgree.
#include <torch/torch.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <functional>
#include <regex>

#include "batch_test_support.h"
#include "multilora/io/png_writer.h"
#include "multilora/io/safetensors.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace multilora;
using nlohmann::ordered_json;

namespace {

struct Ctx {
    fs::path dir, in, out;  // the case's folder, its inputs, the output folder of the run
};

struct Case {
    std::string id;
    // Makes the inputs under ctx.in; returns the command: arguments of multilora, or "sh:" and a shell line in
    // which $ML is the binary.
    std::function<std::string(Ctx&)> setup;
    // Checks beyond the exit code and message; empty: nothing at all under ctx.out.
    std::function<void(const Ctx&)> verify;
};

struct DocRow {
    std::string id, input, message;
    int exit = -1;
};

const std::string kToK = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k";

// ---- making inputs ----

// `generate` on `model` into `out`; a flag in `extra` replaces its default.
std::string gen(const std::string& model, const fs::path& out, const std::string& extra = "") {
    std::string args = "generate --threads 1 --no-progress --model '" + model + "' --out '" + out.string() + "'";
    for (const char* d : {"--prompt fox", "--steps 2", "--width 64", "--height 64", "--name x"}) {
        const std::string flag = std::string(d).substr(0, std::string(d).find(' ') + 1);
        if (extra.find(flag) == std::string::npos) args += std::string(" ") + d;
    }
    return args + (extra.empty() ? "" : " " + extra);
}

void write_text(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

// A safetensors file from a header's JSON text and the data block, as given (lies included).
std::string raw_safetensors(const fs::path& p, const std::string& header, const std::string& data, uint64_t claimed_len = 0) {
    uint64_t n = claimed_len ? claimed_len : header.size();
    std::string bytes(reinterpret_cast<const char*>(&n), 8);
    write_text(p, bytes + header + data);
    return p.string();
}

at::Tensor r(at::IntArrayRef shape) { return at::randn(shape) * 0.1; }

std::string lora_file(const fs::path& p, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {}) {
    io::save_safetensors(p.string(), tensors, metadata);
    return p.string();
}

std::string good_lora(const fs::path& p, const std::map<std::string, std::string>& metadata = {}) {
    return lora_file(p, {{kToK + ".lora_down.weight", r({4, 32})}, {kToK + ".lora_up.weight", r({32, 4})}}, metadata);
}

// The tiny model's single file with `edit` applied to its tensors (return false to drop one).
std::string edited_model(const fs::path& p, const std::function<bool(const std::string&, at::Tensor&)>& edit) {
    auto file = io::SafetensorsFile::open(test::tiny_single_file());
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& name : file->names()) {
        at::Tensor t = file->tensor(name).clone();
        if (edit(name, t)) tensors.emplace_back(name, t);
    }
    io::save_safetensors(p.string(), tensors, file->metadata());
    return p.string();
}

const std::string kConvIn = "model.diffusion_model.input_blocks.0.0.weight";

// A tiny-smoke batch whose config is edited; ctx.out becomes the batch's output folder.
std::string batch(Ctx& c, const std::function<void(ordered_json&)>& edit, const std::string& extra = "") {
    test::BatchDir d = test::tiny_batch("bad-" + c.dir.filename().string(), edit);
    c.out = d.out;
    return test::batch_args(d, extra);
}

std::string lora_info_file(const Ctx& c, const std::string& json) {
    fs::path p = c.in / "lora_info.json";
    write_text(p, json);
    return p.string();
}

// ---- checks ----

std::vector<fs::path> files_under(const fs::path& d) {
    std::vector<fs::path> out;
    if (!fs::exists(d)) return out;
    for (const auto& e : fs::recursive_directory_iterator(d))
        if (!e.is_directory()) out.push_back(e.path());
    return out;
}

void expect_no_temp_files(const fs::path& d) {
    for (const auto& p : files_under(d))
        EXPECT_EQ(p.filename().string().find(".tmp-"), std::string::npos) << "temporary file left: " << p;
}

// After an interrupted batch: every finished image has its PNG, its manifest and one batch.jsonl line.
void expect_whole_images(const Ctx& c) {
    int pngs = 0, manifests = 0;
    for (const auto& p : files_under(c.out)) {
        if (p.extension() == ".png" && p.parent_path().filename().string().find("_elements") != std::string::npos) {
            ++pngs;
            EXPECT_TRUE(fs::exists(fs::path(p).replace_extension(".json"))) << p;
        }
        if (p.extension() == ".json" && p.parent_path().filename().string().find("_elements") != std::string::npos) ++manifests;
    }
    std::ifstream log(c.out / "batch.jsonl");
    int lines = 0;
    for (std::string line; std::getline(log, line);) {
        EXPECT_NO_THROW((void)nlohmann::json::parse(line)) << line;
        ++lines;
    }
    EXPECT_GT(pngs, 0);
    EXPECT_EQ(pngs, manifests);
    EXPECT_EQ(lines, pngs);
}

// ---- the cases ----

std::vector<Case> cases();

std::vector<DocRow> doc_rows() {
    std::ifstream f(fs::path(ML_SOURCE_DIR) / "docs" / "errors.md");
    std::vector<DocRow> rows;
    // | `id` | input | exit | `message` | left on disk |
    const std::regex row(R"(^\| `([a-z0-9-]+)` \| (.*) \| ([0-9]+) \| `([^`]+)`.*\|\s*$)");
    for (std::string line; std::getline(f, line);) {
        std::smatch m;
        if (std::regex_match(line, m, row)) rows.push_back({m[1], m[2], m[4], std::stoi(m[3])});
    }
    return rows;
}

void PrintTo(const DocRow& row, std::ostream* os) { *os << row.id; }

class BadInput : public ::testing::TestWithParam<DocRow> {};

}  // namespace

TEST(BadInputs, DocsAndCasesAgree) {
    std::set<std::string> documented, made;
    for (const auto& row : doc_rows()) EXPECT_TRUE(documented.insert(row.id).second) << "row twice: " << row.id;
    for (const auto& c : cases()) EXPECT_TRUE(made.insert(c.id).second) << "case twice: " << c.id;
    for (const auto& id : documented) EXPECT_TRUE(made.count(id)) << "docs/errors.md row without a case: " << id;
    for (const auto& id : made) EXPECT_TRUE(documented.count(id)) << "case without a docs/errors.md row: " << id;
    EXPECT_GE(documented.size(), 40u);
}

TEST_P(BadInput, ExitCodeMessageAndNothingPartial) {
    const DocRow& row = GetParam();
    const auto all = cases();
    auto it = std::find_if(all.begin(), all.end(), [&](const Case& c) { return c.id == row.id; });
    ASSERT_NE(it, all.end()) << row.id;
    Ctx c;
    c.dir = test::make_temp_dir("bad-" + row.id);
    c.in = c.dir / "in";
    c.out = c.dir / "out";
    fs::create_directories(c.in);
    std::string command = it->setup(c);
    test::CommandResult res;
    if (command.rfind("sh:", 0) == 0)
        res = test::run_shell("ML='" + std::string(ML_BINARY_PATH) + "' bash -c '" +
                              std::regex_replace(command.substr(3), std::regex("'"), "'\\''") + "'");
    else
        res = test::run_multilora(command);
    if (std::getenv("ML_PRINT_BAD_INPUTS")) std::fprintf(stderr, "=== %s exit %d\n%s\n", row.id.c_str(), res.exit_code, res.output.c_str());
    EXPECT_EQ(res.exit_code, row.exit) << res.output;
    EXPECT_NE(res.output.find(row.message), std::string::npos) << "expected \"" << row.message << "\" in:\n" << res.output;
    if (it->verify) it->verify(c);
    else EXPECT_TRUE(files_under(c.out).empty()) << "left under " << c.out << ": " << files_under(c.out).front();
    expect_no_temp_files(c.dir);
    expect_no_temp_files(c.out);
}

INSTANTIATE_TEST_SUITE_P(Catalogue, BadInput, ::testing::ValuesIn(doc_rows()),
                         [](const ::testing::TestParamInfo<DocRow>& info) {
                             return std::regex_replace(info.param.id, std::regex("-"), "_");
                         });

namespace {

std::vector<Case> model_cases() {
    const std::string tiny = test::tiny_single_file();
    // An LDM config for the tiny model with one line changed.
    auto yaml = [](const std::string& extra_unet, const std::string& cond_target) {
        return "model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n  params:\n    linear_start: 0.00085\n"
               "    unet_config:\n      params:\n        use_checkpoint: true\n" + extra_unet +
               "    cond_stage_config:\n      target: " + cond_target + "\n";
    };
    auto with_yaml = [tiny](const std::string& text) {
        return [tiny, text](Ctx& c) {
            write_text(c.in / "m.yaml", text);
            return gen(tiny, c.out, "--model-config '" + (c.in / "m.yaml").string() + "'");
        };
    };
    return {
        {"model-config-malformed", with_yaml("model:\n  params: [unclosed\n")},
        {"model-config-sd2", with_yaml(yaml("", "ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder"))},
        {"model-config-other-model", with_yaml(yaml("        context_dim: 1024\n", "ldm.modules.encoders.modules.FrozenCLIPEmbedder"))},
        {"model-config-heads-do-not-divide", with_yaml(yaml("        num_heads: 3\n", "ldm.modules.encoders.modules.FrozenCLIPEmbedder"))},
        {"model-config-missing", [tiny](Ctx& c) { return gen(tiny, c.out, "--model-config '" + (c.in / "none.yaml").string() + "'"); }},
        {"model-config-for-a-folder", [](Ctx& c) {
             write_text(c.in / "m.yaml", "model:\n  params: {}\n");
             return gen(test::tiny_folder(), c.out, "--model-config '" + (c.in / "m.yaml").string() + "'");
         }},
        {"model-missing", [](Ctx& c) { return gen((c.in / "nowhere.safetensors").string(), c.out); }},
        {"model-empty", [](Ctx& c) { write_text(c.in / "m.safetensors", ""); return gen((c.in / "m.safetensors").string(), c.out); }},
        {"model-truncated", [tiny](Ctx& c) {
             std::string bytes = test::read_bytes(tiny);
             write_text(c.in / "m.safetensors", bytes.substr(0, bytes.size() / 2));
             return gen((c.in / "m.safetensors").string(), c.out);
         }},
        {"model-lying-header-length", [](Ctx& c) {
             return gen(raw_safetensors(c.in / "m.safetensors", "{}", "", 1 << 30), c.out);
         }},
        {"model-header-not-json", [](Ctx& c) {
             return gen(raw_safetensors(c.in / "m.safetensors", "{\"a\": [1, 2", ""), c.out);
         }},
        {"model-overlapping-offsets", [](Ctx& c) {
             return gen(raw_safetensors(c.in / "m.safetensors",
                                        R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                        std::string(12, '\0')),
                        c.out);
         }},
        {"model-offsets-past-end", [](Ctx& c) {
             return gen(raw_safetensors(c.in / "m.safetensors", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                                        std::string(8, '\0')),
                        c.out);
         }},
        {"model-shape-disagrees-with-bytes", [](Ctx& c) {
             return gen(raw_safetensors(c.in / "m.safetensors", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})",
                                        std::string(16, '\0')),
                        c.out);
         }},
        {"model-unknown-dtype", [](Ctx& c) {
             return gen(raw_safetensors(c.in / "m.safetensors", R"({"a":{"dtype":"Q4","shape":[4],"data_offsets":[0,4]}})",
                                        std::string(4, '\0')),
                        c.out);
         }},
        {"model-pickle", [](Ctx& c) {
             write_text(c.in / "m.ckpt", std::string("PK\x03\x04 not really a zip"));
             return gen((c.in / "m.ckpt").string(), c.out);
         }},
        {"model-nan-weight", [](Ctx& c) {
             return gen(edited_model(c.in / "m.safetensors", [](const std::string& n, at::Tensor& t) {
                            if (n == kConvIn) t.view(-1)[0] = NAN;
                            return true;
                        }),
                        c.out);
         }},
        {"model-missing-tensor", [](Ctx& c) {
             return gen(edited_model(c.in / "m.safetensors", [](const std::string& n, at::Tensor&) { return n != kConvIn; }), c.out);
         }},
        {"model-wrong-shape", [](Ctx& c) {
             return gen(edited_model(c.in / "m.safetensors", [](const std::string& n, at::Tensor& t) {
                            if (n == kConvIn) t = at::zeros({t.size(0), t.size(1), 5, 5});
                            return true;
                        }),
                        c.out);
         }},
        {"model-folder-without-unet", [](Ctx& c) {
             fs::create_directories(c.in / "m");
             write_text(c.in / "m" / "model_index.json", R"({"_class_name": "StableDiffusionPipeline"})");
             return gen((c.in / "m").string(), c.out);
         }},
        {"model-hub-name-not-cached", [](Ctx& c) {
             return "sh:HF_HOME='" + (c.in / "hf").string() + "' $ML " + gen("someone/no-such-model", c.out);
         }},
    };
}

std::vector<Case> lora_cases() {
    const std::string tiny = test::tiny_single_file();
    auto with = [tiny](const std::string& lora, const Ctx& c) { return gen(tiny, c.out, "--lora '" + lora + "'"); };
    return {
        {"lora-missing", [with](Ctx& c) { return with((c.in / "nowhere.safetensors").string(), c); }},
        {"lora-truncated", [with](Ctx& c) {
             std::string bytes = test::read_bytes(good_lora(c.in / "full.safetensors"));
             write_text(c.in / "l.safetensors", bytes.substr(0, bytes.size() - 100));
             return with((c.in / "l.safetensors").string(), c);
         }},
        {"lora-lying-header-length", [with](Ctx& c) { return with(raw_safetensors(c.in / "l.safetensors", "{}", "", 99999), c); }},
        {"lora-overlapping-offsets", [with](Ctx& c) {
             return with(raw_safetensors(c.in / "l.safetensors",
                                         "{\"" + kToK + ".lora_down.weight\":{\"dtype\":\"F32\",\"shape\":[1,32],\"data_offsets\":[0,128]},\"" +
                                             kToK + ".lora_up.weight\":{\"dtype\":\"F32\",\"shape\":[32,1],\"data_offsets\":[64,192]}}",
                                         std::string(192, '\0')),
                         c);
         }},
        {"lora-nan-weights", [with](Ctx& c) {
             at::Tensor down = r({4, 32});
             down[1][3] = INFINITY;
             return with(lora_file(c.in / "l.safetensors", {{kToK + ".lora_down.weight", down}, {kToK + ".lora_up.weight", r({32, 4})}}), c);
         }},
        {"lora-sdxl-by-metadata", [with](Ctx& c) {
             return with(good_lora(c.in / "l.safetensors", {{"ss_base_model_version", "sdxl_base_v1-0"}}), c);
         }},
        {"lora-sd2-by-metadata", [with](Ctx& c) { return with(good_lora(c.in / "l.safetensors", {{"ss_v2", "True"}}), c); }},
        {"lora-flux-by-metadata", [with](Ctx& c) {
             return with(good_lora(c.in / "l.safetensors", {{"modelspec.architecture", "flux-1-dev/lora"}}), c);
         }},
        {"lora-sdxl-by-keys", [with](Ctx& c) {
             return with(lora_file(c.in / "l.safetensors", {{"lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", r({4, 1280})},
                                                            {"lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", r({1280, 4})}}),
                         c);
         }},
        {"lora-rank-mismatch", [with](Ctx& c) {
             return with(lora_file(c.in / "l.safetensors", {{kToK + ".lora_down.weight", r({4, 32})}, {kToK + ".lora_up.weight", r({32, 8})}}), c);
         }},
        {"lora-shape-misfit", [with](Ctx& c) {
             return with(lora_file(c.in / "l.safetensors", {{kToK + ".lora_down.weight", r({4, 48})}, {kToK + ".lora_up.weight", r({32, 4})}}), c);
         }},
        {"lora-without-lora-keys", [with](Ctx& c) { return with(lora_file(c.in / "l.safetensors", {{"some.weight", r({4, 4})}}), c); }},
        {"lora-loha-corrupt", [with](Ctx& c) {
             return with(lora_file(c.in / "l.safetensors", {{kToK + ".hada_w1_a", r({32, 4})}, {kToK + ".hada_w1_b", r({3, 32})},
                                                            {kToK + ".hada_w2_a", r({32, 4})}, {kToK + ".hada_w2_b", r({4, 32})}}),
                         c);
         }},
        {"lora-lokr-misfit", [with](Ctx& c) {
             return with(lora_file(c.in / "l.safetensors", {{kToK + ".lokr_w1", r({2, 2})}, {kToK + ".lokr_w2", r({16, 8})}}), c);
         }},
        {"lora-mixed-forms", [with](Ctx& c) {
             return with(lora_file(c.in / "l.safetensors", {{kToK + ".lora_down.weight", r({4, 32})}, {kToK + ".lora_up.weight", r({32, 4})},
                                                            {kToK + ".hada_w1_a", r({32, 4})}}),
                         c);
         }},
        {"lora-dora-misfit", [with](Ctx& c) {
             return with(lora_file(c.in / "l.safetensors", {{kToK + ".lora_down.weight", r({4, 32})}, {kToK + ".lora_up.weight", r({32, 4})},
                                                            {kToK + ".dora_scale", r({7, 1})}}),
                         c);
         }},
        {"lora-oft", [with](Ctx& c) { return with(lora_file(c.in / "l.safetensors", {{kToK + ".oft_blocks", r({4, 8, 8})}}), c); }},
        {"lora-bad-weight-schedule", [tiny](Ctx& c) {
             return gen(tiny, c.out, "--method merge --lora '" + good_lora(c.in / "l.safetensors") + ":1@0,x@0.5'");
         }},
        {"lora-pickle", [with](Ctx& c) {
             write_text(c.in / "l.pt", std::string("\x80\x02}q\x00.", 6));
             return with((c.in / "l.pt").string(), c);
         }},
    };
}

std::vector<Case> flag_cases() {
    const std::string tiny = test::tiny_single_file();
    auto flag = [tiny](const std::string& extra) { return [tiny, extra](Ctx& c) { return gen(tiny, c.out, extra); }; };
    return {
        {"steps-100000", flag("--steps 100000")},
        {"vae-tile-not-a-multiple", flag("--vae-tile 20")},
        {"width-not-multiple-of-8", flag("--width 100")},
        {"image-8x8", flag("--width 8 --height 8")},
        {"image-4096-over-max-memory", flag("--width 4096 --height 4096 --max-memory 2")},
        {"guidance-nan", flag("--guidance-scale nan")},
        {"unknown-scheduler", flag("--scheduler plms")},
        {"unknown-method", flag("--method blend")},
        {"unknown-dtype", flag("--dtype fp64")},
        {"num-images-0", flag("--num-images 0")},
        {"negative-seed", flag("--seed -1")},
        {"name-with-slash", flag("--name ../x")},
        {"embedding-wrong-width", [](Ctx& c) {
             io::save_safetensors((c.in / "Wide.safetensors").string(), {{"emb_params", torch::zeros({2, 48})}}, {});
             return gen(test::tiny_single_file(), c.out, "--embedding '" + (c.in / "Wide.safetensors").string() + "'");
         }},
        {"embedding-pickle", [](Ctx& c) {
             write_text(c.in / "e.pt", std::string("\x80\x02}q\x00.", 6));
             return gen(test::tiny_single_file(), c.out, "--embedding '" + (c.in / "e.pt").string() + "'");
         }},
        {"embedding-unknown-layout", [](Ctx& c) {
             io::save_safetensors((c.in / "e.safetensors").string(), {{"a", torch::zeros({32})}, {"b", torch::zeros({32})}}, {});
             return gen(test::tiny_single_file(), c.out, "--embedding '" + (c.in / "e.safetensors").string() + "'");
         }},
        {"from-png-not-png", [](Ctx& c) {
             write_text(c.in / "x.png", "GIF89a not a png");
             return gen(test::tiny_single_file(), c.out, "--from-png '" + (c.in / "x.png").string() + "'");
         }},
        {"from-png-without-parameters", [](Ctx& c) {
             const std::vector<uint8_t> rgb(4 * 4 * 3, 0);
             write_text(c.in / "x.png", io::encode_png(rgb.data(), 4, 4, {{"Software", "paint"}}));
             return gen(test::tiny_single_file(), c.out, "--from-png '" + (c.in / "x.png").string() + "'");
         }},
        {"from-png-unknown-sampler", [](Ctx& c) {
             const std::vector<uint8_t> rgb(4 * 4 * 3, 0);
             write_text(c.in / "x.png", io::encode_png(rgb.data(), 4, 4, {{"parameters", "fox\nSteps: 2, Sampler: UniPC, Seed: 1, Size: 64x64"}}));
             return gen(test::tiny_single_file(), c.out, "--from-png '" + (c.in / "x.png").string() + "'");
         }},
        {"prompt-unknown-tag", flag("--prompt-syntax a1111 --prompt 'a fox <hypernet:cat:1>'")},
        {"prompt-bad-emphasis-weight", flag("--prompt-syntax a1111 --prompt '(fox:1.2.3)'")},
        {"prompt-tag-two-weights", flag("--prompt-syntax a1111 --prompt 'a fox <lora:style:1:0.5>'")},
        {"prompt-tag-in-negative", flag("--prompt-syntax a1111 --negative-prompt '<lora:style:1>'")},
        {"prompt-lora-tag-not-found", flag("--prompt-syntax a1111 --lora-dir /tmp --prompt 'a fox <lora:no-such-lora-xyz:1>'")},
    };
}

std::vector<Case> output_cases() {
    const std::string tiny = test::tiny_single_file();
    return {
        {"out-under-a-file", [tiny](Ctx& c) {
             write_text(c.in / "blocker", "x");
             c.out = c.in / "blocker" / "sub";
             return gen(tiny, c.out);
         }},
        {"output-exists", [tiny](Ctx& c) {
             fs::create_directories(c.out);
             write_text(c.out / "x.png", "earlier");
             return gen(tiny, c.out);
         },
         [](const Ctx& c) {
             EXPECT_EQ(test::read_bytes(c.out / "x.png"), "earlier");
             EXPECT_EQ(files_under(c.out).size(), 1u);
         }},
        {"output-is-a-symlink", [tiny](Ctx& c) {
             fs::create_directories(c.out);
             write_text(c.in / "victim.png", "victim");
             fs::create_symlink(c.in / "victim.png", c.out / "x.png");
             return gen(tiny, c.out, "--overwrite");
         },
         [](const Ctx& c) {
             EXPECT_EQ(test::read_bytes(c.in / "victim.png"), "victim");
             EXPECT_TRUE(fs::is_symlink(c.out / "x.png"));
             EXPECT_EQ(files_under(c.out).size(), 1u);
         }},
        {"disk-full-mid-png", [tiny](Ctx& c) { return "sh:ulimit -f 4; $ML " + gen(tiny, c.out); }},
        {"prompt-1mb", [](Ctx& c) { return batch(c, [](ordered_json& j) { j["prompt"] = std::string(1 << 20, 'a'); }); }},
    };
}

std::vector<Case> batch_cases() {
    auto interrupted = [](const std::string& sig) {
        return [sig](Ctx& c) {
            const std::string args = batch(c, [](ordered_json& j) { j["steps"] = 30; });
            return "sh:$ML " + args + " & p=$!; while [ ! -s '" + (c.out / "batch.jsonl").string() +
                   "' ]; do sleep 0.05; done; kill -" + sig + " $p; wait $p";
        };
    };
    return {
        {"config-missing", [](Ctx& c) { return "batch '" + (c.in / "none.json").string() + "'"; }},
        {"config-not-json", [](Ctx& c) {
             write_text(c.in / "c.json", "{ \"style\": ");
             return "batch '" + (c.in / "c.json").string() + "'";
         }},
        {"config-wrong-type", [](Ctx& c) { return batch(c, [](ordered_json& j) { j["steps"] = "20"; }); }},
        {"config-unknown-key", [](Ctx& c) { return batch(c, [](ordered_json& j) { j["stpes"] = 20; }); }},
        {"config-style-escapes", [](Ctx& c) { return batch(c, [](ordered_json& j) { j["style"] = "../elsewhere"; }); }},
        {"lora-info-duplicate-ids", [](Ctx& c) {
             const std::string info = lora_info_file(c, R"({"character": [{"id": "tiny-character", "name": "A", "trigger": ["a"]}],
                                                           "style": [{"id": "tiny-character", "name": "B", "trigger": ["b"]}]})");
             return batch(c, [info](ordered_json& j) { j["lora_info"] = info; });
         }},
        {"lora-id-dotdot", [](Ctx& c) {
             const std::string info = lora_info_file(c, R"({"character": [{"id": "../../escape", "name": "A", "trigger": ["a"]}],
                                                           "style": [{"id": "tiny-style", "name": "B", "trigger": ["b"]}]})");
             return batch(c, [info](ordered_json& j) { j["lora_info"] = info; });
         }},
        {"lora-id-absolute", [](Ctx& c) {
             const std::string info = lora_info_file(c, R"({"character": [{"id": "/tmp/escape", "name": "A", "trigger": ["a"]}],
                                                           "style": [{"id": "tiny-style", "name": "B", "trigger": ["b"]}]})");
             return batch(c, [info](ordered_json& j) { j["lora_info"] = info; });
         }},
        {"shard-out-of-range", [](Ctx& c) { return batch(c, {}, "--shard 5/4"); }},
        {"batch-out-under-a-file", [](Ctx& c) {
             write_text(c.in / "blocker", "x");
             const std::string out = (c.in / "blocker" / "out").string();
             std::string args = batch(c, [out](ordered_json& j) { j["out"] = out; });
             c.out = out;
             return args;
         }},
        {"batch-style-folder-is-a-symlink", [](Ctx& c) {
             std::string args = batch(c, {});
             fs::create_directories(c.out);
             fs::create_directories(c.in / "elsewhere");
             fs::create_directory_symlink(c.in / "elsewhere", c.out / "tiny");
             return args;
         },
         [](const Ctx& c) {
             EXPECT_TRUE(files_under(c.in / "elsewhere").empty());
             EXPECT_FALSE(fs::exists(c.out / "batch.jsonl"));
         }},
        {"batch-sigint", interrupted("INT"), expect_whole_images},
        {"batch-sigterm", interrupted("TERM"), expect_whole_images},
    };
}

std::vector<Case> cases() {
    std::vector<Case> all;
    for (auto part : {model_cases(), lora_cases(), flag_cases(), output_cases(), batch_cases()})
        all.insert(all.end(), part.begin(), part.end());
    return all;
}

}  // namespace
