// `multilora batch` end to end on the tiny model: tiny-smoke.json with sheets and gallery, resume after
// kills (injected between images, mid-image, mid-write, and real SIGKILLs at random moments) compared byte
// for byte with an uninterrupted run, stale outputs, unwritable folders, shards, dry runs and exit codes.
#include <gtest/gtest.h>

#include <regex>
#include <set>

#include <fstream>
#include <random>

#include "batch_test_support.h"
#include "page_check.h"
#include "multilora/io/png_writer.h"
#include "multilora/io/sha256.h"

namespace fs = std::filesystem;
using namespace multilora;
using nlohmann::json;
using test::BatchDir;
using test::batch_args;
using test::run_multilora;
using test::run_multilora_env;

namespace {

constexpr size_t kImages = 18;  // tiny-smoke pinned to merge, switch, composite: (3 + 3 sets) x 3 methods
// As shipped, with every method: 3 sets (k = 2) x 8 methods + 3 sets (k = 3) x 7 (K-LoRA takes k = 2 only).
constexpr size_t kShippedImages = 51;
constexpr size_t kSets = 6;

// The shared config folder for runs compared byte for byte (same config, same model paths; --out differs).
const BatchDir& shared_dir() {
    static const BatchDir d = test::tiny_batch("shared");
    return d;
}

// An uninterrupted run of tiny-smoke.json, made once.
const std::map<std::string, std::string>& reference() {
    static const std::map<std::string, std::string> files = [] {
        fs::path out = shared_dir().root / "reference";
        auto r = run_multilora(batch_args(shared_dir(), "--out " + out.string()));
        if (r.exit_code != 0) {
            ADD_FAILURE() << r.output;
            return std::map<std::string, std::string>{};
        }
        return test::snapshot(out);
    }();
    return files;
}

fs::path fresh_out(const std::string& tag) { return shared_dir().root / ("out-" + tag); }

std::vector<json> dry_run_lines(const std::string& args) {
    auto r = run_multilora(args);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::vector<json> lines;
    std::istringstream in(r.output);
    std::string line;
    while (std::getline(in, line))
        if (!line.empty() && line[0] == '{') lines.push_back(json::parse(line));
    return lines;
}

}  // namespace

TEST(BatchRun, TinySmokeWritesImagesManifestsSheetsGalleryAndLog) {
    const auto& files = reference();
    ASSERT_FALSE(files.empty());
    const fs::path out = shared_dir().root / "reference";
    int pngs = 0, manifests = 0, sheets = 0;
    for (const auto& [rel, bytes] : files) {
        if (rel.find("/sheet_") != std::string::npos) ++sheets;
        else if (fs::path(rel).extension() == ".png") ++pngs;
        else if (fs::path(rel).extension() == ".json" && fs::path(rel).filename() != "plan.json") ++manifests;
    }
    EXPECT_EQ(pngs, static_cast<int>(kImages));
    EXPECT_EQ(manifests, static_cast<int>(kImages));
    EXPECT_EQ(sheets, static_cast<int>(kSets));
    ASSERT_TRUE(files.count("index.html"));
    ASSERT_TRUE(files.count("tiny/plan.json"));

    // Layout and manifest of one image.
    const std::string stem = "tiny/2_elements/composite_tiny-character_tiny-style";
    ASSERT_TRUE(files.count(stem + ".png"));
    json m = json::parse(files.at(stem + ".json"));
    EXPECT_EQ(m["tool"]["command"], "batch");
    EXPECT_EQ(m["settings"]["method"], "composite");
    EXPECT_EQ(m["settings"]["lora_ids"], json({"tiny-character", "tiny-style"}));
    EXPECT_EQ(m["settings"]["prompt"], "a watercolor painting, tiny fox, red fur, watercolor, soft edges");
    EXPECT_EQ(m["settings"]["seed"], 111);
    EXPECT_EQ(m["settings"]["noise_draw"], 1);
    EXPECT_EQ(m["batch"]["noise"]["draw_index"], 1);
    EXPECT_EQ(m["outputs"][0]["sha256"], io::sha256_hex(files.at(stem + ".png")));
    ASSERT_EQ(m["loras"].size(), 2u);
    EXPECT_EQ(m["loras"][0]["id"], "tiny-character");
    EXPECT_EQ(m["loras"][1]["format"], "kohya");
    EXPECT_EQ(m["loras"][1]["sha256"].get<std::string>().size(), 64u);
    EXPECT_EQ(m["composition"]["method"], "composite");
    EXPECT_EQ(m["composition"]["lora_scale"], 0.8);
    EXPECT_FALSE(m.contains("created"));  // reproducible: clock times live in batch.jsonl
    auto chunks = io::read_png_text_chunks(files.at(stem + ".png"));
    ASSERT_FALSE(chunks.empty());
    EXPECT_NE(chunks[0].second.find("Seed: 111"), std::string::npos);
    EXPECT_NE(chunks[0].second.find("Noise draw: 1"), std::string::npos);
    EXPECT_NE(chunks[0].second.find("Composition: composite"), std::string::npos);
    json sw = json::parse(files.at("tiny/3_elements/switch_tiny-character_tiny-peft_tiny-object.json"));
    EXPECT_EQ(sw["composition"]["active_lora_per_step"], json({0, 1, 2, 0}));

    // Sheets: the methods side by side, from the images on disk.
    int w = 0, h = 0;
    io::decode_png_rgb(files.at("tiny/2_elements/sheet_tiny-character_tiny-style.png"), &w, &h);
    EXPECT_GT(w, 3 * 256);
    EXPECT_GT(h, 256);

    // Gallery: one row per set, every image linked to its manifest, LoRA names and triggers shown.
    const std::string& html = files.at("index.html");
    size_t rows = 0;
    for (size_t p = html.find("<tr><td>#"); p != std::string::npos; p = html.find("<tr><td>#", p + 1)) ++rows;
    EXPECT_EQ(rows, kSets);
    EXPECT_NE(html.find("<a href=\"" + stem + ".json\"><img src=\"" + stem + ".png\""), std::string::npos);
    EXPECT_NE(html.find("Tiny Watercolor Style"), std::string::npos);
    EXPECT_NE(html.find("watercolor, soft edges"), std::string::npos);
    EXPECT_NE(html.find("18 of 18 images finished"), std::string::npos);
    EXPECT_NE(html.find("sheet_tiny-character_tiny-style.png"), std::string::npos);

    // batch.jsonl: one line per image.
    auto logged = test::logged_pngs(out);
    EXPECT_EQ(logged.size(), kImages);
    EXPECT_EQ(std::set<std::string>(logged.begin(), logged.end()).size(), kImages);
    EXPECT_TRUE(test::temporary_files(out).empty());
}

TEST(BatchRun, ShippedTinySmokeConfigRunsFromItsOwnFolder) {
    // configs/tiny-smoke.json as shipped: relative paths resolve against the config's folder.
    BatchDir d = test::tiny_batch("asis", {}, true);
    fs::path elsewhere = test::make_temp_dir("batch-cwd");
    auto r = run_multilora("batch " + d.config.string() + " --threads 1 --no-progress");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(fs::exists(d.out / "index.html"));
    EXPECT_TRUE(fs::exists(d.out / "tiny" / "3_elements" / "sheet_tiny-character_tiny-peft_tiny-object.png"));
    EXPECT_NE(r.output.find("generated 51 image(s)"), std::string::npos) << r.output;
    // Every method is a column of the sheets and the gallery; K-LoRA's only on the two-LoRA sets.
    const std::string gallery = test::read_bytes(d.out / "index.html");
    for (const char* m : {"merge", "switch", "composite", "w-composite", "loratorio", "cmlora", "w-switch", "klora", "multlfg"})
        EXPECT_NE(gallery.find(std::string(m) + "_tiny-character_tiny-style.png"), std::string::npos) << m;
    EXPECT_EQ(gallery.find("klora_tiny-character_tiny-peft_tiny-style.png"), std::string::npos);

    // Again: everything is finished, nothing is generated, nothing changes.
    auto before = test::snapshot(d.out);
    auto again = run_multilora("batch " + d.config.string() + " --threads 1 --no-progress");
    ASSERT_EQ(again.exit_code, 0) << again.output;
    EXPECT_NE(again.output.find("nothing to generate"), std::string::npos) << again.output;
    EXPECT_EQ(before, test::snapshot(d.out));

    // The gallery in headless Chromium: no console message, every image loads (51 images and their sheets).
    const auto page = test::check_page(d.out / "index.html");
    ASSERT_EQ(page.error, "");
    EXPECT_TRUE(page.console.empty()) << page.console.front();
    EXPECT_GE(page.images, 51);
    EXPECT_TRUE(page.broken_images.empty()) << page.broken_images.size() << " broken, first " << page.broken_images.front();
    EXPECT_NE(page.text.find("Tiny Watercolor Style"), std::string::npos);
    EXPECT_EQ(test::logged_pngs(d.out).size(), kShippedImages);
    (void)elsewhere;
}

TEST(BatchRun, ResumeAfterInjectedKillsIsByteIdentical) {
    ASSERT_FALSE(reference().empty());
    const fs::path out = fresh_out("injected");
    const std::string args = batch_args(shared_dir(), "--out " + out.string());
    // Each run dies at a different kind of moment; the next one resumes.
    const std::vector<std::string> crashes = {"after-image:2", "mid-image:1:2", "before-manifest:1", "mid-png:2",
                                              "before-log:1", "mid-image:0:0"};
    for (const auto& crash : crashes) {
        auto r = run_multilora_env("MULTILORA_TEST_CRASH=" + crash, args);
        ASSERT_NE(r.exit_code, 0) << crash << ": the process was not killed\n" << r.output;
        // Whatever sits under a final name is complete.
        for (const auto& [rel, bytes] : test::snapshot(out)) {
            if (fs::path(rel).extension() == ".png") {
                int w, h;
                EXPECT_NO_THROW(io::decode_png_rgb(bytes, &w, &h)) << crash << ": " << rel;
            } else if (fs::path(rel).extension() == ".json") {
                EXPECT_TRUE(json::accept(bytes)) << crash << ": " << rel;
            }
        }
        if (crash.rfind("mid-png", 0) == 0) EXPECT_FALSE(test::temporary_files(out).empty()) << "mid-png left no temp file";
    }
    auto r = run_multilora(args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(test::temporary_files(out).empty());
    test::expect_same_files(reference(), test::snapshot(out), "after injected kills");
    // Every image is in batch.jsonl (a line lost to the kill before the log is recovered).
    auto logged = test::logged_pngs(out);
    EXPECT_EQ(std::set<std::string>(logged.begin(), logged.end()).size(), kImages);
}

TEST(BatchRun, ResumeAfterRandomSigkillsIsByteIdentical) {
    ASSERT_FALSE(reference().empty());
    const fs::path out = fresh_out("sigkill");
    const std::string args = batch_args(shared_dir(), "--out " + out.string());
    std::mt19937 rng(20240226);
    std::uniform_real_distribution<double> when(0.05, 1.2);
    int killed = 0;
    for (int attempt = 0; attempt < 12; ++attempt) {
        auto r = run_multilora_env("", args, when(rng));
        if (r.exit_code == 0) break;
        ++killed;
    }
    auto r = run_multilora(args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_GT(killed, 0);
    EXPECT_TRUE(test::temporary_files(out).empty());
    test::expect_same_files(reference(), test::snapshot(out), "after random SIGKILLs");
}

TEST(BatchRun, StaleOutputsStopUnlessOverwrite) {
    ASSERT_FALSE(reference().empty());
    BatchDir d = test::tiny_batch("stale");
    ASSERT_EQ(run_multilora(batch_args(d)).exit_code, 0);
    auto before = test::snapshot(d.out);
    // Same out, other steps: the finished images are stale.
    auto j = nlohmann::ordered_json::parse(test::read_bytes(d.config));
    j["steps"] = 3;
    std::ofstream(d.config) << j.dump(2);
    auto r = run_multilora(batch_args(d));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("18 finished image(s)"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("were made with other settings"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("steps: 4 -> 3"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("--overwrite"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("loading"), std::string::npos) << "the model was loaded: " << r.output;
    EXPECT_EQ(before, test::snapshot(d.out));

    r = run_multilora(batch_args(d, "--overwrite"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("generated 18 image(s)"), std::string::npos) << r.output;
    json m = json::parse(test::read_bytes(d.out / "tiny/2_elements/merge_tiny-character_tiny-peft.json"));
    EXPECT_EQ(m["settings"]["steps"], 3);
    // A damaged PNG is not finished: it is made again (no --overwrite needed).
    std::ofstream(d.out / "tiny/2_elements/merge_tiny-character_tiny-peft.png", std::ios::binary) << "garbage";
    r = run_multilora(batch_args(d));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("generated 1 image(s)"), std::string::npos) << r.output;
}

TEST(BatchRun, UnwritableFolderStopsAndKeepsFinishedWork) {
    ASSERT_FALSE(reference().empty());
    const fs::path out = fresh_out("unwritable");
    fs::create_directories(out / "tiny");
    std::ofstream(out / "tiny" / "3_elements") << "a file where the k=3 folder goes";
    const std::string args = batch_args(shared_dir(), "--out " + out.string());
    auto r = run_multilora(args);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("3_elements"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("9 image(s) finished by this run"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("run the same command again"), std::string::npos) << r.output;
    // The k=2 work is complete and recorded.
    auto files = test::snapshot(out);
    for (const auto& [rel, bytes] : reference())
        if (rel.rfind("tiny/2_elements/", 0) == 0) EXPECT_TRUE(files.count(rel) && files.at(rel) == bytes) << rel;
    EXPECT_EQ(test::logged_pngs(out).size(), 9u);
    // Fixed: the rest follows and the result is the uninterrupted one.
    fs::remove(out / "tiny" / "3_elements");
    r = run_multilora(args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("generated 9 image(s), 9 were already finished"), std::string::npos) << r.output;
    test::expect_same_files(reference(), test::snapshot(out), "after fixing the folder");
}

TEST(BatchRun, ShardsCoverThePlanOnceAndReassembleTheRun) {
    ASSERT_FALSE(reference().empty());
    const std::string base = batch_args(shared_dir());
    auto all = dry_run_lines(base + " --dry-run --json");
    ASSERT_EQ(all.size(), kImages);
    for (int n : {2, 3, 5}) {
        std::multiset<std::string> seen;
        for (int i = 0; i < n; ++i)
            for (const auto& l : dry_run_lines(base + " --dry-run --json --shard " + std::to_string(i) + "/" + std::to_string(n)))
                seen.insert(l.dump());
        std::multiset<std::string> want;
        for (const auto& l : all) want.insert(l.dump());
        EXPECT_EQ(seen, want) << n << " shards";
    }
    // SLURM array variables give the same split as --shard.
    auto env = test::run_multilora_env("SLURM_ARRAY_TASK_ID=1 SLURM_ARRAY_TASK_COUNT=3", base + " --dry-run --json");
    auto flag = run_multilora(base + " --dry-run --json --shard 1/3");
    EXPECT_EQ(env.exit_code, 0);
    EXPECT_EQ(env.output, flag.output);
    auto bad = test::run_multilora_env("SLURM_ARRAY_TASK_ID=x SLURM_ARRAY_TASK_COUNT=3", base + " --dry-run --json");
    EXPECT_EQ(bad.exit_code, 2) << bad.output;

    // Two shards into one folder, then the gallery: the same files as one uninterrupted run.
    const fs::path out = fresh_out("shards");
    for (int i = 0; i < 2; ++i) {
        auto r = run_multilora(batch_args(shared_dir(), "--out " + out.string() + " --shard " + std::to_string(i) + "/2"));
        ASSERT_EQ(r.exit_code, 0) << r.output;
    }
    auto g = run_multilora(batch_args(shared_dir(), "--out " + out.string() + " --gallery-only"));
    ASSERT_EQ(g.exit_code, 0) << g.output;
    test::expect_same_files(reference(), test::snapshot(out), "two shards");
    EXPECT_EQ(test::logged_pngs(out).size(), kImages);
}

TEST(BatchRun, DryRunPrintsPlanAndSummaryWithoutWriting) {
    BatchDir d = test::tiny_batch("dry");
    auto lines = dry_run_lines(batch_args(d, "--dry-run --json"));
    ASSERT_EQ(lines.size(), kImages);
    const json& l = lines[5];  // k=2, set 1 (tiny-character + tiny-style), composite
    for (const char* key : {"style", "k", "method", "lora_ids", "prompt", "negative_prompt", "seed", "output"})
        EXPECT_TRUE(l.contains(key)) << key;
    EXPECT_EQ(l["style"], "tiny");
    EXPECT_EQ(l["k"], 2);
    EXPECT_EQ(l["method"], "composite");
    EXPECT_EQ(l["lora_ids"], json({"tiny-character", "tiny-style"}));
    EXPECT_EQ(l["prompt"], "a watercolor painting, tiny fox, red fur, watercolor, soft edges");
    EXPECT_EQ(l["negative_prompt"], "blurry");
    EXPECT_EQ(l["seed"], 111);
    EXPECT_EQ(fs::path(l["output"].get<std::string>()), d.out / "tiny/2_elements/composite_tiny-character_tiny-style.png");

    auto r = run_multilora(batch_args(d, "--dry-run"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("6 sets, 18 images"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("to do 18"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("time estimate for the 18 image(s) to do"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d.out)) << "a dry run wrote files";

    // After a run, the estimate comes from batch.jsonl and the counts show what is left.
    ASSERT_EQ(run_multilora(batch_args(d, "--shard 0/2")).exit_code, 0);
    r = run_multilora(batch_args(d, "--dry-run --no-measure"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("finished 9, to do 9"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("batch.jsonl"), std::string::npos) << r.output;
}

TEST(BatchRun, UsageAndInputErrors) {
    BatchDir d = test::tiny_batch("errors", [](nlohmann::ordered_json& j) {
        j["methods"] = {"merge", "switch", "swtich"};
        j["model"] = "../models/nope.safetensors";
    });
    auto r = run_multilora(batch_args(d));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("methods[2]: unknown method \"swtich\""), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("loading"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d.out));

    r = run_multilora("batch /nonexistent/config.json");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("config file not found"), std::string::npos) << r.output;

    BatchDir ok = test::tiny_batch("errors-ok");
    r = run_multilora(batch_args(ok, "--json"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    r = run_multilora(batch_args(ok, "--shard 3/3"));
    EXPECT_EQ(r.exit_code, 2) << r.output;

    std::ofstream(ok.root / "configs" / "broken.json") << "{\"style\": ";
    r = run_multilora("batch " + (ok.root / "configs" / "broken.json").string());
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("not valid JSON"), std::string::npos) << r.output;

    // A missing LoRA file: named, before the model is loaded, nothing generated; a dry run still plans.
    BatchDir miss = test::tiny_batch("missing-lora", [](nlohmann::ordered_json& j) { j["lora_dir"] = "../lora-copy"; });
    fs::create_directories(miss.root / "lora-copy");
    for (const char* f : {"tiny-character", "tiny-peft", "tiny-style"})
        fs::copy_file(test::tiny_model_dir() / "loras" / (std::string(f) + ".safetensors"),
                      miss.root / "lora-copy" / (std::string(f) + ".safetensors"));
    r = run_multilora(batch_args(miss));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("tiny-object.safetensors"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("loading"), std::string::npos) << r.output;
    EXPECT_TRUE(test::snapshot(miss.out).empty());
    EXPECT_EQ(dry_run_lines(batch_args(miss, "--dry-run --json")).size(), kImages);

    auto help = run_multilora("batch --help");
    EXPECT_EQ(help.exit_code, 0);
    EXPECT_NE(help.output.find("Examples:"), std::string::npos);
    EXPECT_NE(help.output.find("--shard"), std::string::npos);
    EXPECT_NE(help.output.find("--dry-run"), std::string::npos);
}

// Four shards started at once on one output folder (as a Slurm array does): every image once, one whole
// batch.jsonl line per image, and the gallery and sheets of one uninterrupted run, byte for byte. Then the same
// with one shard SIGKILLed mid-run and started again.
TEST(BatchRun, FourShardsAtOnceShareOneFolder) {
    ASSERT_FALSE(reference().empty());
    auto shards_at_once = [](const fs::path& out, const std::string& after_start) {
        std::string line = "pids=''; for i in 0 1 2 3; do '" + std::string(ML_BINARY_PATH) + "' " +
                           batch_args(shared_dir(), "--out '" + out.string() + "' --shard $i/4") +
                           " >/dev/null 2>&1 & pids=\"$pids $!\"; done; " + after_start +
                           " rc=0; for p in $pids; do wait $p || rc=$((rc + 1)); done; exit $rc";
        return test::run_shell("bash -c \"" + std::regex_replace(line, std::regex("([\"$`])"), "\\$1") + "\"");
    };
    const fs::path out = fresh_out("four-at-once");
    auto r = shards_at_once(out, "");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    test::expect_same_files(reference(), test::snapshot(out), "four shards at once");
    auto logged = test::logged_pngs(out);
    EXPECT_EQ(logged.size(), kImages);
    EXPECT_EQ(std::set<std::string>(logged.begin(), logged.end()).size(), kImages);  // each image once

    // Shard 1 (three images) is SIGKILLed once its first image is logged; the others go on; shard 1 is run again.
    const fs::path killed = fresh_out("four-one-killed");
    r = shards_at_once(killed, "set -- $pids; until grep -q '\"shard\":\"1/4\"' '" + (killed / "batch.jsonl").string() +
                                   "' 2>/dev/null; do sleep 0.02; done; kill -KILL $2;");
    EXPECT_EQ(r.exit_code, 1) << "only the killed shard fails: " << r.output;
    auto again = run_multilora(batch_args(shared_dir(), "--out '" + killed.string() + "' --shard 1/4"));
    ASSERT_EQ(again.exit_code, 0) << again.output;
    test::expect_same_files(reference(), test::snapshot(killed), "four shards, one killed and rerun");
    auto after = test::logged_pngs(killed);
    EXPECT_EQ(std::set<std::string>(after.begin(), after.end()).size(), kImages);
    EXPECT_EQ(after.size(), kImages);
}
