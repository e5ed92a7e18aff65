#include "multilora/world/make_world.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "multilora/bench/random_model.h"
#include "multilora/io/atomic_file.h"
#include "multilora/io/safetensors.h"
#include "multilora/io/sha256.h"
#include "multilora/models/unet.h"
#include "multilora/models/vae.h"
#include "multilora/models/weight_loading.h"
#include "multilora/pipeline/model_loader.h"
#include "multilora/sampling/scheduler.h"
#include "multilora/text/clip_text_model.h"
#include "multilora/text/clip_tokenizer.h"
#include "multilora/text/prompt_encoding.h"
#include "multilora/train/lora_training.h"
#include "multilora/util/clock.h"
#include "multilora/util/error.h"

#include "build_progress.h"

namespace fs = std::filesystem;

namespace multilora::world {

namespace {

using Clock = std::chrono::steady_clock;

struct WorldModel {
    bench::TinyModelConfigs cfg;
    models::UNet2DConditionModel unet{nullptr};
    models::AutoencoderKL vae{nullptr};
    text::ClipTextModel text{nullptr};
    std::shared_ptr<const text::ClipTokenizer> tokenizer;
};

WorldModel seeded_model(uint64_t seed) {
    WorldModel m;
    m.cfg = world_configs();
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    m.unet = models::UNet2DConditionModel(m.cfg.unet);
    m.vae = models::AutoencoderKL(m.cfg.vae);
    m.text = text::ClipTextModel(m.cfg.text);
    bench::fill_random_weights(*m.unet, gen);
    bench::fill_random_weights(*m.vae, gen);
    bench::fill_random_weights(*m.text, gen);
    m.tokenizer = text::ClipTokenizer::builtin();
    return m;
}

std::function<at::Tensor(const std::string&)> caption_encoder(WorldModel& m) {
    return [&m](const std::string& caption) {
        torch::NoGradGuard no_grad;
        return text::encode_prompts(*m.tokenizer, *m.text, caption, "", text::LongPromptMode::Truncate).cond;
    };
}

// `images` scenes with the concept and generic content otherwise; captions name its trigger.
train::EncodedExamples concept_examples(WorldModel& m, const Concept& c, int images, uint64_t seed) {
    torch::NoGradGuard no_grad;
    ConceptChoice choice = kGeneric;
    choice[static_cast<int>(c.category)] = c.index;
    std::vector<uint64_t> seeds;
    for (int i = 0; i < images; ++i) seeds.push_back(seed * 7919 + static_cast<uint64_t>(i));
    train::EncodedExamples ex;
    const at::Tensor z = m.vae->encode_mean(render_batch(seeds, choice)).mul(m.vae->config().scaling_factor);
    auto encode = caption_encoder(m);
    for (int i = 0; i < images; ++i) {
        ex.latents.push_back(z.narrow(0, i, 1));
        ex.contexts.push_back(encode(caption(sample_scene(seeds[i], choice))));
    }
    return ex;
}

std::string train_concept(WorldModel& m, const Concept& c, const WorldPlan& plan, const std::string& dir,
                          uint64_t seed, MakeWorldResult& r, const PhaseCallback& on_step) {
    train::TrainLoraOptions o;
    o.out = (fs::path(dir) / (c.id + ".safetensors")).string();
    o.trigger = c.trigger;
    o.rank = plan.lora_rank;
    o.steps = plan.lora_steps;
    o.batch_size = plan.lora_batch;
    o.lr = plan.lora_lr;
    o.targets = train::LoraTargets::AttnFF;
    o.seed = seed;
    o.checkpoint_every = 0;
    o.half = true;
    const auto examples = concept_examples(m, c, plan.lora_images, seed);
    const auto alphas = sampling::training_alphas_cumprod(sampling::sd15_scheduler_config());
    auto result = train::train_lora_on(*m.unet, alphas, examples, o, [&](const train::TrainStatus& s) {
        if (on_step) on_step({c.id, s.step, s.total, s.loss, s.step_seconds});
    });
    r.losses[c.id] = result.losses;
    return o.out;
}

// OUT's model as shipped (float16 weights read through the ordinary loader), for retraining its LoRAs.
WorldModel loaded_model(const std::string& path) {
    pipeline::LoadOptions load;
    load.model_path = path;
    pipeline::StableDiffusionModel sd = pipeline::load_stable_diffusion(load);
    WorldModel m;
    m.cfg = world_configs();
    m.unet = sd.unet;
    m.vae = sd.vae;
    m.text = sd.text_encoder;
    m.tokenizer = sd.tokenizer;
    return m;
}

// Every concept's LoRA, in order; those `progress` records as done are kept. r.seconds["loras"] adds up.
void train_loras(WorldModel& m, const MakeWorldOptions& o, const WorldPlan& plan, MakeWorldResult& r, const PhaseCallback& on_step,
                 BuildProgress* progress = nullptr) {
    const std::string lora_dir = (fs::path(o.out) / "loras").string();
    fs::create_directories(lora_dir);
    r.loras.clear();
    for (const Concept& c : concepts()) {
        if (progress && progress->done(c.id)) {
            r.loras.push_back((fs::path(lora_dir) / (c.id + ".safetensors")).string());
            continue;
        }
        const auto t0 = Clock::now();
        r.loras.push_back(train_concept(m, c, plan, lora_dir, o.seed * 100 + c.index, r, on_step));
        r.seconds["loras"] += seconds_since(t0);
        if (progress) progress->finish(c.id, r);
    }
}

// The decoder phase on a model read back from its file; the caller saves it again.
void refine_loaded_decoder(WorldModel& m, const WorldPlan& plan, MakeWorldResult& r, const PhaseCallback& on_step,
                           const PhaseCheckpoint& checkpoint = {}) {
    const PhaseResult phase = refine_vae_decoder(*m.vae, plan.decoder, on_step, checkpoint);
    r.losses["decoder"] = phase.losses;
    r.seconds["decoder"] = phase.seconds;
}

// Compact, losses to six decimals: fifteen LoRAs of 1000 steps would otherwise take half a megabyte of the
// world's 30 MB.
void write_training_json(const MakeWorldOptions& o, MakeWorldResult& r) {
    r.training_json = (fs::path(o.out) / "training.json").string();
    auto losses = r.losses;
    for (auto& [phase, values] : losses)
        for (double& v : values) v = std::round(v * 1e6) / 1e6;
    io::write_file_atomic(r.training_json, nlohmann::json{{"seed", o.seed}, {"quick", o.quick}, {"losses", losses},
                                                          {"seconds", r.seconds}}.dump() + "\n");
}

void save_model(WorldModel& m, const std::string& path, uint64_t seed) {
    bench::TensorList ldm;
    auto half = [](bench::TensorList t) {
        for (auto& [name, tensor] : t) tensor = tensor.detach().to(at::kHalf).contiguous();
        return t;
    };
    bench::add_ldm_unet(ldm, half(models::named_tensors(*m.unet)), m.cfg.unet);
    bench::add_ldm_vae(ldm, half(models::named_tensors(*m.vae)), m.vae->config());
    bench::add_ldm_text(ldm, half(models::named_tensors(*m.text)));
    bench::TinyModelConfigs cfg = m.cfg;
    cfg.vae = m.vae->config();
    auto meta = bench::ldm_metadata(cfg, seed);
    meta["multilora.note"] = "the trained world, written by multilora make-world";
    io::save_safetensors(path, ldm, meta);
}

std::string settings_table(const WorldPlan& p) {
    char buf[1024];
    std::snprintf(buf, sizeof buf,
                  "| phase | steps | batch | lr | other |\n| --- | --- | --- | --- | --- |\n"
                  "| VAE | %d | %d | %g | KL weight %g, fresh scenes every step |\n"
                  "| VAE decoder (encoder frozen) | %d | %d | %g | a tenth of the lr for the last quarter, fresh multi-element scenes |\n"
                  "| UNet | %d | %d | %g | %d base scenes, caption dropout %g, EMA of the weights (decay %g) |\n"
                  "| each LoRA | %d | %d | %g | rank %d, alpha %d, attn+ff, %d scenes of the concept |\n",
                  p.vae.steps, p.vae.batch, p.vae.lr, p.vae.kl_weight, p.decoder.steps, p.decoder.batch, p.decoder.lr, p.unet.steps, p.unet.batch, p.unet.lr, p.unet.dataset,
                  p.unet.caption_dropout, p.unet.ema_decay, p.lora_steps, p.lora_batch, p.lora_lr, p.lora_rank, p.lora_rank, p.lora_images);
    return buf;
}

}  // namespace

WorldPlan world_plan(const MakeWorldOptions& o) {
    WorldPlan p;
    p.vae.seed = o.seed * 10 + 1;
    p.unet.seed = o.seed * 10 + 2;
    p.decoder.seed = o.seed * 10 + 3;
    // The EMA and the 1000 steps past 4000: a probe that trained the 4000-step UNet 2000 steps further with an
    // EMA lowered its loss over the last 200 steps from 0.0564 to 0.0468 and raised the LoRA check's mean.
    p.unet.steps = 5000, p.unet.ema_decay = 0.999;
    if (o.quick) {
        p.vae.steps = 30, p.vae.batch = 2;
        p.decoder.steps = 10, p.decoder.batch = 2;
        p.unet.steps = 40, p.unet.batch = 4, p.unet.dataset = 32;
        p.lora_steps = 4, p.lora_batch = 2, p.lora_images = 4;
        p.checkpoint_every = 10;
    }
    return p;
}

nlohmann::json world_lora_info() {
    nlohmann::json info = nlohmann::json::object();
    for (const Concept& c : concepts())
        info[category_name(c.category)].push_back(
            {{"id", c.id}, {"name", c.name}, {"trigger", {c.trigger}}, {"url", ""}, {"looks", c.looks}});
    return info;
}

namespace {

// The VAE phase, or its weights from an interrupted build.
void vae_phase(WorldModel& m, const WorldPlan& plan, BuildProgress& progress, MakeWorldResult& r, const PhaseCallback& on_step) {
    if (progress.done("vae")) return progress.load_vae(*m.vae);
    const PhaseResult phase = train_vae(*m.vae, plan.vae, on_step, progress.checkpoint("vae", plan.checkpoint_every));
    r.losses["vae"] = phase.losses;
    r.seconds["vae"] = phase.seconds;
    progress.save_vae(*m.vae);
    progress.finish("vae", r);
}

// The UNet phase; it writes the model file, which an interrupted build keeps.
void unet_phase(WorldModel& m, const MakeWorldOptions& o, const WorldPlan& plan, BuildProgress& progress, MakeWorldResult& r,
                const PhaseCallback& on_step) {
    if (progress.done("unet")) return;
    const auto alphas = sampling::training_alphas_cumprod(sampling::sd15_scheduler_config());
    const PhaseResult phase = train_unet(*m.unet, *m.vae, caption_encoder(m), alphas, plan.unet, on_step,
                                         progress.checkpoint("unet", plan.checkpoint_every));
    r.losses["unet"] = phase.losses;
    r.seconds["unet"] = phase.seconds;
    save_model(m, r.model, o.seed);
    progress.finish("unet", r);
}

// A build that finished before: read back, after checking that it was made with these options.
MakeWorldResult finished_world(const MakeWorldOptions& o) {
    MakeWorldResult r = read_world(o);
    const nlohmann::json j = nlohmann::json::parse(io::read_file(r.training_json));
    if (j.value("seed", uint64_t{0}) != o.seed || j.value("quick", false) != o.quick)
        throw UsageError(o.out + " holds a world built with other options (training.json: seed " + std::to_string(j.value("seed", uint64_t{0})) +
                         (j.value("quick", false) ? ", --quick" : "") + "); build afresh without --resume");
    return r;
}

}  // namespace

MakeWorldResult make_world(const MakeWorldOptions& o, const PhaseCallback& on_step) {
    c10::InferenceMode off(false);
    io::ensure_writable_dir(o.out);
    const WorldPlan plan = world_plan(o);
    if (o.resume && !fs::exists(BuildProgress::record_path(o.out)) && fs::exists(fs::path(o.out) / "training.json"))
        return finished_world(o);
    MakeWorldResult r;
    BuildProgress progress(o, settings_table(plan), r);
    r.model = (fs::path(o.out) / "world-sd15.safetensors").string();
    WorldModel m = seeded_model(o.seed);
    vae_phase(m, plan, progress, r, on_step);
    unet_phase(m, o, plan, progress, r, on_step);
    // The decoder and the LoRAs learn on the model as shipped (float16), as refine_decoder and a user's
    // train-lora do; refine_decoder and retrain_loras then give the same files, and so does a resumed build.
    WorldModel shipped = loaded_model(r.model);
    if (!progress.done("decoder")) {
        refine_loaded_decoder(shipped, plan, r, on_step, progress.checkpoint("decoder", plan.checkpoint_every));
        save_model(shipped, r.model, o.seed);
        progress.finish("decoder", r);
    }
    train_loras(shipped, o, plan, r, on_step, &progress);
    r.lora_info = (fs::path(o.out) / "world_lora_info.json").string();
    io::write_file_atomic(r.lora_info, world_lora_info().dump(4) + "\n");
    write_training_json(o, r);
    progress.remove();
    return r;
}

void retrain_loras(const MakeWorldOptions& o, MakeWorldResult& r, const PhaseCallback& on_step) {
    c10::InferenceMode off(false);
    WorldModel m = loaded_model(r.model);
    r.seconds["loras"] = 0;
    train_loras(m, o, world_plan(o), r, on_step);
    write_training_json(o, r);
}

void refine_decoder(const MakeWorldOptions& o, MakeWorldResult& r, const PhaseCallback& on_step) {
    c10::InferenceMode off(false);
    WorldModel m = loaded_model(r.model);
    refine_loaded_decoder(m, world_plan(o), r, on_step);
    save_model(m, r.model, o.seed);
    write_training_json(o, r);
}

namespace {

// "Build time: VAE 411 s, decoder 560 s, ...": the phases training.json timed (an older world has no decoder).
std::string build_times(const MakeWorldResult& r) {
    std::string line = "Build time:";
    const std::pair<const char*, const char*> phases[] = {{"vae", "VAE"}, {"decoder", "decoder"}, {"unet", "UNet"}, {"loras", "LoRAs"}};
    char part[64];
    for (const auto& [key, label] : phases) {
        if (!r.seconds.count(key)) continue;
        std::snprintf(part, sizeof part, " %s %.0f s,", label, r.seconds.at(key));
        line += part;
    }
    line.back() = ' ';
    return line + "(2-core CPU).\n\n";
}

std::string concept_table() {
    std::string t = "| id | category | trigger | looks |\n| --- | --- | --- | --- |\n";
    for (const Concept& c : concepts())
        t += "| `" + c.id + "` | " + category_name(c.category) + " | **" + c.trigger + "** | " + c.looks + " |\n";
    return t;
}

}  // namespace

MakeWorldResult read_world(const MakeWorldOptions& o) {
    MakeWorldResult r;
    r.model = (fs::path(o.out) / "world-sd15.safetensors").string();
    r.lora_info = (fs::path(o.out) / "world_lora_info.json").string();
    r.training_json = (fs::path(o.out) / "training.json").string();
    for (const Concept& c : concepts()) r.loras.push_back((fs::path(o.out) / "loras" / (c.id + ".safetensors")).string());
    std::vector<std::string> needed = {r.model, r.lora_info, r.training_json};
    needed.insert(needed.end(), r.loras.begin(), r.loras.end());
    for (const std::string& f : needed)
        if (!fs::exists(f)) throw UsageError(o.out + " is not a complete world: " + f + " is missing (run make-world without --evidence-only)");
    const nlohmann::json j = nlohmann::json::parse(io::read_file(r.training_json));
    r.losses = j.at("losses").get<std::map<std::string, std::vector<double>>>();
    r.seconds = j.at("seconds").get<std::map<std::string, double>>();
    return r;
}

void write_world_readme(const MakeWorldOptions& o, const MakeWorldResult& r, const std::vector<std::string>& pictures,
                        const std::string& sections, const std::vector<std::string>& other_files) {
    const WorldPlan plan = world_plan(o);
    std::string md = "# The trained world\n\nWritten by `multilora make-world --seed " + std::to_string(o.seed) +
                     (o.quick ? " --quick" : "") + "` (docs/world.md describes the scenes and the training).\n\n";
    md += build_times(r);
    md += "## Concepts\n\n" + concept_table() + "\n## Training settings\n\n" + settings_table(plan);
    md += "\n## Pictures\n\n";
    for (const std::string& p : pictures) md += "![" + fs::path(p).stem().string() + "](" + fs::relative(p, o.out).string() + ")\n\n";
    md += sections;
    md += "## Files (SHA-256)\n\n";
    std::vector<std::string> files = {r.model, r.lora_info, r.training_json};
    files.insert(files.end(), r.loras.begin(), r.loras.end());
    files.insert(files.end(), other_files.begin(), other_files.end());
    files.insert(files.end(), pictures.begin(), pictures.end());
    for (const std::string& f : files) md += "- `" + io::sha256_file_hex(f) + "` " + fs::relative(f, o.out).string() + "\n";
    io::write_file_atomic((fs::path(o.out) / "README.md").string(), md);
}

}  // namespace multilora::world
