// `multilora generate`: one prompt -> PNG(s) + JSON manifest.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>

#include "cli/commands.h"
#include "cli/progress.h"
#include "multilora/compose/registry.h"
#include "multilora/lora/adapter_set.h"
#include "multilora/pipeline/image_outputs.h"
#include "multilora/pipeline/infotext.h"
#include "multilora/pipeline/model_names.h"
#include "multilora/pipeline/run_session.h"
#include "multilora/pipeline/runtime.h"
#include "multilora/sampling/scheduler.h"
#include "multilora/text/a1111_prompt.h"
#include "multilora/util/clock.h"
#include "multilora/util/error.h"
#include "multilora/util/interrupt.h"
#include "multilora/util/strings.h"
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
    std::string prompt_syntax = "plain";
    std::string from_png;          // --from-png: settings read from an image's A1111 parameters
    nlohmann::json png_record;     // what --from-png applied, kept and could not apply (for the manifest)
    bool progress = true;
    double max_memory_gb = 0;  // --max-memory (0: this machine's RAM)
    std::vector<std::string> loras;
    std::vector<std::string> lora_dirs;  // --lora-dir: where a bare --lora NAME is looked for
    std::string method;  // empty: merge when LoRAs are given, else none
    double lora_scale = 0.8;
    std::vector<std::string> method_args;            // --method-arg NAME=VALUE
    std::vector<std::string> triggers;               // --triggers "w1, w2" per --lora
    std::map<std::string, std::string> flag_values;  // per-method flags (--switch-interval ...) by "method.param"
};

std::string format_number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

double parse_tag_weight(const std::string& text, const std::string& tag) {
    try {
        size_t used = 0;
        const double w = std::stod(text, &used);
        if (used == text.size() && std::isfinite(w)) return w;
    } catch (const std::exception&) {
    }
    throw UsageError("prompt tag <" + tag + ":" + text + ">: the weight '" + text + "' is not a number");
}

std::vector<lora::LoraSpec> lora_specs(const std::vector<std::string>& texts, const std::vector<std::string>& dirs) {
    std::vector<lora::LoraSpec> specs;
    for (const auto& text : texts) {
        specs.push_back(lora::parse_lora_spec(text));
        specs.back().path = pipeline::resolve_lora_reference(specs.back().path, dirs);
        if (!fs::is_regular_file(specs.back().path)) throw RuntimeError("LoRA file not found: '" + specs.back().path + "'");
    }
    return specs;
}

// --triggers "a, b c" per --lora -> {{"a", "b c"}, ...}; none given: no triggers known.
// --prompt-syntax a1111: each <lora:NAME:W> / <lyco:NAME:W> tag of the prompt joins the --lora list (NAME looked
// up in --lora-dir and $MULTILORA_LORA_DIR); any other tag is refused. The prompt keeps its tags (encoding drops
// them), and each --lora given as a flag is added as a tag, so that A1111 reading the PNG's parameters applies
// the same LoRAs.
void apply_a1111_syntax(GenerateOptions& o, pipeline::GenerationRequest& request) {
    request.prompt_syntax = text::PromptSyntax::A1111;
    std::vector<text::PromptTag> tags, negative_tags;
    // Parsed now, so that a bad emphasis weight is reported before the model loads.
    text::parse_prompt_attention(text::take_prompt_tags(request.prompt, tags));
    text::parse_prompt_attention(text::take_prompt_tags(request.negative_prompt, negative_tags));
    if (!negative_tags.empty())
        throw UsageError("the negative prompt has a <" + negative_tags.front().kind + ":...> tag; LoRA tags go in the prompt");
    std::string added;
    for (const std::string& flag : o.loras) {
        const lora::LoraSpec s = lora::parse_lora_spec(flag);
        if (!s.schedule.empty()) continue;  // A1111 has no weight schedules: such a LoRA is not written as a tag
        added += " <lora:" + fs::path(s.path).stem().string() + ":" + format_number(s.weight) + ">";
    }
    for (const text::PromptTag& t : tags) {
        if (t.kind != "lora" && t.kind != "lyco")
            throw UsageError("unknown prompt tag <" + t.kind + ":" + join(t.args, ":") +
                             ">: --prompt-syntax a1111 reads <lora:NAME:WEIGHT> and <lyco:NAME:WEIGHT>");
        if (t.args.empty() || t.args[0].empty() || t.args.size() > 2)
            throw UsageError("prompt tag <" + t.kind + ":" + join(t.args, ":") +
                             "> must be <" + t.kind + ":NAME> or <" + t.kind + ":NAME:WEIGHT> (one weight for both "
                             "the text encoder and the UNet)");
        double weight = 1.0;
        if (t.args.size() == 2) weight = parse_tag_weight(t.args[1], t.kind + ":" + t.args[0]);
        o.loras.push_back(t.args[0] + ":" + format_number(weight));
    }
    request.prompt += added;
}

std::vector<std::vector<std::string>> trigger_lists(const std::vector<std::string>& texts, size_t loras) {
    if (!texts.empty() && texts.size() != loras)
        throw UsageError("--triggers was given " + std::to_string(texts.size()) + " times for " + std::to_string(loras) +
                         " --lora; give it once per LoRA, in the same order (\"\" for none)");
    std::vector<std::vector<std::string>> lists;
    for (const auto& t : texts) {
        std::vector<std::string> words;
        for (const std::string& w : split(t, ','))
            if (std::string word = trim(w, " "); !word.empty()) words.push_back(word);
        lists.push_back(words);
    }
    return lists;
}

// The method and its validated parameters: the per-method flags first, then --method-arg (which wins).
std::pair<std::string, compose::MethodArgs> method_choice(const GenerateOptions& o, bool have_loras,
                                                         bool have_schedules) {
    const std::string name = o.method.empty() ? (have_loras ? "merge" : "none") : o.method;
    const compose::MethodInfo& info = compose::registry().get(name);
    if (info.min_loras > 0 && !have_loras) throw UsageError("--method " + name + " needs at least one --lora");
    if (info.min_loras == 0 && have_loras)
        throw UsageError("--method none with --lora: the LoRAs would be ignored; drop --lora or pick a method");
    if (have_schedules && !info.weight_schedules) {
        std::vector<std::string> taking;
        for (const compose::MethodInfo* m : compose::registry().methods())
            if (m->weight_schedules) taking.push_back(m->name);
        throw UsageError("--method " + name + " does not follow --lora weight schedules (W@F keyframes); use --method " +
                         join(taking, " or "));
    }
    compose::MethodArgs args(info.params);
    for (const compose::MethodInfo* m : compose::registry().methods())
        for (const auto& p : m->params) {
            auto it = o.flag_values.find(m->name + "." + p.name);
            if (it == o.flag_values.end() || it->second.empty()) continue;
            if (m == &info) args.set_text(p.name, it->second, p.cli_flag);
            else p.parse(it->second, p.cli_flag);  // checked even when another method is chosen
        }
    for (const auto& text : o.method_args) {
        auto [key, value] = compose::split_assignment(text, "--method-arg");
        args.set_text(key, value, "--method-arg " + key + " (method " + name + ")");
    }
    return {name, args};
}

void warn_truncation(const pipeline::GenerationResult& r) {
    if (r.positive_truncated)
        spdlog::warn("the prompt is longer than CLIP's 77 tokens and was truncated (use --long-prompt chunk to keep it all)");
    if (r.negative_truncated) spdlog::warn("the negative prompt is longer than CLIP's 77 tokens and was truncated");
}

nlohmann::json generate_manifest(const GenerateOptions& o, const pipeline::GenerationRequest& request, int threads,
                                 pipeline::RunSession& session, const pipeline::SessionResult& out) {
    const pipeline::GenerationResult& result = out.generation;
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
        {"scheduler_class", pipeline::scheduler_class(request.scheduler, session.model().scheduler_config)},
        {"num_images", request.num_images},
        {"vae_tile", request.vae_tile},
        {"long_prompt", o.long_prompt},
        {"prompt_syntax", o.prompt_syntax},
        {"dtype", o.load.dtype},
        {"device", o.load.device},
        {"threads", threads},
        {"model", o.load.model_path},
        {"vae", o.load.vae_path.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.load.vae_path)},
    };
    manifest["model"] = session.model_record();
    nlohmann::json lora_list = nlohmann::json::array();
    if (session.adapters())
        for (int slot = 0; slot < session.adapters()->count(); ++slot) lora_list.push_back(session.lora_record(slot));
    manifest["loras"] = lora_list;
    if (!o.png_record.is_null()) manifest["from_png"] = o.png_record;
    manifest["composition"] = out.composition;
    manifest["composition"]["lora_scale"] = o.lora_scale;
    manifest["prompt_truncated"] = result.prompt_truncated;
    manifest["timesteps"] = result.timesteps;
    manifest["runtime"] = pipeline::runtime_info();
    return manifest;
}

void run_generate(GenerateOptions o) {
    // A1111's "Model:" is the checkpoint's name: a file's stem, or a hub name's NAME (not its snapshot's commit).
    std::string model_name = fs::path(o.load.model_path).filename().replace_extension().string();
    if (!fs::exists(o.load.model_path)) model_name = model_name.substr(0, model_name.find('@'));
    pipeline::GenerationRequest request = o.request;
    request.long_prompt = o.long_prompt == "chunk" ? text::LongPromptMode::Chunk : text::LongPromptMode::Truncate;
    request.max_memory_bytes = o.max_memory_gb * 1e9;
    pipeline::validate_request(request);
    pipeline::parse_dtype(o.load.dtype);
    if (o.prompt_syntax == "a1111") apply_a1111_syntax(o, request);
    const std::vector<lora::LoraSpec> specs = lora_specs(o.loras, o.lora_dirs);
    const bool have_schedules =
        std::any_of(specs.begin(), specs.end(), [](const lora::LoraSpec& s) { return !s.schedule.empty(); });
    auto [method, args] = method_choice(o, !specs.empty(), have_schedules);
    const std::vector<std::vector<std::string>> triggers = trigger_lists(o.triggers, specs.size());
    pipeline::OutputPlan plan = o.output;
    plan.num_images = request.num_images;
    pipeline::check_outputs(plan);

    o.load.model_path = pipeline::resolve_model_reference(o.load.model_path, "model");  // after every usage check
    o.load.vae_path = pipeline::resolve_model_reference(o.load.vae_path, "VAE");
    const int threads = pipeline::configure_threads(o.threads);
    spdlog::info("loading {}", o.load.model_path);
    pipeline::RunSession session({o.load, specs, o.lora_scale});
    const pipeline::StableDiffusionModel& model = session.model();
    spdlog::info("loaded ({}, {} unused tensors) in {:.2f} s", model.layout, model.unused_tensors.size(),
                 session.load_seconds());

    StepProgress progress("generating", o.progress);
    auto t_total = std::chrono::steady_clock::now();
    pipeline::SessionRun run{request, method, args, {}, triggers, {}, [&](int step, int total, double secs) {
                                 progress.update(step, total, secs);
                             }};
    pipeline::SessionResult out = session.run(run);
    progress.finish();
    warn_truncation(out.generation);

    nlohmann::json manifest = generate_manifest(o, request, threads, session, out);
    const pipeline::GenerationResult& result = out.generation;
    manifest["timings"] = {{"load_s", session.load_seconds()},
                           {"encode_s", result.encode_seconds},
                           {"steps_s", result.step_seconds},
                           {"decode_s", result.decode_seconds},
                           {"generate_s", seconds_since(t_total)}};
    pipeline::write_outputs(plan, request, result, session.model_hash(), model_name, manifest);
    for (const auto& p : plan.png_paths()) std::printf("%s\n", p.c_str());
    spdlog::info("wrote {}", plan.manifest_path());
}

// --method, --method-arg and every method parameter's own flag, all from the registry.
void add_method_options(CLI::App* sub, GenerateOptions& o) {
    sub->add_option("--method", o.method,
                    "LoRA composition: " + join(compose::registry().names(), ", ") + " (default: merge with --lora)")
        ->check(CLI::IsMember(compose::registry().names()));
    sub->add_option("--method-arg", o.method_args,
                    "A parameter of the chosen method, NAME=VALUE (repeatable; see the list below)");
    for (const compose::MethodInfo* m : compose::registry().methods())
        for (const auto& p : m->params) {
            if (p.cli_flag.empty()) continue;
            std::string* slot = &o.flag_values[m->name + "." + p.name];
            sub->add_option_function<std::string>(
                   p.cli_flag, [slot](const std::string& v) { *slot = v; },
                   m->name + ": " + p.help + " (= --method-arg " + p.name + "; " + p.describe() + ")");
        }
}

// --from-png: one field of the image's settings, applied unless its flag was given.
struct PngApplier {
    GenerateOptions& o;
    const CLI::App& sub;
    const pipeline::InfoText& info;
    nlohmann::json& record;

    bool given(const char* flag) const { return sub.count(flag) > 0; }
    // Applies `field` through `set` when present and `flag` was not given; records which happened.
    template <typename Set>
    void field(const std::string& name, const char* flag, Set set) {
        const std::string* v = info.field(name);
        if (!v) return;
        if (given(flag)) {
            record["kept_flags"].push_back(name + " (" + flag + ")");
            return;
        }
        set(*v);
        record["applied"].push_back(name);
    }
    template <typename T>
    T number(const std::string& name, const std::string& v) const {
        try {
            size_t used = 0;
            const double d = std::stod(v, &used);
            if (used == v.size() && std::isfinite(d) && (!std::is_integral_v<T> || (d >= 0 && d == std::floor(d))))
                return static_cast<T>(d);
        } catch (const std::exception&) {
        }
        throw UsageError("'" + o.from_png + "': its " + name + " '" + v + "' is not a valid number");
    }
};

void apply_png_prompts(PngApplier& a) {
    if (!a.given("--prompt")) {
        a.o.request.prompt = a.info.prompt;
        a.record["applied"].push_back("Prompt");
    }
    if (!a.given("--negative-prompt") && !a.info.negative_prompt.empty()) {
        a.o.request.negative_prompt = a.info.negative_prompt;
        a.record["applied"].push_back("Negative prompt");
    }
    // multilora marks A1111-syntax prompts; an image from A1111 itself was written in A1111's syntax.
    const std::string* syntax = a.info.field("Prompt syntax");
    const std::string* version = a.info.field("Version");
    const bool ours = version && starts_with(*version, "multilora");
    if (!a.given("--prompt-syntax")) a.o.prompt_syntax = syntax ? *syntax : ours ? "plain" : "a1111";
    if (a.o.prompt_syntax != "plain" && a.o.prompt_syntax != "a1111")
        throw UsageError("'" + a.o.from_png + "': Prompt syntax '" + a.o.prompt_syntax + "' is not plain or a1111");
}

void apply_png_settings(GenerateOptions& o, const CLI::App& sub) {
    const pipeline::InfoText info = pipeline::read_png_infotext(o.from_png);
    nlohmann::json record = {{"path", o.from_png}, {"applied", nlohmann::json::array()},
                             {"kept_flags", nlohmann::json::array()}, {"not_applied", nlohmann::json::array()}};
    PngApplier a{o, sub, info, record};
    apply_png_prompts(a);
    a.field("Steps", "--steps", [&](const std::string& v) { o.request.steps = a.number<int>("Steps", v); });
    a.field("CFG scale", "--guidance-scale", [&](const std::string& v) { o.request.guidance_scale = a.number<double>("CFG scale", v); });
    a.field("Seed", "--seed", [&](const std::string& v) { o.request.seed = a.number<uint64_t>("Seed", v); });
    if (const std::string* v = info.field("Size")) {
        const size_t x = v->find('x');
        if (x == std::string::npos) throw UsageError("'" + o.from_png + "': its Size '" + *v + "' is not WIDTHxHEIGHT");
        if (!a.given("--width")) o.request.width = a.number<int>("Size", v->substr(0, x));
        if (!a.given("--height")) o.request.height = a.number<int>("Size", v->substr(x + 1));
        record[a.given("--width") || a.given("--height") ? "kept_flags" : "applied"].push_back("Size");
    }
    const std::string* schedule = info.field("Schedule type");
    a.field("Sampler", "--scheduler", [&](const std::string& v) {
        const std::string s = pipeline::scheduler_for_a1111_sampler(v, schedule ? *schedule : "");
        if (s.empty()) throw UsageError("'" + o.from_png + "': sampler '" + v + (schedule ? " " + *schedule : "") +
                                        "' has no multilora scheduler; give --scheduler (" + join(sampling::scheduler_names(), ", ") + ")");
        o.request.scheduler = s;
    });
    const std::set<std::string> handled{"Steps", "CFG scale", "Seed", "Size", "Sampler", "Schedule type", "Prompt syntax",
                                        "Version", "Model", "Model hash"};
    for (const auto& [key, value] : info.fields)
        if (!handled.count(key)) record["not_applied"].push_back(key + ": " + value);
    for (const char* key : {"Model", "Model hash", "Version"})
        if (const std::string* v = info.field(key)) record["recorded"][key] = *v;
    if (!record["not_applied"].empty())
        spdlog::warn("{}: {} field(s) of its settings are not applied: {}", o.from_png, record["not_applied"].size(),
                     record["not_applied"].dump());
    spdlog::info("settings from {}: {}", o.from_png, record["applied"].dump());
    o.png_record = record;
}

void add_model_and_prompt_options(CLI::App* sub, GenerateOptions* o) {
    sub->add_option("--model,-m", o->load.model_path,
                    "SD1.x checkpoint: an LDM single .safetensors file, a diffusers folder, or a Hugging Face name "
                    "(ORG/NAME[@REVISION]) found in the local hub cache ($HF_HOME/hub, ~/.cache/huggingface/hub)")
        ->required();
    sub->add_option("--vae", o->load.vae_path,
                    "A separate VAE (single file, diffusers folder or hub name), e.g. stabilityai/sd-vae-ft-mse");
    sub->add_option("--prompt,-p", o->request.prompt, "The prompt (required unless --from-png gives it)");
    sub->add_option("--from-png", o->from_png,
                    "Re-run the settings in an image's A1111 'parameters' text (multilora's or A1111's): prompt, "
                    "negative prompt, steps, sampler, CFG scale, seed, size, prompt syntax. Flags given override "
                    "them; fields multilora cannot apply are listed");
    sub->add_option("--negative-prompt,-n", o->request.negative_prompt, "The negative prompt");
    sub->add_option("--long-prompt", o->long_prompt,
                    "Prompts over 77 tokens: truncate (diffusers) or chunk (75-token chunks, as A1111)")
        ->capture_default_str()
        ->check(CLI::IsMember({"truncate", "chunk"}));
    sub->add_option("--prompt-syntax", o->prompt_syntax,
                    "plain (diffusers: the text as written) or a1111 ((word:1.2) emphasis, [word], BREAK, 75-token "
                    "chunks, <lora:NAME:W> tags resolved in --lora-dir)")
        ->capture_default_str()
        ->check(CLI::IsMember({"plain", "a1111"}));
    sub->add_option("--embedding", o->load.embeddings,
                    "A textual-inversion embedding (.safetensors: A1111's emb_params or diffusers' learned_embeds); "
                    "its name (file stem, or the name in the file) is then a word of the prompt. Repeatable");
    sub->add_option("--embedding-dir", o->load.embedding_dirs, "A folder whose .safetensors embeddings are all loaded (repeatable)");
    sub->add_option("--model-config", o->load.model_config,
                    "An LDM .yaml for a single-file checkpoint (heads, noise schedule, parameterization, VAE scale); "
                    "default: NAME.yaml beside NAME.safetensors, as A1111 and ComfyUI read it");
    sub->add_option("--threads", o->threads, "CPU threads (0: all cores)")->capture_default_str();
    sub->add_option("--dtype", o->load.dtype, "Compute dtype")->capture_default_str()->check(
        CLI::IsMember({"fp32", "bf16", "fp16"}));
    sub->add_option("--device", o->load.device, "cpu or cuda[:N]")->capture_default_str();
}

void add_sampling_and_output_options(CLI::App* sub, GenerateOptions* o) {
    sub->add_option("--steps", o->request.steps, "Denoising steps")->capture_default_str()->check(CLI::Range(1, 1000));
    sub->add_option("--guidance-scale,-g", o->request.guidance_scale, "Classifier-free guidance scale")
        ->capture_default_str();
    sub->add_option("--seed", o->request.seed, "Seed of the CPU generator for the initial noise (0 or more)")
        ->capture_default_str()
        ->check(CLI::Validator(
            [](std::string& s) {
                return !s.empty() && s[0] == '-' ? "a seed is 0 or more (got " + s +
                                                       "; A1111's -1 for a random seed is not supported: choose one)"
                                                 : std::string();
            },
            "SEED"));
    sub->add_option("--width", o->request.width, "Image width (multiple of 8)")->capture_default_str();
    sub->add_option("--height", o->request.height, "Image height (multiple of 8)")->capture_default_str();
    sub->add_option("--scheduler", o->request.scheduler, "Sampler")
        ->capture_default_str()
        ->check(CLI::IsMember(sampling::scheduler_names()));
    sub->add_option("--num-images", o->request.num_images, "Images per prompt (one batch)")
        ->capture_default_str()
        ->check(CLI::Range(1, 64));
    sub->add_option("--out,-o", o->output.dir, "Output folder")->capture_default_str();
    sub->add_option("--name", o->output.stem, "Output file stem (default: image-<seed>)");
    sub->add_flag("--save-latents", o->output.save_latents, "Also write STEM.latents.safetensors (final latents)");
    sub->add_flag("--overwrite", o->output.overwrite, "Replace existing outputs");
    sub->add_option("--max-memory", o->max_memory_gb,
                    "Refuse sizes whose estimated peak memory is over this many GB (default: this machine's RAM)")
        ->check(CLI::PositiveNumber);
    sub->add_option("--vae-tile", o->request.vae_tile,
                    "Decode in tiles of this many pixels, blended over a quarter tile (diffusers' enable_tiling), for "
                    "large images; 0: in one piece (the exact default)")
        ->capture_default_str()
        ->check(CLI::Range(0, 8192));
    sub->add_flag("--allow-nan", o->request.allow_nan,
                  "Write the image even when its latents hold NaN or Inf (default: stop with an error naming the step)");
    sub->add_flag("!--no-progress", o->progress, "No step progress output");
}

void add_lora_options(CLI::App* sub, GenerateOptions* o) {
    sub->add_option("--lora", o->loras,
                    "LoRA file, optionally with its strength: PATH[:WEIGHT], or a weight schedule under merge: "
                    "PATH:W@F,W@F[:linear] (weight W from fraction F of the steps; step interpolation by "
                    "default). Repeatable; order is kept. A bare NAME is NAME.safetensors in --lora-dir or "
                    "$MULTILORA_LORA_DIR");
    sub->add_option("--lora-dir", o->lora_dirs, "A folder where --lora NAME is looked for (repeatable; then $MULTILORA_LORA_DIR)");
    sub->add_option("--triggers", o->triggers,
                    "A LoRA's trigger words, comma-separated, once per --lora in the same order (the prompt-aware "
                    "methods w-switch and w-composite weight the LoRAs by them)");
    sub->add_option("--lora-scale", o->lora_scale, "Scale applied to every LoRA in UNet and text encoder (the paper's 0.8)")
        ->capture_default_str();
    add_method_options(sub, *o);
}

std::string generate_footer() {
    return 
        "Writes OUT/NAME.png (A1111 'parameters' text chunk) and OUT/NAME.json (the run manifest).\n"
        "Examples:\n"
        "  multilora generate -m models/tiny-sd15.safetensors -p \"a red fox in snow\" --seed 7 --out out\n"
        "  multilora generate -m runwayml/stable-diffusion-v1-5 --vae stabilityai/sd-vae-ft-mse -p \"a fox\" \\\n"
        "      --lora-dir ~/loras --lora my-style:0.8       # names from the local Hugging Face cache and a LoRA folder\n"
        "  multilora generate -m Realistic_Vision_V5.1.safetensors --vae sd-vae-ft-mse -p \"portrait\" \\\n"
        "      -n \"blurry\" --steps 30 --scheduler dpmpp-2m-karras --width 768 --height 1024 --name portrait\n"
        "  multilora generate -m models/tiny-sd15.safetensors -p \"a fox\" --lora models/loras/tiny-style.safetensors \\\n"
        "      --lora models/loras/tiny-object.safetensors:0.7 --method composite --name fox-composite\n"
        "  multilora generate -m models/tiny-sd15.safetensors -p \"a fox\" --lora models/loras/tiny-style.safetensors \\\n"
        "      --lora models/loras/tiny-character.safetensors --method switch --method-arg tau=2\n"
        "  multilora generate -m models/tiny-sd15.safetensors --prompt-syntax a1111 --lora-dir models/loras \\\n"
        "      -p \"a (red:1.3) fox, [blurry] BREAK snow <lora:tiny-style:0.7>\"\n"
        "  multilora generate -m models/tiny-sd15.safetensors -p \"a fox\" --method merge \\\n"
        "      --lora models/loras/tiny-style.safetensors:1@0,0.2@0.6 --lora models/loras/tiny-object.safetensors:0@0,1@1:linear\n"
        "  multilora generate -m models/tiny-sd15.safetensors -p \"a tiny fox, red fur, watercolor\" --method w-composite \\\n"
        "      --lora models/loras/tiny-character.safetensors --triggers \"tiny fox, red fur\" \\\n"
        "      --lora models/loras/tiny-style.safetensors --triggers watercolor\n"
        "  multilora generate -m models/tiny-sd15.safetensors --from-png out/fox.png --seed 8 --name fox-seed8\n\n" +
        compose::methods_help();
}

}  // namespace

Command add_generate_command(CLI::App& app) {
    auto o = std::make_shared<GenerateOptions>();
    o->output.dir = "out";
    CLI::App* sub = app.add_subcommand("generate", "Generate image(s) from a prompt");
    add_model_and_prompt_options(sub, o.get());
    add_sampling_and_output_options(sub, o.get());
    add_lora_options(sub, o.get());
    sub->footer(generate_footer());
    return [o, sub] {
        if (!o->from_png.empty()) apply_png_settings(*o, *sub);
        else if (sub->count("--prompt") == 0) throw UsageError("--prompt is required (or --from-png FILE)");
        if (o->output.stem.empty()) o->output.stem = "image-" + std::to_string(o->request.seed);
        InterruptScope interrupts;  // Ctrl-C / SIGTERM: nothing is written, exit 130
        run_generate(*o);
    };
}

}  // namespace multilora::cli
