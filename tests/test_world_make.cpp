// make-world --quick, the CI smoke build of the trained world: every phase runs, its losses fall, and the
// files it writes load through the ordinary loading code.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "multilora/bench/random_model.h"
#include "multilora/io/png_writer.h"
#include "multilora/io/safetensors.h"
#include "multilora/io/sha256.h"
#include "multilora/lora/lora_file.h"
#include "multilora/models/unet.h"
#include "multilora/models/vae.h"
#include "multilora/pipeline/model_loader.h"
#include "multilora/sampling/scheduler.h"
#include "multilora/util/error.h"
#include "multilora/util/strings.h"
#include "multilora/world/make_world.h"
#include "multilora/world/scene.h"
#include "multilora/world/world_training.h"
#include "test_support.h"

using namespace multilora;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

double mean(const json& v, size_t from, size_t to) {
    double s = 0;
    for (size_t i = from; i < to; ++i) s += v.at(i).get<double>();
    return s / static_cast<double>(to - from);
}

// Every tensor of a safetensors file, by name, as float32.
std::map<std::string, at::Tensor> read_tensors(const fs::path& path) {
    auto file = io::SafetensorsFile::open(path.string());
    std::map<std::string, at::Tensor> out;
    for (const std::string& name : file->names()) out[name] = file->tensor(name, static_cast<int8_t>(at::kFloat));
    return out;
}

at::Tensor flat(std::vector<at::Tensor> params) {  // every parameter's values in one vector (a copy)
    for (at::Tensor& p : params) p = p.detach().flatten();
    return torch::cat(params);
}

}  // namespace

// The decoder phase trains the decoder and post_quant_conv only: the encoder, quant_conv and the scaling
// factor (so every latent the UNet learnt from) stay bit for bit, and the reconstruction error falls.
TEST(WorldTraining, DecoderRefinementKeepsTheLatentSpace) {
    c10::InferenceMode off(false);
    models::AutoencoderKL vae(world::world_configs().vae);
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
    bench::fill_random_weights(*vae, gen);
    const at::Tensor probe = world::render_batch({1, 2, 3, 4}, {0, 1, 2, -1, 0});
    at::Tensor latents_before, encoder_before, decoder_before;
    double error_before = 0;
    {
        torch::NoGradGuard no_grad;
        latents_before = vae->encode_mean(probe);
        error_before = at::mse_loss(vae->decode(latents_before), probe).item<double>();
        encoder_before = torch::cat({flat(vae->encoder->parameters()), flat(vae->quant_conv->parameters())});
        decoder_before = flat(vae->decoder->parameters());
    }
    const double scaling = vae->config().scaling_factor;
    world::DecoderTraining t;
    t.steps = 40, t.batch = 2, t.lr = 2e-3;
    int calls = 0;
    const auto losses = world::refine_vae_decoder(*vae, t, [&](const world::PhaseStatus& s) {
        EXPECT_EQ(s.phase, "decoder");
        EXPECT_EQ(s.step, ++calls);
    }).losses;
    ASSERT_EQ(losses.size(), 40u);
    EXPECT_EQ(calls, 40);
    torch::NoGradGuard no_grad;
    // Scenes not trained on reconstruct better (seeded random weights start far off: 0.99 -> 0.51 here).
    EXPECT_LT(at::mse_loss(vae->decode(latents_before), probe).item<double>(), 0.7 * error_before);
    EXPECT_TRUE(torch::equal(vae->encode_mean(probe), latents_before));
    EXPECT_TRUE(torch::equal(torch::cat({flat(vae->encoder->parameters()), flat(vae->quant_conv->parameters())}), encoder_before));
    EXPECT_FALSE(torch::equal(flat(vae->decoder->parameters()), decoder_before));
    EXPECT_EQ(vae->config().scaling_factor, scaling);
    for (const auto& p : vae->parameters()) EXPECT_FALSE(p.requires_grad());
}

// UnetTraining::ema_decay: the UNet ends holding diffusers' EMAModel average of its weights after each step,
// worked by hand for two steps: decay min(0.999, (1 + s) / (10 + s)) is 1/10 after step 0 and 2/11 after
// step 1, so the average is 2/11 (w0 / 10 + 9 w1 / 10) + 9/11 w2, with w_s the weights after s plain steps.
TEST(WorldTraining, UnetAverageIsTheEmaOfItsSteps) {
    c10::InferenceMode off(false);
    const auto cfg = world::world_configs();
    models::AutoencoderKL vae(cfg.vae);
    at::Generator vae_gen = at::make_generator<at::CPUGeneratorImpl>(3);
    bench::fill_random_weights(*vae, vae_gen);
    const at::Tensor context = torch::linspace(-1, 1, 77 * 64).reshape({1, 77, 64});
    const auto encode = [&](const std::string& caption) { return caption.empty() ? context * 0 : context; };
    const auto alphas = sampling::training_alphas_cumprod(sampling::sd15_scheduler_config());
    const auto trained = [&](int steps, double ema) {
        models::UNet2DConditionModel unet(cfg.unet);
        at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(11);
        bench::fill_random_weights(*unet, gen);
        world::UnetTraining t;
        t.steps = steps, t.batch = 2, t.dataset = 4, t.lr = 1e-2, t.ema_decay = ema;  // Adam moves each weight ~lr a step
        if (steps > 0) world::train_unet(*unet, *vae, encode, alphas, t, nullptr);
        return flat(unet->parameters());
    };
    const at::Tensor w0 = trained(0, 0), w1 = trained(1, 0), w2 = trained(2, 0), average = trained(2, 0.999);
    ASSERT_FALSE(torch::equal(w1, w2));
    const at::Tensor expected = (w0 * 0.1 + w1 * 0.9) * (2.0 / 11) + w2 * (9.0 / 11);
    EXPECT_LT((average - expected).abs().max().item<double>(), 1e-6);
    EXPECT_GT((average - w2).abs().max().item<double>(), 1e-3);  // not the last step's weights
}

TEST(WorldMake, QuickBuildLearnsAndItsFilesLoad) {
    const fs::path dir = test::make_temp_dir("world");
    const fs::path out = dir / "w";
    auto r = test::run_multilora("make-world --quick --out " + out.string());
    ASSERT_EQ(r.exit_code, 0) << r.output;

    // The VAE's and the UNet's losses fall (first ten steps against the last ten); the decoder phase ran.
    const json t = json::parse(test::read_bytes(out / "training.json"));
    for (const char* phase : {"vae", "unet"}) {
        const json& l = t.at("losses").at(phase);
        ASSERT_GE(l.size(), 20u) << phase;
        EXPECT_LT(mean(l, l.size() - 10, l.size()), 0.8 * mean(l, 0, 10)) << phase;
    }
    EXPECT_EQ(t.at("losses").at("decoder").size(), 10u);
    EXPECT_GT(t.at("seconds").at("decoder").get<double>(), 0);

    // The model loads as any SD1.5 checkpoint, with the world's sizes and a measured scaling factor.
    pipeline::LoadOptions load;
    load.model_path = (out / "world-sd15.safetensors").string();
    auto model = pipeline::load_stable_diffusion(load);
    EXPECT_EQ(model.unet->config().block_out_channels, world::world_configs().unet.block_out_channels);
    EXPECT_NE(model.vae->config().scaling_factor, world::world_configs().vae.scaling_factor);

    // One kohya LoRA per concept, listed in the lora_info file.
    const json info = json::parse(test::read_bytes(out / "world_lora_info.json"));
    size_t listed = 0;
    for (const auto& [category, items] : info.items()) {
        for (const auto& item : items) {
            const auto file = lora::read_lora_file((out / "loras" / (item.at("id").get<std::string>() + ".safetensors")).string());
            EXPECT_EQ(file.format, "kohya");
            EXPECT_EQ(file.groups.front().rank(), 8);
            ++listed;
        }
    }
    EXPECT_EQ(listed, 15u);

    // Pictures and a README that names every file's SHA-256.
    int w = 0, h = 0;
    io::decode_png_rgb(test::read_bytes(out / "pictures" / "samples.png"), &w, &h);
    EXPECT_EQ(h, 256);
    io::decode_png_rgb(test::read_bytes(out / "pictures" / "losses.png"), &w, &h);
    EXPECT_EQ(w, 512);
    io::decode_png_rgb(test::read_bytes(out / "pictures" / "concepts.png"), &w, &h);
    EXPECT_EQ(h, 128 * 16);  // a row of generic scenes, then one per concept
    const std::string readme = test::read_bytes(out / "README.md");
    EXPECT_NE(readme.find(io::sha256_file_hex((out / "world-sd15.safetensors").string())), std::string::npos);
    EXPECT_NE(readme.find(io::sha256_file_hex((out / "detector.safetensors").string())), std::string::npos);
    // The LoRA check and the detector's accuracy table, a row per concept each.
    EXPECT_NE(readme.find("## Does each LoRA draw its element?"), std::string::npos);
    EXPECT_NE(readme.find("| `background_3` | wavoo sea | 1 |"), std::string::npos) << readme;
    EXPECT_NE(readme.find("| `object_3` | shroomba | 2 / 2 |"), std::string::npos) << readme;
    EXPECT_NE(test::read_bytes(out / "world_check.md").find("| `character_1` | zorp | 1 |"), std::string::npos);

    // --evidence-only keeps the trained files and redoes the rest.
    const std::string model_sha = io::sha256_file_hex((out / "world-sd15.safetensors").string());
    // --check-seeds sets the LoRA check's images per concept, --quick or not.
    auto again = test::run_multilora("make-world --quick --evidence-only --check-seeds 2 --out " + out.string());
    ASSERT_EQ(again.exit_code, 0) << again.output;
    EXPECT_EQ(io::sha256_file_hex((out / "world-sd15.safetensors").string()), model_sha);
    EXPECT_NE(test::read_bytes(out / "world_check.md").find("| `character_1` | zorp | 2 |"), std::string::npos);
    auto incomplete = test::run_multilora("make-world --quick --evidence-only --out " + (dir / "nothing").string());
    EXPECT_EQ(incomplete.exit_code, 2) << incomplete.output;
    EXPECT_NE(incomplete.output.find("is not a complete world"), std::string::npos) << incomplete.output;
    EXPECT_NE(readme.find("| `object_2` | object | **rumbo apple**"), std::string::npos);

    // --retrain-loras trains every LoRA again on the model as shipped. The build trained them on the reloaded
    // float16 model too, so the files come out byte for byte the same; model and detector are kept.
    const auto sha_of = [&](const char* name) { return io::sha256_file_hex((out / name).string()); };
    const std::string lora_sha = sha_of("loras/object_1.safetensors"), detector_sha = sha_of("detector.safetensors");
    fs::remove(out / "loras" / "object_1.safetensors");
    auto missing_lora = test::run_multilora("make-world --quick --retrain-loras --out " + out.string());
    EXPECT_EQ(missing_lora.exit_code, 2) << missing_lora.output;  // read_world wants every LoRA, even to replace it
    std::ofstream(out / "loras" / "object_1.safetensors") << "not a LoRA";
    auto retrain = test::run_multilora("make-world --quick --retrain-loras --check-seeds 1 --out " + out.string());
    ASSERT_EQ(retrain.exit_code, 0) << retrain.output;
    EXPECT_EQ(sha_of("loras/object_1.safetensors"), lora_sha);
    EXPECT_EQ(sha_of("detector.safetensors"), detector_sha);
    EXPECT_EQ(sha_of("world-sd15.safetensors"), model_sha);
    EXPECT_NE(test::read_bytes(out / "README.md").find(detector_sha), std::string::npos);
    fs::remove(out / "detector.md");
    auto no_detector = test::run_multilora("make-world --quick --retrain-loras --out " + out.string());
    EXPECT_EQ(no_detector.exit_code, 2) << no_detector.output;
    EXPECT_NE(no_detector.output.find("has no detector to keep"), std::string::npos) << no_detector.output;
    EXPECT_EQ(sha_of("world-sd15.safetensors"), model_sha);

    // --refine-decoder trains the VAE decoder further on the model as shipped: only the decoder's and
    // post_quant_conv's tensors change, the LoRAs stay, and the detector is trained again on the new round trips.
    const auto before = read_tensors(out / "world-sd15.safetensors");
    auto refine = test::run_multilora("make-world --quick --refine-decoder --check-seeds 1 --out " + out.string());
    ASSERT_EQ(refine.exit_code, 0) << refine.output;
    const auto after = read_tensors(out / "world-sd15.safetensors");
    ASSERT_EQ(after.size(), before.size());
    int changed = 0;
    for (const auto& [name, tensor] : before) {
        const bool decoder = starts_with(name, "first_stage_model.decoder.") || starts_with(name, "first_stage_model.post_quant_conv.");
        const bool same = torch::equal(after.at(name), tensor);
        if (!decoder) EXPECT_TRUE(same) << name;  // everything outside the decoder is kept bit for bit
        changed += !same;
    }
    EXPECT_GT(changed, 10);
    EXPECT_EQ(sha_of("loras/object_1.safetensors"), lora_sha);
    EXPECT_NE(sha_of("detector.safetensors"), detector_sha);
    EXPECT_NE(test::read_bytes(out / "README.md").find(sha_of("world-sd15.safetensors")), std::string::npos);
    EXPECT_EQ(json::parse(test::read_bytes(out / "training.json")).at("losses").at("decoder").size(), 10u);
    auto both = test::run_multilora("make-world --quick --refine-decoder --retrain-loras --out " + out.string());
    EXPECT_EQ(both.exit_code, 2) << both.output;

    // A LoRA composes with the model in generate.
    auto g = test::run_multilora("generate --model " + (out / "world-sd15.safetensors").string() + " --lora " +
                                 (out / "loras" / "character_1.safetensors").string() + " --lora " +
                                 (out / "loras" / "object_1.safetensors").string() +
                                 " --method composite --prompt \"zorp with a glint key\" --steps 3 --width 64 --height 64 --out " +
                                 (dir / "gen").string());
    EXPECT_EQ(g.exit_code, 0) << g.output;

    // configs/world-all.json plans every set of the world (3 characters, then one concept from each of k - 1
    // other categories: 36, 162, 324 and 243 sets for k = 2..5) with every method; K-LoRA on k = 2 only.
    std::string config = test::read_bytes(fs::path(ML_SOURCE_DIR) / "configs" / "world-all.json");
    for (size_t at; (at = config.find("../models/world/")) != std::string::npos;) config.replace(at, 16, out.string() + "/");
    std::ofstream(dir / "world-all.json") << config;
    auto plan = test::run_multilora("batch " + (dir / "world-all.json").string() + " --dry-run --no-measure");
    EXPECT_EQ(plan.exit_code, 0) << plan.output;
    EXPECT_NE(plan.output.find("765 sets, 6156 images"), std::string::npos) << plan.output;
}

// make-world --resume: a build stopped in the VAE phase (past its checkpoint at step 20), resumed and stopped in
// the UNet phase (past step 10), then in the second LoRA, then resumed to the end, writes the files of an
// uninterrupted build byte for byte (identity between two code paths). Each resumed phase starts after its
// last checkpoint, and finished phases do not run again.
TEST(WorldMake, ResumedBuildWritesTheFilesOfAnUninterruptedOne) {
    struct Stop {};
    const fs::path dir = test::make_temp_dir("world-resume");
    world::MakeWorldOptions whole;
    whole.quick = true;
    whole.out = (dir / "whole").string();
    ASSERT_EQ(world::world_plan(whole).checkpoint_every, 10);
    const world::MakeWorldResult uninterrupted = world::make_world(whole, nullptr);

    world::MakeWorldOptions o = whole;
    o.out = (dir / "resumed").string();
    const fs::path record = fs::path(o.out) / "make-world.progress.json";
    const std::string first_lora = world::concepts().at(0).id, second_lora = world::concepts().at(1).id;
    std::map<std::string, int> first_step;  // each phase's first step in a run
    std::map<std::string, std::map<int, double>> step_seconds;  // each step's time in the run that last made it
    auto run_until = [&](const std::string& stop_phase, int stop_step) {
        first_step.clear();
        return [&, stop_phase, stop_step](const world::PhaseStatus& s) {
            first_step.emplace(s.phase, s.step);
            step_seconds[s.phase][s.step] = s.step_seconds;
            if (s.phase == stop_phase && s.step == stop_step) throw Stop{};
        };
    };
    EXPECT_THROW(world::make_world(o, run_until("vae", 25)), Stop);
    EXPECT_EQ(json::parse(test::read_bytes(record)).at("done"), json::array());
    EXPECT_TRUE(fs::exists(fs::path(o.out) / "make-world.vae.checkpoint"));

    o.resume = true;
    EXPECT_THROW(world::make_world(o, run_until("unet", 15)), Stop);
    EXPECT_EQ(first_step, (std::map<std::string, int>{{"vae", 21}, {"unet", 1}}));
    EXPECT_EQ(json::parse(test::read_bytes(record)).at("done"), json({"vae"}));
    EXPECT_TRUE(fs::exists(fs::path(o.out) / "make-world.vae.safetensors"));
    EXPECT_FALSE(fs::exists(fs::path(o.out) / "make-world.vae.checkpoint"));

    EXPECT_THROW(world::make_world(o, run_until(second_lora, 1)), Stop);
    EXPECT_EQ(first_step, (std::map<std::string, int>{{"unet", 11}, {"decoder", 1}, {first_lora, 1}, {second_lora, 1}}));
    EXPECT_EQ(json::parse(test::read_bytes(record)).at("done"), json({"vae", "unet", "decoder", first_lora}));

    const world::MakeWorldResult resumed = world::make_world(o, run_until("none", 0));
    EXPECT_EQ(first_step.size(), world::concepts().size() - 1);  // the LoRAs from the second on, nothing else
    EXPECT_EQ(first_step.count(first_lora), 0u);
    const auto sha = [](const std::string& path) { return io::sha256_file_hex(path); };
    EXPECT_EQ(sha(resumed.model), sha(uninterrupted.model));
    ASSERT_EQ(resumed.loras.size(), uninterrupted.loras.size());
    for (size_t i = 0; i < resumed.loras.size(); ++i) EXPECT_EQ(sha(resumed.loras[i]), sha(uninterrupted.loras[i])) << resumed.loras[i];
    EXPECT_EQ(sha(resumed.lora_info), sha(uninterrupted.lora_info));
    const json resumed_training = json::parse(test::read_bytes(resumed.training_json));
    EXPECT_EQ(resumed_training.at("losses"), json::parse(test::read_bytes(uninterrupted.training_json)).at("losses"));
    // A phase's seconds count the run that reached its checkpoint too: at least the time of every step kept.
    for (const char* phase : {"vae", "unet"}) {
        double kept = 0;
        for (const auto& [step, secs] : step_seconds.at(phase)) kept += secs;
        EXPECT_GE(resumed_training.at("seconds").at(phase).get<double>(), kept) << phase;
    }
    for (const auto& entry : fs::directory_iterator(o.out))  // the record and the checkpoints are gone
        EXPECT_FALSE(starts_with(entry.path().filename().string(), "make-world.")) << entry.path();

    // A finished build resumed is kept as it is; one built with another seed is refused, as is a record of one.
    const world::MakeWorldResult kept = world::make_world(o, run_until("none", 0));
    EXPECT_TRUE(first_step.empty());
    EXPECT_EQ(sha(kept.model), sha(uninterrupted.model));
    world::MakeWorldOptions other = o;
    other.seed = 8;
    EXPECT_THROW(world::make_world(other, nullptr), UsageError);
    world::MakeWorldOptions stopped = whole;
    stopped.out = (dir / "stopped").string();
    EXPECT_THROW(world::make_world(stopped, run_until("vae", 1)), Stop);
    try {  // without --resume, a recorded build is not thrown away
        world::make_world(stopped, run_until("vae", 1));
        ADD_FAILURE() << "an interrupted build was started afresh";
    } catch (const UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("add --resume to continue it"), std::string::npos) << e.what();
    }
    stopped.resume = true;
    stopped.seed = 8;
    try {
        world::make_world(stopped, run_until("vae", 1));
        ADD_FAILURE() << "a record of another seed was resumed";
    } catch (const UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("interrupted make-world --seed 7 --quick"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(fs::exists(fs::path(stopped.out) / "make-world.progress.json"));  // a refusal keeps the record
}

// Ctrl-C on the command line: the build stops with exit 130 and a line giving the command that continues it
// (with the build's non-default --seed and --quick); that command, run as printed, finishes the build from
// the VAE phase's checkpoint and leaves no record or checkpoint behind.
TEST(WorldMake, CtrlCStopsTheBuildAndThePrintedCommandFinishesIt) {
    const fs::path dir = test::make_temp_dir("world-sigint");
    const std::string out = (dir / "w").string(), bin = ML_BINARY_PATH;
    // SIGINT once the VAE phase has written its step-10 checkpoint (of --quick's 30 steps).
    const auto stopped = test::run_shell("( " + bin + " make-world --quick --seed 9 --threads 1 --out " + out +
                                         " & pid=$!; while [ ! -e " + out + "/make-world.vae.checkpoint ] && kill -0 $pid; "
                                         "do sleep 0.02; done; kill -INT $pid; wait $pid; echo \"exit=$?\" )");
    ASSERT_NE(stopped.output.find("exit=130"), std::string::npos) << stopped.output;
    EXPECT_NE(stopped.output.find("interrupted by SIGINT"), std::string::npos) << stopped.output;
    const std::string printed = "`multilora make-world --resume --out " + out + " --seed 9 --quick`";
    ASSERT_NE(stopped.output.find(printed), std::string::npos) << stopped.output;
    EXPECT_TRUE(fs::exists(fs::path(out) / "make-world.progress.json"));
    EXPECT_FALSE(fs::exists(fs::path(out) / "training.json"));

    const auto resumed = test::run_multilora(printed.substr(printed.find(' ') + 1, printed.size() - 2 - printed.find(' ')));
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    const json t = json::parse(test::read_bytes(fs::path(out) / "training.json"));
    EXPECT_EQ(t.at("seed"), 9);
    EXPECT_EQ(t.at("losses").at("vae").size(), 30u);
    for (const auto& entry : fs::directory_iterator(out))
        EXPECT_FALSE(starts_with(entry.path().filename().string(), "make-world.")) << entry.path();
}
