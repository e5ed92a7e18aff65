// The tiny model and its LoRAs for composition tests: loading, attaching LoRAs, building a method by
// name with NAME=VALUE arguments, running a small generation, and a method whose steps a test computes.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <functional>

#include "multilora/bench/tiny_model.h"
#include "multilora/compose/registry.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/pipeline/generation.h"
#include "multilora/pipeline/model_loader.h"
#include "test_support.h"

namespace multilora::compose_test {

namespace fs = std::filesystem;

struct TinyWorld {
    fs::path dir;
    bench::TinyModelPaths paths;
};

inline const TinyWorld& world() {
    static const TinyWorld w = [] {
        at::set_num_threads(1);
        TinyWorld t;
        t.dir = test::make_temp_dir("lora");
        t.paths = bench::make_tiny_model(t.dir.string());
        return t;
    }();
    return w;
}

inline pipeline::StableDiffusionModel load_tiny() {
    pipeline::LoadOptions opt;
    opt.model_path = world().paths.single_file;
    return pipeline::load_stable_diffusion(opt);
}

inline pipeline::GenerationRequest small_request() {
    pipeline::GenerationRequest r;
    r.prompt = "a red fox in the snow";
    r.negative_prompt = "blurry";
    r.steps = 4;
    r.width = 64;
    r.height = 64;
    r.seed = 21;
    return r;
}

// The method's defaults with NAME=VALUE `args` applied.
inline compose::MethodArgs method_args(const std::string& method, const std::vector<std::string>& args) {
    compose::MethodArgs a = compose::default_args(method);
    for (const auto& text : args) {
        auto [k, v] = compose::split_assignment(text, "test");
        a.set_text(k, v, "test");
    }
    return a;
}

inline pipeline::GenerationRequest eight_steps() {
    pipeline::GenerationRequest r = small_request();
    r.steps = 8;
    return r;
}

inline std::unique_ptr<compose::CompositionMethod> make_method(pipeline::StableDiffusionModel& model, lora::AdapterSet* adapters,
                                                        const std::string& method,
                                                        const std::vector<std::string>& args = {}) {
    return compose::registry().create(method, {pipeline::model_parts(model), adapters, {}, method_args(method, args)});
}

inline at::Tensor run(pipeline::StableDiffusionModel& model, lora::AdapterSet* adapters, const std::string& method,
               int interval = 5, pipeline::GenerationRequest request = small_request()) {
    auto composer = make_method(model, adapters, method,
                                method == "switch" ? std::vector<std::string>{"tau=" + std::to_string(interval)}
                                                   : std::vector<std::string>{});
    auto result = pipeline::generate(model, request, composer.get());
    if (adapters) adapters->clear();
    return result.latents;
}

// A method whose steps are computed by a test function, with another method's prompt encoding.
class ManualSteps final : public compose::CompositionMethod {
public:
    using Step = std::function<at::Tensor(const compose::StepContext&)>;
    ManualSteps(std::unique_ptr<compose::CompositionMethod> encoder, Step step)
        : encoder_(std::move(encoder)), step_(std::move(step)) {}
    text::EncodedPrompts encode(const compose::PromptText& t) override { return encoder_->encode(t); }
    at::Tensor predict(const compose::StepContext& c) override { return step_(c); }
    nlohmann::json record() const override { return {{"method", "manual"}}; }

private:
    std::unique_ptr<compose::CompositionMethod> encoder_;
    Step step_;
};

inline double rel_err(const at::Tensor& a, const at::Tensor& b) {
    return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

inline std::vector<lora::LoraSpec> specs(std::initializer_list<int> which, double weight = 1.0) {
    std::vector<lora::LoraSpec> out;
    for (int i : which) out.push_back({world().paths.loras.at(i), weight});
    return out;
}

inline std::unique_ptr<lora::AdapterSet> attach(pipeline::StableDiffusionModel& m, const std::vector<lora::LoraSpec>& s,
                                         double scale = 0.8) {
    return std::make_unique<lora::AdapterSet>(*m.unet, *m.text_encoder, m.unet->config().to_json(), s, scale, m.dtype,
                                              m.device);
}

// tests/data/reference/NAME, a peer's numbers (the test that reads a file says in its header how they were made).
inline nlohmann::json read_reference(const std::string& name) {
    std::ifstream in(std::string(ML_TEST_DATA_DIR) + "/reference/" + name);
    if (!in) throw std::runtime_error("missing tests/data/reference/" + name);
    return nlohmann::json::parse(in);
}

// The generation settings of a reference case: each of prompt, negative_prompt, steps, guidance_scale, seed,
// width, height and scheduler from the case when it has it, else from the file's top level.
inline pipeline::GenerationRequest reference_request(const nlohmann::json& ref, const nlohmann::json& c) {
    auto pick = [&](const char* key) -> const nlohmann::json& { return c.contains(key) ? c.at(key) : ref.at(key); };
    pipeline::GenerationRequest r;
    r.prompt = pick("prompt");
    r.negative_prompt = pick("negative_prompt");
    r.steps = pick("steps");
    r.guidance_scale = pick("guidance_scale");
    r.seed = pick("seed");
    r.width = pick("width");
    r.height = pick("height");
    if (c.contains("scheduler") || ref.contains("scheduler")) r.scheduler = pick("scheduler");
    return r;
}

// A reference case's final latents within 1e-4 of their largest value and, when the case keeps its image
// (hex RGB bytes), every pixel value within 1 of 255.
inline void expect_matches_reference(const pipeline::GenerationResult& out, const nlohmann::json& c) {
    const at::Tensor expected = torch::tensor(c["latents"].get<std::vector<float>>()).view(out.latents.sizes());
    EXPECT_LT((out.latents - expected).abs().max().item<double>() / expected.abs().max().item<double>(), 1e-4);
    if (!c.contains("image_rgb_hex")) return;
    const std::string hex = c["image_rgb_hex"];
    ASSERT_EQ(out.images.at(0).size() * 2, hex.size());
    int worst = 0;
    for (size_t i = 0; i < out.images[0].size(); ++i)
        worst = std::max(worst, std::abs(int(out.images[0][i]) - std::stoi(hex.substr(2 * i, 2), nullptr, 16)));
    EXPECT_LE(worst, 1);
}

struct MethodRun {
    at::Tensor latents;
    nlohmann::json record;  // the method's record()
};

// Attaches `s` (LoRA scale 0.8), builds `method` with NAME=VALUE `args`, trigger words and categories, and
// generates `request`.
inline MethodRun run_method(pipeline::StableDiffusionModel& model, const std::vector<lora::LoraSpec>& s,
                            const std::string& method, const std::vector<std::string>& args = {},
                            const pipeline::GenerationRequest& request = small_request(),
                            const std::vector<std::vector<std::string>>& triggers = {},
                            const std::vector<std::string>& categories = {}) {
    auto ad = attach(model, s);
    auto m = compose::registry().create(
        method, {pipeline::model_parts(model), ad.get(), {}, method_args(method, args), triggers, categories});
    MethodRun r{pipeline::generate(model, request, m.get()).latents, nlohmann::json()};
    r.record = m->record();
    return r;
}

}  // namespace multilora::compose_test
