// `multilora train-lora`: a kohya-format LoRA from a captioned image folder.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/commands.h"
#include "cli/progress.h"
#include "multilora/pipeline/runtime.h"
#include "multilora/train/lora_training.h"
#include "multilora/util/error.h"

namespace multilora::cli {

namespace {

constexpr const char* kFooter =
    "The data folder holds IMAGE.png (or .jpg/.bmp) with IMAGE.txt beside it (its caption), kohya's convention;\n"
    "subfolders named N_name repeat their images N times. All images share one size, a multiple of 8.\n"
    "--trigger is put in front of every caption that lacks it. The VAE and text encoder stay frozen; the UNet's\n"
    "targeted layers train (attn: attention projections; attn+ff: and feed-forward; all: and resnet convs).\n"
    "Every --checkpoint-every steps OUT.checkpoint is written; --resume continues from it (same settings,\n"
    "same result as an uninterrupted run). It is removed when training ends.\n"
    "Examples:\n"
    "  multilora train-lora --model models/tiny-sd15.safetensors --data my_images --trigger zorp --out zorp.safetensors\n"
    "  multilora train-lora --model sd15.safetensors --data data --rank 16 --alpha 8 --steps 2000 --lr 1e-4 \\\n"
    "      --lr-scheduler cosine --noise-offset 0.05 --targets attn+ff --batch-size 4 --out style.safetensors --resume";

}  // namespace

Command add_train_lora_command(CLI::App& app) {
    auto o = std::make_shared<train::TrainLoraOptions>();
    auto targets = std::make_shared<std::string>("attn");
    auto scheduler = std::make_shared<std::string>("constant");
    auto overwrite = std::make_shared<bool>(false);
    auto threads = std::make_shared<int>(0);
    CLI::App* sub = app.add_subcommand("train-lora", "Train a LoRA (kohya format) on a folder of captioned images");
    sub->add_option("--model", o->model, "SD1.x model: LDM single file or diffusers folder")->required();
    sub->add_option("--data", o->data, "Folder of images with .txt captions")->required();
    sub->add_option("--out,-o", o->out, "Output LoRA (.safetensors)")->required();
    sub->add_option("--trigger", o->trigger, "Trigger phrase put in front of captions that lack it");
    sub->add_option("--rank", o->rank, "LoRA rank")->capture_default_str();
    sub->add_option("--alpha", o->alpha, "LoRA alpha (0: equal to the rank)")->capture_default_str();
    sub->add_option("--steps", o->steps, "Optimizer steps")->capture_default_str();
    sub->add_option("--lr", o->lr, "AdamW learning rate")->capture_default_str();
    sub->add_option("--lr-scheduler", *scheduler, "constant, or cosine (from --lr down to 0, no warm-up)")->capture_default_str();
    sub->add_option("--noise-offset", o->noise_offset,
                    "kohya's noise offset: a per-channel constant added to the noise (0.05-0.1 helps a LoRA shift "
                    "overall colour or brightness; 0: off)")
        ->capture_default_str();
    sub->add_option("--batch-size", o->batch_size, "Images per step")->capture_default_str();
    sub->add_option("--targets", *targets, "Layers to train: attn, attn+ff or all")->capture_default_str();
    sub->add_option("--seed", o->seed, "Seed (initial factors, batches, timesteps, noise)")->capture_default_str();
    sub->add_option("--checkpoint-every", o->checkpoint_every, "Steps between checkpoints (0: none)")->capture_default_str();
    sub->add_flag("--resume", o->resume, "Continue from OUT.checkpoint when it exists");
    sub->add_flag("--half", o->half, "Write float16 factors");
    sub->add_option("--threads", *threads, "CPU threads (0: all cores)")->capture_default_str();
    sub->add_flag("--overwrite", *overwrite, "Replace an existing OUT");
    sub->footer(kFooter);
    return [o, targets, scheduler, overwrite, threads] {
        o->targets = train::parse_lora_targets(*targets);
        o->lr_scheduler = train::parse_lr_scheduler(*scheduler);
        pipeline::configure_threads(*threads);
        if (std::filesystem::exists(o->out) && !*overwrite)
            throw UsageError(o->out + " exists (use --overwrite to replace it)");
        StepProgress progress("train-lora");
        auto result = train::train_lora(*o, [&progress](const train::TrainStatus& s) {
            char detail[64];
            std::snprintf(detail, sizeof detail, "loss %.4f (mean %.4f)", s.loss, s.loss_mean);
            progress.set_detail(detail);
            progress.update(s.step - 1 - s.resumed_at, s.total - s.resumed_at, s.step_seconds);
        });
        progress.finish();
        spdlog::info("trained {} layers on {} images{}; wrote {}", result.layers, result.images,
                     result.resumed_at ? " (resumed at step " + std::to_string(result.resumed_at) + ")" : "", result.path);
        std::printf("%s\n", result.path.c_str());
    };
}

}  // namespace multilora::cli
