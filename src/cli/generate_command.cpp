// `multilora generate`: one prompt -> PNG(s) + JSON manifest.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <memory>

#include "multilora/cli/commands.h"
#include "multilora/cli/progress.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/sampling/lora_composition.h"
#include "multilora/pipeline/file_hashes.h"
#include "multilora/pipeline/generation.h"
#include "multilora/pipeline/image_outputs.h"
#include "multilora/pipeline/model_loader.h"
#include "multilora/pipeline/runtime.h"
#include "multilora/sampling/scheduler.h"
#include "multilora/util/clock.h"
#include "multilora/util/error.h"
#include "multilora/util/version.h"

namespace fs = std::filesystem;

namespace multilora::cli {
namespace {

struct GenerateOptions {
    pipeline::LoadOptions load;
    pipeline::GenerationRequest request;
    pipeline::OutputPlan output;
    int threads = 0;
    std::string long_prompt = "truncate";
    bool progress = true;
    std::vector<std::string> loras;
    std::string method;  // empty: merge when LoRAs are given, else none
    double lora_scale = 0.8;
    int switch_interval = 5;
    std::string switch_schedule = "paper";
    int max_batch_rows = 0;
};

void run_generate(const GenerateOptions& o) {
    pipeline::GenerationRequest request = o.request;
    request.long_prompt = o.long_prompt == "chunk" ? pipeline::LongPromptMode::Chunk : pipeline::LongPromptMode::Truncate;
    pipeline::validate_request(request);
    pipeline::parse_dtype(o.load.dtype);
    std::vector<lora::LoraSpec> specs;
    for (const auto& text : o.loras) {
        specs.push_back(lora::parse_lora_spec(text));
        if (!fs::is_regular_file(specs.back().path)) throw RuntimeError("LoRA file not found: '" + specs.back().path + "'");
    }
    sampling::CompositionSettings composition;
    composition.method = sampling::parse_method(o.method.empty() ? (specs.empty() ? "none" : "merge") : o.method);
    composition.switch_interval = o.switch_interval;
    composition.switch_schedule = sampling::parse_switch_schedule(o.switch_schedule);
    composition.max_batch_rows = o.max_batch_rows;
    if (composition.method != sampling::CompositionMethod::None && specs.empty())
        throw UsageError("--method " + o.method + " needs at least one --lora");
    if (composition.method == sampling::CompositionMethod::None && !specs.empty())
        throw UsageError("--method none with --lora: the LoRAs would be ignored; drop --lora or pick a method");
    pipeline::OutputPlan plan = o.output;
    plan.num_images = request.num_images;
    pipeline::check_outputs(plan);

    const int threads = pipeline::configure_threads(o.threads);
    auto t_load = std::chrono::steady_clock::now();
    spdlog::info("loading {}", o.load.model_path);
    pipeline::StableDiffusionModel model = pipeline::load_stable_diffusion(o.load);
    std::unique_ptr<lora::AdapterSet> adapters;
    if (!specs.empty())
        adapters = std::make_unique<lora::AdapterSet>(*model.unet, *model.text_encoder, model.unet->config().to_json(),
                                                      specs, o.lora_scale, model.dtype, model.device);
    sampling::LoraComposer composer(model, adapters.get(), composition);
    const double load_seconds = seconds_since(t_load);
    spdlog::info("loaded ({}, {} unused tensors) in {:.2f} s", model.layout, model.unused_tensors.size(), load_seconds);

    StepProgress progress("generating", o.progress);
    auto t_total = std::chrono::steady_clock::now();
    pipeline::GenerationResult result = pipeline::generate(
        model, request, [&](int step, int total, double secs) { progress.update(step, total, secs); },
        [&](const pipeline::NoiseContext& c) { return composer.predict(c); }, [&] { return composer.encode(request); });
    progress.finish();
    if (adapters) adapters->clear();

    nlohmann::json files = pipeline::hashed_files(model.model_files);
    const std::string model_hash = files.empty() ? std::string(64, '0') : files[0]["sha256"].get<std::string>();
    const std::string model_name = fs::path(o.load.model_path).filename().replace_extension().string();
    auto scheduler = sampling::make_scheduler(request.scheduler, model.scheduler_config);

    nlohmann::json manifest;
    manifest["tool"] = {{"name", "multilora"}, {"version", multilora::version()}, {"command", "generate"}};
    manifest["created"] = utc_timestamp();
    manifest["settings"] = {
        {"prompt", request.prompt},
        {"negative_prompt", request.negative_prompt},
        {"steps", request.steps},
        {"guidance_scale", request.guidance_scale},
        {"seed", request.seed},
        {"width", request.width},
        {"height", request.height},
        {"scheduler", request.scheduler},
        {"scheduler_class", scheduler->diffusers_class()},
        {"num_images", request.num_images},
        {"long_prompt", o.long_prompt},
        {"dtype", o.load.dtype},
        {"device", o.load.device},
        {"threads", threads},
        {"model", o.load.model_path},
        {"vae", o.load.vae_path.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.load.vae_path)},
    };
    manifest["model"] = {
        {"layout", model.layout},
        {"files", files},
        {"vae_files", pipeline::hashed_files(model.vae_files)},
        {"tokenizer", model.tokenizer_source},
        {"unused_tensor_count", model.unused_tensors.size()},
        {"unet_config", model.unet->config().to_json()},
        {"vae_config", model.vae->config().to_json()},
        {"text_encoder_config", model.text_encoder->config().to_json()},
        {"scheduler_config", model.scheduler_config},
    };
    nlohmann::json lora_list = nlohmann::json::array();
    if (adapters)
        for (const auto& summary : adapters->summaries()) {
            nlohmann::json j = summary.to_json();
            j["sha256"] = pipeline::file_sha256(summary.path);
            lora_list.push_back(j);
        }
    manifest["loras"] = lora_list;
    manifest["composition"] = composer.record();
    manifest["composition"]["lora_scale"] = o.lora_scale;
    manifest["prompt_truncated"] = result.prompt_truncated;
    manifest["timesteps"] = result.timesteps;
    manifest["runtime"] = pipeline::runtime_info();
    manifest["timings"] = {{"load_s", load_seconds},
                           {"encode_s", result.encode_seconds},
                           {"steps_s", result.step_seconds},
                           {"decode_s", result.decode_seconds},
                           {"generate_s", seconds_since(t_total)}};
    pipeline::write_outputs(plan, request, result, model_hash, model_name, manifest);
    for (const auto& p : plan.png_paths()) std::printf("%s\n", p.c_str());
    spdlog::info("wrote {}", plan.manifest_path());
}

}  // namespace

Command add_generate_command(CLI::App& app) {
    auto o = std::make_shared<GenerateOptions>();
    o->output.dir = "out";
    CLI::App* sub = app.add_subcommand("generate", "Generate image(s) from a prompt");
    sub->add_option("--model,-m", o->load.model_path,
                    "SD1.x checkpoint: an LDM single .safetensors file or a diffusers folder")
        ->required();
    sub->add_option("--vae", o->load.vae_path, "A separate VAE (single file or diffusers folder), e.g. sd-vae-ft-mse");
    sub->add_option("--prompt,-p", o->request.prompt, "The prompt")->required();
    sub->add_option("--negative-prompt,-n", o->request.negative_prompt, "The negative prompt");
    sub->add_option("--steps", o->request.steps, "Denoising steps")->capture_default_str()->check(CLI::Range(1, 1000));
    sub->add_option("--guidance-scale,-g", o->request.guidance_scale, "Classifier-free guidance scale")
        ->capture_default_str();
    sub->add_option("--seed", o->request.seed, "Seed of the CPU generator for the initial noise")->capture_default_str();
    sub->add_option("--width", o->request.width, "Image width (multiple of 8)")->capture_default_str();
    sub->add_option("--height", o->request.height, "Image height (multiple of 8)")->capture_default_str();
    sub->add_option("--scheduler", o->request.scheduler, "Sampler")
        ->capture_default_str()
        ->check(CLI::IsMember(sampling::scheduler_names()));
    sub->add_option("--num-images", o->request.num_images, "Images per prompt (one batch)")
        ->capture_default_str()
        ->check(CLI::Range(1, 64));
    sub->add_option("--long-prompt", o->long_prompt,
                    "Prompts over 77 tokens: truncate (diffusers) or chunk (75-token chunks, as A1111)")
        ->capture_default_str()
        ->check(CLI::IsMember({"truncate", "chunk"}));
    sub->add_option("--threads", o->threads, "CPU threads (0: all cores)")->capture_default_str();
    sub->add_option("--dtype", o->load.dtype, "Compute dtype")->capture_default_str()->check(
        CLI::IsMember({"fp32", "bf16", "fp16"}));
    sub->add_option("--device", o->load.device, "cpu or cuda[:N]")->capture_default_str();
    sub->add_option("--out,-o", o->output.dir, "Output folder")->capture_default_str();
    sub->add_option("--name", o->output.stem, "Output file stem (default: image-<seed>)");
    sub->add_flag("--save-latents", o->output.save_latents, "Also write STEM.latents.safetensors (final latents)");
    sub->add_flag("--overwrite", o->output.overwrite, "Replace existing outputs");
    sub->add_flag("!--no-progress", o->progress, "No step progress output");
    sub->add_option("--lora", o->loras,
                    "LoRA file, optionally with its strength: PATH[:WEIGHT] (repeatable; order is kept)");
    sub->add_option("--method", o->method, "LoRA composition: none, merge, switch or composite (default: merge with --lora)")
        ->check(CLI::IsMember({"none", "merge", "switch", "composite"}));
    sub->add_option("--lora-scale", o->lora_scale, "Scale applied to every LoRA in UNet and text encoder (the paper's 0.8)")
        ->capture_default_str();
    sub->add_option("--switch-interval", o->switch_interval, "Switch: steps each LoRA stays active (tau)")
        ->capture_default_str()
        ->check(CLI::Range(1, 1000));
    sub->add_option("--switch-schedule", o->switch_schedule,
                    "Switch order: paper (every LoRA tau steps) or reference (the public code: first LoRA tau+1 steps)")
        ->capture_default_str()
        ->check(CLI::IsMember({"paper", "reference"}));
    sub->add_option("--max-batch-rows", o->max_batch_rows,
                    "Composite: most UNet batch rows per forward (0: all LoRAs in one batch)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    sub->footer(
        "Writes OUT/NAME.png (A1111 'parameters' text chunk) and OUT/NAME.json (the run manifest).\n"
        "Examples:\n"
        "  multilora generate -m models/tiny-sd15.safetensors -p \"a red fox in snow\" --seed 7 --out out\n"
        "  multilora generate -m Realistic_Vision_V5.1.safetensors --vae sd-vae-ft-mse -p \"portrait\" \\\n"
        "      -n \"blurry\" --steps 30 --scheduler dpmpp-2m-karras --width 768 --height 1024 --name portrait\n"
        "  multilora generate -m models/tiny-sd15.safetensors -p \"a fox\" --lora models/loras/tiny-style.safetensors \\\n"
        "      --lora models/loras/tiny-object.safetensors:0.7 --method composite --name fox-composite");
    return [o] {
        if (o->output.stem.empty()) o->output.stem = "image-" + std::to_string(o->request.seed);
        run_generate(*o);
    };
}

}  // namespace multilora::cli
