// The composition-method registry: names and order, typed parameters (defaults, ranges, choices, "did you
// mean"), the LoRA-count bounds, and that every place a method is named reads it: generate's flags and
// help, batch configs' "method_args", the batch manifest's settings. Identities: --method-arg tau=N gives
// the bytes of the older --switch-interval N, and method_args in a config the images of switch_interval.
#include <gtest/gtest.h>

#include "batch_test_support.h"
#include "multilora/batch/config.h"
#include "multilora/batch/state.h"
#include "multilora/compose/registry.h"
#include "multilora/compose/switch.h"
#include "multilora/pipeline/generation.h"
#include "multilora/pipeline/model_loader.h"
#include "multilora/util/error.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace multilora;

namespace {

std::string usage_error(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const UsageError& e) {
        return e.what();
    }
    return "(no UsageError)";
}

}  // namespace

TEST(ComposeRegistry, TheBuiltInMethodsInListingOrder) {
    EXPECT_EQ(compose::registry().names(), (std::vector<std::string>{"none", "merge", "switch", "composite", "w-composite",
                                                                      "loratorio", "cmlora", "multlfg", "w-switch", "klora"}));
    const compose::MethodInfo& sw = compose::registry().get("switch");
    ASSERT_EQ(sw.params.size(), 2u);
    EXPECT_EQ(sw.params[0].name, "tau");
    EXPECT_EQ(sw.params[0].cli_flag, "--switch-interval");
    EXPECT_EQ(sw.params[1].name, "schedule");
    // UNet rows per step per image: CFG doubles; Composite runs every LoRA.
    EXPECT_EQ(compose::registry().get("none").unet_rows(0, true), 2);
    EXPECT_EQ(compose::registry().get("merge").unet_rows(5, true), 2);
    EXPECT_EQ(compose::registry().get("composite").unet_rows(5, true), 10);
    EXPECT_EQ(compose::registry().get("composite").unet_rows(3, false), 3);
    EXPECT_EQ(sw.period_steps(3, compose::default_args("switch")), 5);
}

TEST(ComposeRegistry, UnknownNamesSuggestTheClosest) {
    const std::string e = usage_error([] { compose::registry().get("swtich"); });
    EXPECT_NE(e.find("unknown method \"swtich\" (choose none, merge, switch, composite, w-composite, loratorio, "
                     "cmlora, multlfg, w-switch, klora)"),
              std::string::npos)
        << e;
    EXPECT_NE(e.find("did you mean \"switch\"?"), std::string::npos) << e;
    EXPECT_EQ(usage_error([] { compose::registry().get("zzzzzzzz"); }).find("did you mean"), std::string::npos);
}

TEST(ComposeRegistry, ParametersAreTypedAndChecked) {
    compose::MethodArgs a = compose::default_args("switch");
    EXPECT_EQ(a.get_int("tau"), 5);
    EXPECT_EQ(a.get_string("schedule"), "paper");
    a.set_text("tau", "2", "--method-arg tau");
    a.set_text("schedule", "reference", "--method-arg schedule");
    EXPECT_EQ(a.to_json(), nlohmann::json({{"tau", 2}, {"schedule", "reference"}}));
    EXPECT_NE(usage_error([&] { a.set_text("tau", "0", "--method-arg tau"); }).find("--method-arg tau: 0 is out of range (1..1000)"),
              std::string::npos);
    EXPECT_NE(usage_error([&] { a.set_text("tau", "2.5", "--method-arg tau"); }).find("expected an integer, got \"2.5\""),
              std::string::npos);
    EXPECT_NE(usage_error([&] { a.set_json("tau", nlohmann::json("5"), "x"); }).find("x: expected an integer"),
              std::string::npos);
    const std::string unknown = usage_error([&] { a.set_text("tua", "3", "--method-arg tua"); });
    EXPECT_NE(unknown.find("unknown parameter \"tua\" (this method takes tau, schedule); did you mean \"tau\"?"),
              std::string::npos)
        << unknown;
    const std::string choice = usage_error([&] { a.set_text("schedule", "papr", "s"); });
    EXPECT_NE(choice.find("unknown value \"papr\" (choose paper, reference); did you mean \"paper\"?"), std::string::npos)
        << choice;
    EXPECT_NE(usage_error([] { compose::default_args("merge").set_text("tau", "2", "m"); }).find("takes no parameters"),
              std::string::npos);
    EXPECT_EQ(compose::split_assignment("tau=7", "w"), std::make_pair(std::string("tau"), std::string("7")));
    EXPECT_NE(usage_error([] { compose::split_assignment("tau", "--method-arg"); }).find("expected NAME=VALUE"),
              std::string::npos);
    EXPECT_EQ(compose::registry().get("switch").params[0].describe(), "int 1..1000, default 5");
    EXPECT_EQ(compose::registry().get("switch").params[1].describe(), "paper|reference, default paper");
    // The builders fill the same fields the methods read.
    const compose::ParamSpec rows = compose::registry().get("composite").params.at(0);
    EXPECT_EQ(rows.cli_flag, "--max-batch-rows");
    EXPECT_EQ(rows.config_key, "max_batch_rows");
    EXPECT_FALSE(rows.affects_output);
    EXPECT_TRUE(compose::registry().get("switch").params[0].affects_output);
    const compose::ParamSpec t = compose::real_param("temperature", 0.5, 0.0, 10.0, "softmin temperature");
    EXPECT_EQ(t.describe(), "real 0..10, default 0.5");
    EXPECT_EQ(t.parse("2.5", "w").get<double>(), 2.5);
    EXPECT_NE(usage_error([&] { t.parse("11", "w"); }).find("w: 11.0 is out of range (0..10)"), std::string::npos);
}

TEST(ComposeRegistry, LoraCountBoundsAreChecked) {
    pipeline::LoadOptions load;
    load.model_path = test::tiny_single_file();
    pipeline::StableDiffusionModel model = pipeline::load_stable_diffusion(load);
    const std::string e = usage_error([&] {
        compose::registry().create("merge", {pipeline::model_parts(model), nullptr, {}, compose::default_args("merge")});
    });
    EXPECT_NE(e.find("--method merge needs at least 1 --lora"), std::string::npos) << e;
    EXPECT_NO_THROW(compose::registry().create("none", {pipeline::model_parts(model)}));
}

TEST(ComposeRegistry, HelpListsEveryMethodAndParameter) {
    const std::string help = compose::methods_help();
    for (const auto& name : compose::registry().names()) EXPECT_NE(help.find("  " + name + ": "), std::string::npos) << name;
    EXPECT_NE(help.find("tau (int 1..1000, default 5; also --switch-interval)"), std::string::npos) << help;
    auto r = test::run_multilora("generate --help");
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.output.find("--method-arg"), std::string::npos);
    EXPECT_NE(r.output.find("composite: each LoRA alone gives its guided prediction"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("max_batch_rows (int 0..1048576, default 0; also --max-batch-rows)"), std::string::npos);
}

TEST(ComposeRegistry, GenerateRejectsBadMethodArgsBeforeLoading) {
    const std::string base = "generate --model /nonexistent/model.safetensors --prompt x --lora " +
                             (test::tiny_model_dir() / "loras" / "tiny-style.safetensors").string() + " --out " +
                             test::make_temp_dir("margs").string();
    auto r = test::run_multilora(base + " --method switch --method-arg tau=0");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--method-arg tau (method switch): 0 is out of range (1..1000)"), std::string::npos) << r.output;
    r = test::run_multilora(base + " --method switch --method-arg tua=3");
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.output.find("did you mean \"tau\"?"), std::string::npos) << r.output;
    r = test::run_multilora(base + " --method merge --switch-interval 0");
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.output.find("--switch-interval: 0 is out of range (1..1000)"), std::string::npos) << r.output;
    r = test::run_multilora(base + " --method swtich");
    EXPECT_EQ(r.exit_code, 2);
}

// The parameter and its older flag are one setting: the same bytes either way.
TEST(ComposeRegistry, MethodArgEqualsTheOlderFlag) {
    const fs::path out = test::make_temp_dir("margs-eq");
    const std::string common = "generate --model " + test::tiny_single_file() + " --prompt \"a fox\" --steps 4 --width 64" +
                               " --height 64 --seed 5 --threads 1 --no-progress --method switch --out " + out.string() +
                               " --lora " + (test::tiny_model_dir() / "loras" / "tiny-style.safetensors").string() +
                               " --lora " + (test::tiny_model_dir() / "loras" / "tiny-object.safetensors").string();
    ASSERT_EQ(test::run_multilora(common + " --name flag --switch-interval 1 --switch-schedule reference").exit_code, 0);
    ASSERT_EQ(test::run_multilora(common + " --name arg --method-arg tau=1 --method-arg schedule=reference").exit_code, 0);
    ASSERT_EQ(test::run_multilora(common + " --name dflt").exit_code, 0);
    EXPECT_EQ(test::read_bytes(out / "flag.png"), test::read_bytes(out / "arg.png"));
    EXPECT_NE(test::read_bytes(out / "flag.png"), test::read_bytes(out / "dflt.png"));
    auto m = nlohmann::json::parse(test::read_bytes(out / "arg.json"));
    EXPECT_EQ(m["composition"]["switch_interval"], 1);
    EXPECT_EQ(m["composition"]["switch_schedule"], "reference");
    EXPECT_EQ(m["composition"]["active_lora_per_step"], nlohmann::json({0, 0, 1, 0}));
}

TEST(ComposeRegistry, BatchConfigMethodArgs) {
    test::BatchDir d = test::tiny_batch("margs", [](nlohmann::ordered_json& j) {
        j.erase("switch_interval");
        j["method_args"] = {{"switch", {{"tau", 2}, {"schedule", "reference"}}}, {"composite", {{"max_batch_rows", 2}}}};
    });
    batch::BatchConfig c = batch::load_batch_config(d.config.string());
    EXPECT_EQ(c.method_args.at("switch").get_int("tau"), 2);
    EXPECT_EQ(c.method_args.at("switch").get_string("schedule"), "reference");
    EXPECT_EQ(c.method_args.at("composite").get_int("max_batch_rows"), 2);
    EXPECT_EQ(c.method_args.at("merge").values().size(), 0u);
    // The settings a manifest records (and stale detection compares) carry the method's image-changing
    // parameters under their config keys; Composite's max_batch_rows changes no image and is left out.
    batch::PlanImage im;
    im.method = "switch";
    auto s = batch::expected_settings(c, im);
    EXPECT_EQ(s["switch_interval"], 2);
    EXPECT_EQ(s["switch_schedule"], "reference");
    im.method = "composite";
    EXPECT_FALSE(batch::expected_settings(c, im).contains("max_batch_rows"));

    test::BatchDir bad = test::tiny_batch("margs-bad", [](nlohmann::ordered_json& j) {
        j["method_args"] = {{"switch", {{"tau", 0}, {"tua", 1}}}, {"cmlora", {{"x", 1}}}, {"merge", 3}};
    });
    const std::string e = usage_error([&] { batch::load_batch_config(bad.config.string()); });
    EXPECT_NE(e.find("method_args.switch.tau: 0 is out of range (1..1000)"), std::string::npos) << e;
    EXPECT_NE(e.find("method_args.switch.tua: unknown parameter \"tua\""), std::string::npos) << e;
    EXPECT_NE(e.find("method_args.cmlora: method \"cmlora\" is not in \"methods\""), std::string::npos) << e;
    EXPECT_NE(e.find("method_args.merge: expected an object {parameter: value}, got the number 3"), std::string::npos) << e;
}

// A batch's switch images are the same with the parameter given either way.
TEST(ComposeRegistry, BatchMethodArgsEqualTheOlderKey) {
    auto only_switch = [](nlohmann::ordered_json& j) {
        j["methods"] = {"switch"};
        j["k"] = {2};
    };
    test::BatchDir a = test::tiny_batch("margs-key", [&](nlohmann::ordered_json& j) {
        only_switch(j);
        j["switch_interval"] = 2;
    });
    test::BatchDir b = test::tiny_batch("margs-arg", [&](nlohmann::ordered_json& j) {
        only_switch(j);
        j.erase("switch_interval");
        j["method_args"] = {{"switch", {{"tau", 2}}}};
    });
    ASSERT_EQ(test::run_multilora(test::batch_args(a)).exit_code, 0);
    ASSERT_EQ(test::run_multilora(test::batch_args(b)).exit_code, 0);
    auto sa = test::snapshot(a.out), sb = test::snapshot(b.out);
    int pngs = 0;
    for (const auto& [rel, bytes] : sa)
        if (rel.size() > 4 && rel.substr(rel.size() - 4) == ".png" && rel.find("switch_") != std::string::npos) {
            EXPECT_EQ(bytes, sb[rel]) << rel;
            ++pngs;
        }
    EXPECT_EQ(pngs, 3);
}
