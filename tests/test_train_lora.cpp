// train-lora: the layers' training path, the kohya file it writes, a loss that falls, resume equal to an
// uninterrupted run, and clear errors for bad datasets.
#include <torch/torch.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "compose_test_support.h"
#include "multilora/io/png_writer.h"
#include "multilora/io/safetensors.h"
#include "multilora/lora/lora_file.h"
#include "multilora/sampling/scheduler.h"
#include "multilora/train/diffusion_objective.h"
#include "multilora/train/image_folder.h"
#include "multilora/train/learning_rate.h"
#include "multilora/train/lora_training.h"
#include "multilora/util/error.h"
#include "multilora/world/scene.h"

using namespace multilora;
namespace fs = std::filesystem;

namespace {

// `n` rendered world scenes of `size` px with captions, in `dir`.
void write_dataset(const fs::path& dir, int n, int size = 64) {
    fs::create_directories(dir);
    for (int i = 0; i < n; ++i) {
        world::ConceptChoice choice = world::kGeneric;
        choice[0] = 0;
        const auto spec = world::sample_scene(100 + i, choice);
        const auto px = world::render_scene(spec, size).to_rgb8();
        const std::string stem = (dir / ("img" + std::to_string(i))).string();
        io::write_png(stem + ".png", px.data(), size, size);
        std::ofstream(stem + ".txt") << world::caption(spec) << "\n";
    }
}

train::TrainLoraOptions small_options(const fs::path& dir) {
    train::TrainLoraOptions o;
    o.model = compose_test::world().paths.single_file;
    o.data = (dir / "data").string();
    o.out = (dir / "out.safetensors").string();
    o.trigger = "zorp";
    o.rank = 4;
    o.steps = 6;
    o.batch_size = 2;
    o.lr = 1e-2;
    o.seed = 5;
    o.checkpoint_every = 0;
    return o;
}

std::string file_bytes(const std::string& p) { return test::read_bytes(p); }

}  // namespace

TEST(TrainLayers, GradientPathEqualsInferencePath) {
    at::set_num_threads(1);
    auto model = compose_test::load_tiny();
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
    at::Tensor x = at::randn({2, 4, 8, 8}, gen), ctx = at::randn({2, 77, 32}, gen);
    at::Tensor t = at::tensor({10L, 700L});
    at::Tensor reference;
    {
        c10::InferenceMode im;
        reference = model.unet->forward(x, t, ctx);
    }
    at::Tensor xg = x.clone().requires_grad_(true);
    at::Tensor y = model.unet->forward(xg, t, ctx);
    ASSERT_TRUE(y.requires_grad());
    EXPECT_LT((y.detach() - reference).abs().max().item<double>(), 2e-5);
    y.sum().backward();  // the in-place inference routes would make this throw
    EXPECT_GT(xg.grad().abs().sum().item<double>(), 0.0);
}

TEST(TrainLoraTargets, SelectsTheAttentionProjections) {
    using train::LoraTargets;
    const std::string q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q";
    EXPECT_TRUE(train::lora_targets_layer(LoraTargets::Attn, q));
    EXPECT_TRUE(train::lora_targets_layer(LoraTargets::Attn, "up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_out.0"));
    EXPECT_FALSE(train::lora_targets_layer(LoraTargets::Attn, "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2"));
    EXPECT_TRUE(train::lora_targets_layer(LoraTargets::AttnFF, "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2"));
    EXPECT_FALSE(train::lora_targets_layer(LoraTargets::AttnFF, "down_blocks.0.resnets.0.conv1"));
    EXPECT_TRUE(train::lora_targets_layer(LoraTargets::All, "down_blocks.0.resnets.0.conv1"));
    EXPECT_FALSE(train::lora_targets_layer(LoraTargets::All, "conv_in"));
    EXPECT_THROW(train::parse_lora_targets("everything"), UsageError);
}

TEST(TrainLora, LossFallsAndTheFileIsKohya) {
    const fs::path dir = test::make_temp_dir("train");
    write_dataset(dir / "data", 4);
    train::TrainLoraOptions o = small_options(dir);
    o.steps = 40;
    // Loss on a fixed batch (fixed timesteps and noise) before and after training.
    auto model = compose_test::load_tiny();
    const auto data = train::scan_image_folder(o.data);
    auto fixed_loss = [&](const std::string& lora) {
        torch::NoGradGuard ng;
        std::unique_ptr<lora::AdapterSet> set;  // the trained file at weight 1, or nothing
        if (!lora.empty()) {
            set = compose_test::attach(model, {{lora, 1.0}}, 1.0);
            set->activate_unet({0});
        }
        std::vector<at::Tensor> z;
        for (const auto& item : data.items)
            z.push_back(model.vae->encode_mean(train::load_image_tensor(item.image_path).unsqueeze(0)) * model.vae->config().scaling_factor);
        at::Tensor ctx = text::encode_prompts(*model.tokenizer, *model.text_encoder, "zorp, " + data.items[0].caption, "",
                                              text::LongPromptMode::Truncate).cond.repeat({4, 1, 1});
        train::DiffusionObjective obj(sampling::training_alphas_cumprod(model.scheduler_config));
        at::Generator g = at::make_generator<at::CPUGeneratorImpl>(77);
        return obj.loss(*model.unet, at::cat(z), ctx, g).item<double>();
    };
    const double before = fixed_loss("");
    auto r = train::train_lora(o, nullptr);
    EXPECT_EQ(r.losses.size(), 40u);
    EXPECT_EQ(r.images, 4);
    EXPECT_LT(fixed_loss(o.out), before * 0.9);
    // kohya names, every targeted layer, alpha, ss_* metadata.
    const auto file = lora::read_lora_file(o.out);
    EXPECT_EQ(file.format, "kohya");
    EXPECT_EQ(file.groups.size(), r.layers);
    for (const auto& g : file.groups) {
        EXPECT_EQ(g.stem.rfind("lora_unet_", 0), 0u) << g.stem;
        EXPECT_EQ(g.rank(), 4);
        ASSERT_TRUE(g.alpha.has_value());
        EXPECT_DOUBLE_EQ(*g.alpha, 4.0);
    }
    auto st = io::SafetensorsFile::open(o.out);
    EXPECT_TRUE(st->contains("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"));
    EXPECT_EQ(st->metadata().at("ss_network_module"), "networks.lora");
    EXPECT_EQ(st->metadata().at("ss_base_model_version"), "sd_v1");
    EXPECT_FALSE(fs::exists(train::checkpoint_path(o.out)));
}

TEST(TrainLora, ResumeGivesTheUninterruptedResult) {
    const fs::path dir = test::make_temp_dir("train");
    write_dataset(dir / "data", 3);
    train::TrainLoraOptions o = small_options(dir);
    o.checkpoint_every = 3;
    train::train_lora(o, nullptr);
    const std::string uninterrupted = file_bytes(o.out);
    fs::remove(o.out);
    struct Stop {};
    EXPECT_THROW(train::train_lora(o, [](const train::TrainStatus& s) {
                     if (s.step == 4) throw Stop{};
                 }),
                 Stop);
    ASSERT_TRUE(fs::exists(train::checkpoint_path(o.out)));
    EXPECT_FALSE(fs::exists(o.out));
    o.resume = true;
    auto r = train::train_lora(o, nullptr);
    EXPECT_EQ(r.resumed_at, 3);
    EXPECT_EQ(file_bytes(o.out), uninterrupted);
    // Other settings refuse the checkpoint.
    fs::remove(o.out);
    EXPECT_THROW(train::train_lora(o, [](const train::TrainStatus& s) {
                     if (s.step == 4) throw Stop{};
                 }),
                 Stop);
    o.rank = 2;
    EXPECT_THROW(train::train_lora(o, nullptr), UsageError);
}

// diffusers' get_cosine_schedule_with_warmup with no warm-up (kohya's "cosine"): lr·½·(1 + cos(π·s/S)),
// worked by hand for S = 4: 1, (1 + √½)/2 = 0.8535534, ½, (1 − √½)/2 = 0.1464466.
TEST(TrainLoraSchedule, CosineRatesWorkedByHand) {
    using train::LrScheduler;
    const double expected[] = {1.0, 0.8535533905932737, 0.5, 0.14644660940672627};
    for (int step = 0; step < 4; ++step) {
        EXPECT_NEAR(train::scheduled_rate(LrScheduler::Cosine, 2e-3, step, 4), 2e-3 * expected[step], 1e-15) << step;
        EXPECT_EQ(train::scheduled_rate(LrScheduler::Constant, 2e-3, step, 4), 2e-3) << step;
    }
    EXPECT_EQ(train::parse_lr_scheduler("cosine"), LrScheduler::Cosine);
    EXPECT_STREQ(train::lr_scheduler_name(train::parse_lr_scheduler("constant")), "constant");
    try {
        train::parse_lr_scheduler("linear");
        ADD_FAILURE() << "linear accepted";
    } catch (const UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("constant or cosine"), std::string::npos) << e.what();
    }
}

// The noise offset against the objective written out: the same generator's draws (timesteps, noise, then
// the [b, c, 1, 1] offsets) give the same loss; offset 0 draws nothing more and is the plain objective.
TEST(TrainLoraSchedule, NoiseOffsetIsKohyasFormula) {
    auto model = compose_test::load_tiny();
    torch::NoGradGuard ng;
    const train::DiffusionObjective obj(sampling::training_alphas_cumprod(model.scheduler_config));
    at::Generator data_gen = at::make_generator<at::CPUGeneratorImpl>(3);
    const at::Tensor z = at::randn({2, 4, 8, 8}, data_gen);
    const at::Tensor ctx = text::encode_prompts(*model.tokenizer, *model.text_encoder, "zorp", "", text::LongPromptMode::Truncate)
                               .cond.repeat({2, 1, 1});
    auto by_hand = [&](double offset) {
        at::Generator g = at::make_generator<at::CPUGeneratorImpl>(41);
        const at::Tensor t = at::randint(0, obj.num_timesteps(), {2}, g, at::TensorOptions().dtype(at::kLong));
        at::Tensor noise = at::randn(z.sizes(), g);
        if (offset > 0) noise = noise + offset * at::randn({2, 4, 1, 1}, g);
        return at::mse_loss(model.unet->forward(obj.add_noise(z, noise, t), t, ctx), noise).item<double>();
    };
    auto objective = [&](double offset) {
        at::Generator g = at::make_generator<at::CPUGeneratorImpl>(41);
        return obj.loss(*model.unet, z, ctx, g, offset).item<double>();
    };
    EXPECT_EQ(objective(0.1), by_hand(0.1));
    EXPECT_EQ(objective(0), by_hand(0));
    EXPECT_NE(objective(0.1), objective(0));  // the offset is not vacuous
}

// --lr-scheduler cosine and --noise-offset: each changes the trained file, is recorded in kohya's metadata
// (and only when set), and a resumed cosine run gives the uninterrupted file.
TEST(TrainLora, ScheduleAndNoiseOffsetAreUsedRecordedAndResumable) {
    const fs::path dir = test::make_temp_dir("train");
    write_dataset(dir / "data", 3);
    train::TrainLoraOptions o = small_options(dir);
    train::train_lora(o, nullptr);
    const std::string plain = file_bytes(o.out);
    auto meta = [&] { return io::SafetensorsFile::open(o.out)->metadata(); };
    EXPECT_EQ(meta().count("ss_lr_scheduler"), 0u);
    EXPECT_EQ(meta().count("ss_noise_offset"), 0u);
    o.noise_offset = 0.1;
    fs::remove(o.out);
    train::train_lora(o, nullptr);
    EXPECT_NE(file_bytes(o.out), plain);
    EXPECT_EQ(std::stod(meta().at("ss_noise_offset")), 0.1);
    o.noise_offset = 0;
    o.lr_scheduler = train::LrScheduler::Cosine;
    o.checkpoint_every = 3;
    fs::remove(o.out);
    train::train_lora(o, nullptr);
    const std::string cosine = file_bytes(o.out);
    EXPECT_NE(cosine, plain);
    EXPECT_EQ(meta().at("ss_lr_scheduler"), "cosine");
    fs::remove(o.out);
    struct Stop {};
    EXPECT_THROW(train::train_lora(o, [](const train::TrainStatus& s) {
                     if (s.step == 4) throw Stop{};
                 }),
                 Stop);
    o.resume = true;
    EXPECT_EQ(train::train_lora(o, nullptr).resumed_at, 3);
    EXPECT_EQ(file_bytes(o.out), cosine);
}

TEST(TrainLoraData, BadDatasetsGetClearErrors) {
    const fs::path dir = test::make_temp_dir("train");
    auto expect_error = [](const fs::path& data, const std::string& part) {
        try {
            train::scan_image_folder(data.string());
            ADD_FAILURE() << "no error for " << data;
        } catch (const UsageError& e) {
            EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
        }
    };
    expect_error(dir / "missing", "is not a folder");
    fs::create_directories(dir / "empty");
    expect_error(dir / "empty", "holds no images");
    write_dataset(dir / "nocap", 2);
    fs::remove(dir / "nocap" / "img1.txt");
    expect_error(dir / "nocap", "has no caption file");
    write_dataset(dir / "broken", 2);
    std::ofstream(dir / "broken" / "img0.png") << "not a png";
    expect_error(dir / "broken", "cannot read training image");
    write_dataset(dir / "mixed", 1, 64);
    write_dataset(dir / "mixed" / "2_more", 1, 32);
    expect_error(dir / "mixed", "differ in size");
    // kohya repeats: a 3_name folder counts three times.
    write_dataset(dir / "rep" / "3_zorp", 2);
    const auto folder = train::scan_image_folder((dir / "rep").string());
    ASSERT_EQ(folder.items.size(), 2u);
    EXPECT_EQ(folder.items[0].repeats, 3);
}

TEST(TrainLoraCli, WritesTheFileAndRefusesBadInput) {
    const fs::path dir = test::make_temp_dir("train");
    write_dataset(dir / "data", 2);
    const std::string model = compose_test::world().paths.single_file;
    const std::string out = (dir / "cli.safetensors").string();
    auto r = test::run_multilora("train-lora --model " + model + " --data " + (dir / "data").string() +
                                 " --trigger zorp --steps 3 --rank 2 --out " + out);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("loss"), std::string::npos) << r.output;
    EXPECT_TRUE(fs::exists(out));
    // The LoRA it wrote loads in generate.
    auto g = test::run_multilora("generate --model " + model + " --lora " + out + " --prompt zorp --steps 2 --width 64 --height 64 --out " +
                                 (dir / "gen").string());
    EXPECT_EQ(g.exit_code, 0) << g.output;
    auto again = test::run_multilora("train-lora --model " + model + " --data " + (dir / "data").string() + " --out " + out);
    EXPECT_EQ(again.exit_code, 2);
    EXPECT_NE(again.output.find("--overwrite"), std::string::npos) << again.output;
    auto bad = test::run_multilora("train-lora --model " + model + " --data " + (dir / "nowhere").string() + " --out " +
                                   (dir / "x.safetensors").string());
    EXPECT_EQ(bad.exit_code, 2);
    EXPECT_FALSE(fs::exists(dir / "x.safetensors"));
    // An output folder that cannot be made fails before training (exit 2), leaving nothing.
    std::ofstream(dir / "afile") << "x";
    auto unwritable = test::run_multilora("train-lora --model " + model + " --data " + (dir / "data").string() + " --out " +
                                          (dir / "afile" / "z.safetensors").string());
    EXPECT_EQ(unwritable.exit_code, 2) << unwritable.output;
    EXPECT_EQ(unwritable.output.find("loss"), std::string::npos) << unwritable.output;
    auto targets = test::run_multilora("train-lora --model " + model + " --data " + (dir / "data").string() +
                                       " --targets everything --out " + (dir / "y.safetensors").string());
    EXPECT_EQ(targets.exit_code, 2);
    for (const std::string& bad_option : {"--lr-scheduler linear", "--noise-offset 2"}) {
        auto refused = test::run_multilora("train-lora --model " + model + " --data " + (dir / "data").string() + " " +
                                           bad_option + " --out " + (dir / "z.safetensors").string());
        EXPECT_EQ(refused.exit_code, 2) << bad_option << "\n" << refused.output;
        EXPECT_NE(refused.output.find(bad_option.substr(0, bad_option.find(' '))), std::string::npos) << refused.output;
        EXPECT_FALSE(fs::exists(dir / "z.safetensors"));
    }
}
