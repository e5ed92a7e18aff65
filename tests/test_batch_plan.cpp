// Batch plans: the ComposLoRA enumeration (counts, order and prompts worked out by hand from the rules),
// config validation with key paths, path resolution, shards.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <set>

#include "multilora/batch/config.h"
#include "multilora/batch/plan.h"
#include "multilora/util/error.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace multilora;
using nlohmann::ordered_json;

namespace {

fs::path configs_dir() { return fs::path(ML_SOURCE_DIR) / "configs"; }

const batch::BatchConfig& shipped(const std::string& style) {
    static std::map<std::string, std::unique_ptr<batch::BatchConfig>> cache;
    auto& slot = cache[style];
    if (!slot)
        slot = std::make_unique<batch::BatchConfig>(
            batch::load_batch_config((configs_dir() / ("composlora-" + style + ".json")).string()));
    return *slot;
}

std::vector<std::string> ids_of(const std::vector<const batch::LoraEntry*>& set) {
    std::vector<std::string> out;
    for (auto* e : set) out.push_back(e->id);
    return out;
}

// A minimal valid config in `dir`, with its own lora_info; `edit` changes it before writing.
ordered_json base_config() {
    return ordered_json{{"style", "unit"},
                        {"model", "model.safetensors"},
                        {"lora_dir", "loras"},
                        {"lora_info", "info.json"},
                        {"prompt", "a photo"},
                        {"negative_prompt", "blurry"},
                        {"methods", {"merge", "switch", "composite"}},
                        {"k", {2, 3}},
                        {"seeds", {111}},
                        {"steps", 4},
                        {"guidance_scale", 7.5},
                        {"width", 64},
                        {"height", 64},
                        {"out", "out"}};
}

fs::path write_config(const ordered_json& j, const std::string& tag, const ordered_json& info = {}) {
    fs::path dir = test::make_temp_dir("batch-cfg-" + tag);
    ordered_json li = info.is_null() ? ordered_json::parse(R"({
        "character": [{"id": "c1", "name": "C one", "trigger": ["c one"], "url": ""},
                      {"id": "c2", "name": "C two", "trigger": ["c two", "tall"], "url": ""}],
        "style": [{"id": "s1", "name": "S one", "trigger": ["s one"], "url": ""}],
        "object": [{"id": "o1", "name": "O one", "trigger": [], "url": ""},
                   {"id": "o2", "name": "O two", "trigger": ["o two"], "url": ""}]})")
                                     : info;
    std::ofstream(dir / "info.json") << li.dump(2);
    std::ofstream(dir / "config.json") << j.dump(2);
    return dir / "config.json";
}

std::string config_error(const ordered_json& j, const ordered_json& info = {}) {
    fs::path p = write_config(j, "err", info);
    try {
        batch::load_batch_config(p.string());
    } catch (const UsageError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(BatchEnumeration, ComposLoraCountsPerKAndStyle) {
    for (const std::string style : {"anime", "reality"}) {
        const auto& c = shipped(style);
        ASSERT_EQ(c.lora_info.categories.size(), 5u) << style;
        EXPECT_EQ(c.lora_info.categories[0].name, "character");
        EXPECT_EQ(batch::enumerate_sets(c.lora_info, 2).size(), 24u) << style;
        EXPECT_EQ(batch::enumerate_sets(c.lora_info, 3).size(), 72u) << style;
        EXPECT_EQ(batch::enumerate_sets(c.lora_info, 4).size(), 96u) << style;
        EXPECT_EQ(batch::enumerate_sets(c.lora_info, 5).size(), 48u) << style;
        auto plan = batch::make_plan(c);
        EXPECT_EQ(plan.sets.size(), 240u);
        EXPECT_EQ(plan.images.size(), 720u);  // 3 methods x 1 seed
    }
}

TEST(BatchEnumeration, CategoriesKeepTheFileOrder) {
    // The JSON's order (character, clothing, style, background, object), not sorted key order.
    const auto& c = shipped("anime");
    std::vector<std::string> names;
    for (const auto& cat : c.lora_info.categories) names.push_back(cat.name);
    EXPECT_EQ(names, (std::vector<std::string>{"character", "clothing", "style", "background", "object"}));
}

TEST(BatchEnumeration, HandWorkedSetsAnime) {
    const auto& info = shipped("anime").lora_info;
    using V = std::vector<std::string>;
    // k=2: combinations of one other category (clothing, style, background, object), each a product
    // character x category with the last category turning fastest.
    auto k2 = batch::enumerate_sets(info, 2);
    EXPECT_EQ(ids_of(k2[0]), (V{"character_1", "clothing_1"}));
    EXPECT_EQ(ids_of(k2[1]), (V{"character_1", "clothing_2"}));
    EXPECT_EQ(ids_of(k2[2]), (V{"character_2", "clothing_1"}));
    EXPECT_EQ(ids_of(k2[5]), (V{"character_3", "clothing_2"}));
    EXPECT_EQ(ids_of(k2[6]), (V{"character_1", "style_1"}));
    EXPECT_EQ(ids_of(k2[12]), (V{"character_1", "background_1"}));
    EXPECT_EQ(ids_of(k2[23]), (V{"character_3", "object_2"}));
    // k=3: (clothing, style) first, 12 sets each; (clothing, background) from set 12; (background, object) last.
    auto k3 = batch::enumerate_sets(info, 3);
    EXPECT_EQ(ids_of(k3[0]), (V{"character_1", "clothing_1", "style_1"}));
    EXPECT_EQ(ids_of(k3[1]), (V{"character_1", "clothing_1", "style_2"}));
    EXPECT_EQ(ids_of(k3[2]), (V{"character_1", "clothing_2", "style_1"}));
    EXPECT_EQ(ids_of(k3[4]), (V{"character_2", "clothing_1", "style_1"}));
    EXPECT_EQ(ids_of(k3[12]), (V{"character_1", "clothing_1", "background_1"}));
    EXPECT_EQ(ids_of(k3[36]), (V{"character_1", "style_1", "background_1"}));
    EXPECT_EQ(ids_of(k3[71]), (V{"character_3", "background_2", "object_2"}));
    // k=4: (clothing, style, background), (clothing, style, object), ... 24 sets each.
    auto k4 = batch::enumerate_sets(info, 4);
    EXPECT_EQ(ids_of(k4[0]), (V{"character_1", "clothing_1", "style_1", "background_1"}));
    EXPECT_EQ(ids_of(k4[24]), (V{"character_1", "clothing_1", "style_1", "object_1"}));
    EXPECT_EQ(ids_of(k4[95]), (V{"character_3", "style_2", "background_2", "object_2"}));
    // k=5: one combination; 16 sets per character.
    auto k5 = batch::enumerate_sets(info, 5);
    EXPECT_EQ(ids_of(k5[0]), (V{"character_1", "clothing_1", "style_1", "background_1", "object_1"}));
    EXPECT_EQ(ids_of(k5[1]), (V{"character_1", "clothing_1", "style_1", "background_1", "object_2"}));
    EXPECT_EQ(ids_of(k5[16]), (V{"character_2", "clothing_1", "style_1", "background_1", "object_1"}));
    EXPECT_EQ(ids_of(k5[47]), (V{"character_3", "clothing_2", "style_2", "background_2", "object_2"}));
}

TEST(BatchEnumeration, HandWorkedPrompts) {
    {
        const auto& c = shipped("anime");
        auto plan = batch::make_plan(c);
        const auto& first = plan.images[0];
        EXPECT_EQ(first.k, 2);
        EXPECT_EQ(first.method, "merge");
        EXPECT_EQ(first.prompt,
                  "masterpiece, best quality, kamado nezuko, black hair, pink eyes, forehead, gmuniform, blue thighhighs, "
                  "long sleeves");
        EXPECT_EQ(plan.images[1].method, "switch");
        EXPECT_EQ(plan.images[2].method, "composite");
        EXPECT_EQ(plan.images[2].prompt, first.prompt);
        EXPECT_EQ(fs::path(first.png_path).filename(), "merge_character_1_clothing_1.png");
        EXPECT_EQ(fs::path(first.png_path).parent_path().filename(), "2_elements");
        EXPECT_EQ(fs::path(first.png_path).parent_path().parent_path().filename(), "anime");
    }
    {
        const auto& c = shipped("reality");
        auto k3 = batch::enumerate_sets(c.lora_info, 3);
        // Set 5 of k=3: character_2 (4..7 are character_2's), clothing_1, style_2.
        EXPECT_EQ(batch::compose_prompt(c.prompt, k3[5]),
                  "RAW photo, subject, 8k uhd, dslr, high quality, Fujifilm XT3, half-length portrait from knees up, "
                  "scarlett, short red hair, blue eyes, mahalaiuniform, white shirt short sleeves, black pencil skirt, "
                  "bright lighting");
        auto k5 = batch::enumerate_sets(c.lora_info, 5);
        EXPECT_EQ(batch::compose_prompt(c.prompt, k5[47]),
                  "RAW photo, subject, 8k uhd, dslr, high quality, Fujifilm XT3, half-length portrait from knees up, "
                  "th3r0ck with no hair, muscular male, serious look on his face, school uniform, white shirt, red tie, "
                  "blue pleated microskirt, bright lighting, slg, river, forest, blow bubble gum");
        auto plan = batch::make_plan(c);
        // Images: k, then set, then seed, then method; the noise draw is the set's index within its k.
        const auto& im = plan.images[(24 + 5) * 3 + 2];
        EXPECT_EQ(im.k, 3);
        EXPECT_EQ(im.set_index, 5);
        EXPECT_EQ(im.noise_draw, 5);
        EXPECT_EQ(im.method, "composite");
        EXPECT_EQ(fs::path(im.png_path).filename(), "composite_character_2_clothing_1_style_2.png");
        auto line = batch::plan_line(c, im);
        EXPECT_EQ(line["style"], "reality");
        EXPECT_EQ(line["lora_ids"], ordered_json({"character_2", "clothing_1", "style_2"}));
        EXPECT_EQ(line["seed"], 111);
        EXPECT_EQ(line["negative_prompt"], c.negative_prompt);
        EXPECT_EQ(line["output"], im.png_path);
    }
}

TEST(BatchEnumeration, ShippedConfigsCarryThePaperSettings) {
    const auto& a = shipped("anime");
    EXPECT_EQ(a.steps, 200);
    EXPECT_EQ(a.guidance_scale, 10);
    EXPECT_EQ(a.width, 512);
    EXPECT_EQ(a.height, 512);
    EXPECT_TRUE(a.vae.empty());
    EXPECT_EQ(a.seeds, std::vector<uint64_t>{111});
    EXPECT_EQ(a.lora_scale, 0.8);
    EXPECT_EQ(a.switch_interval, 5);
    EXPECT_EQ(a.scheduler, "dpmpp-2m");
    const auto& r = shipped("reality");
    EXPECT_EQ(r.steps, 100);
    EXPECT_EQ(r.guidance_scale, 7);
    EXPECT_EQ(r.width, 768);
    EXPECT_EQ(r.height, 1024);
    EXPECT_NE(r.vae.find("sd-vae-ft-mse"), std::string::npos);
    EXPECT_NE(r.model.find("Realistic_Vision_V5.1_noVAE"), std::string::npos);
    EXPECT_NE(a.model.find("Counterfeit-V2.5"), std::string::npos);
}

TEST(BatchEnumeration, ProductOrderAndEmptyTriggers) {
    auto cfg = batch::load_batch_config(write_config(base_config(), "order").string());
    auto k2 = batch::enumerate_sets(cfg.lora_info, 2);
    ASSERT_EQ(k2.size(), 2u * 1 + 2u * 2);  // (style): 2x1, (object): 2x2
    using V = std::vector<std::string>;
    EXPECT_EQ(ids_of(k2[0]), (V{"c1", "s1"}));
    EXPECT_EQ(ids_of(k2[1]), (V{"c2", "s1"}));
    EXPECT_EQ(ids_of(k2[2]), (V{"c1", "o1"}));
    EXPECT_EQ(ids_of(k2[3]), (V{"c1", "o2"}));
    EXPECT_EQ(ids_of(k2[5]), (V{"c2", "o2"}));
    // A LoRA without triggers adds nothing; the separator rule is the paper's.
    EXPECT_EQ(batch::compose_prompt("a photo", k2[2]), "a photo, c one");
    EXPECT_EQ(batch::compose_prompt("a photo", k2[5]), "a photo, c two, tall, o two");
    EXPECT_EQ(batch::enumerate_sets(cfg.lora_info, 3).size(), 2u * 1 * 2);
}

TEST(BatchConfig, RelativePathsResolveAgainstTheConfigFolder) {
    auto j = base_config();
    j["vae"] = "../vae-folder";
    fs::path p = write_config(j, "paths");
    // Load it from another working directory through a relative path.
    fs::path old = fs::current_path();
    fs::current_path(p.parent_path().parent_path());
    auto cfg = batch::load_batch_config((p.parent_path().filename() / "config.json").string());
    fs::current_path(old);
    const fs::path dir = p.parent_path();
    EXPECT_EQ(fs::path(cfg.model), dir / "model.safetensors");
    EXPECT_EQ(fs::path(cfg.lora_dir), dir / "loras");
    EXPECT_EQ(fs::path(cfg.out), dir / "out");
    EXPECT_EQ(fs::path(cfg.vae), dir.parent_path() / "vae-folder");
    EXPECT_EQ(cfg.lora_file("c1"), (dir / "loras" / "c1.safetensors").string());
    // Absolute paths stay as they are.
    j["model"] = "/abs/model.safetensors";
    auto cfg2 = batch::load_batch_config(write_config(j, "abs").string());
    EXPECT_EQ(cfg2.model, "/abs/model.safetensors");
}

TEST(BatchConfig, ErrorsCarryTheKeyPath) {
    auto j = base_config();
    j["methods"] = {"merge", "switch", "swtich"};
    std::string e = config_error(j);
    EXPECT_NE(e.find("methods[2]: unknown method \"swtich\""), std::string::npos) << e;
    EXPECT_NE(e.find("did you mean \"switch\"?"), std::string::npos) << e;

    j = base_config();
    j["stpes"] = 20;
    e = config_error(j);
    EXPECT_NE(e.find("stpes: unknown key (did you mean \"steps\"?)"), std::string::npos) << e;

    j = base_config();
    j["steps"] = "200";
    e = config_error(j);
    EXPECT_NE(e.find("steps: expected an integer, got the string \"200\""), std::string::npos) << e;

    j = base_config();
    j["allow_nan"] = "yes";
    e = config_error(j);
    EXPECT_NE(e.find("allow_nan: expected true or false, got the string \"yes\""), std::string::npos) << e;
    j["allow_nan"] = true;
    EXPECT_TRUE(batch::load_batch_config(write_config(j, "nan").string()).allow_nan);

    j = base_config();
    j["k"] = {2, 4};
    e = config_error(j);
    EXPECT_NE(e.find("k[1]: 4 is more than the 3 categories"), std::string::npos) << e;

    j = base_config();
    j["seeds"] = {111, -1};
    e = config_error(j);
    EXPECT_NE(e.find("seeds[1]: seeds are non-negative"), std::string::npos) << e;

    j = base_config();
    j["width"] = 100;
    e = config_error(j);
    EXPECT_NE(e.find("width: must be a multiple of 8"), std::string::npos) << e;

    j = base_config();
    j["switch_schedule"] = "papr";
    e = config_error(j);
    EXPECT_NE(e.find("switch_schedule: unknown value \"papr\""), std::string::npos) << e;

    j = base_config();
    j["scheduler"] = "plms";
    e = config_error(j);
    EXPECT_NE(e.find("scheduler: unknown value \"plms\""), std::string::npos) << e;

    j = base_config();
    j.erase("model");
    e = config_error(j);
    EXPECT_NE(e.find("model: missing (required)"), std::string::npos) << e;

    j = base_config();
    j["methods"] = {"merge", "merge"};
    e = config_error(j);
    EXPECT_NE(e.find("methods[1]: method \"merge\" is listed twice"), std::string::npos) << e;

    j = base_config();
    j["guidance_scale"] = true;
    e = config_error(j);
    EXPECT_NE(e.find("guidance_scale: expected a number, got true"), std::string::npos) << e;

    // Every problem is reported at once, each on its own line prefixed by the file.
    j = base_config();
    j["methods"] = {"merge", 3};
    j["threads"] = -2;
    j["colour"] = "red";
    e = config_error(j);
    EXPECT_NE(e.find("methods[1]: expected a method name, got the number 3"), std::string::npos) << e;
    EXPECT_NE(e.find("threads: must be 0 (all cores) or a positive thread count"), std::string::npos) << e;
    EXPECT_NE(e.find("colour: unknown key"), std::string::npos) << e;
    EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 2) << e;
    EXPECT_NE(e.find("config.json: "), std::string::npos) << e;

    // "_" keys are comments.
    j = base_config();
    j["_comment"] = "anything";
    EXPECT_EQ(config_error(j), "");
}

TEST(BatchConfig, LoraInfoErrorsNameTheFileAndEntry) {
    auto info = ordered_json::parse(R"({
        "character": [{"id": "c1", "name": "C", "trigger": ["x"], "url": ""},
                      {"id": "c2", "name": "D", "trigger": "not a list", "url": ""}],
        "style": [{"id": "c1", "name": "dup", "trigger": [], "url": ""}]})");
    std::string e = config_error(base_config(), info);
    EXPECT_NE(e.find("info.json: character[1].trigger: expected an array of strings"), std::string::npos) << e;
    EXPECT_NE(e.find("style[0].id: duplicate id \"c1\""), std::string::npos) << e;

    auto no_char = ordered_json::parse(R"({"style": [{"id": "s1", "name": "S", "trigger": [], "url": ""}]})");
    e = config_error(base_config(), no_char);
    EXPECT_NE(e.find("no \"character\" category"), std::string::npos) << e;

    auto bad_id = ordered_json::parse(R"({"character": [{"id": "../x", "name": "S", "trigger": [], "url": ""}]})");
    e = config_error(base_config(), bad_id);
    EXPECT_NE(e.find("character[0].id"), std::string::npos) << e;

    auto j = base_config();
    j["lora_info"] = "missing.json";
    e = config_error(j);
    EXPECT_NE(e.find("lora_info: cannot read"), std::string::npos) << e;
    EXPECT_NE(e.find("missing.json"), std::string::npos) << e;
}

TEST(BatchConfig, SeveralSeedsGetTheirOwnFileNames) {
    auto j = base_config();
    j["seeds"] = {111, 7};
    auto cfg = batch::load_batch_config(write_config(j, "seeds").string());
    auto plan = batch::make_plan(cfg);
    ASSERT_EQ(plan.images.size(), (6u + 4u) * 2 * 3);
    EXPECT_EQ(fs::path(plan.images[0].png_path).filename(), "merge_c1_s1_seed111.png");
    EXPECT_EQ(fs::path(plan.images[3].png_path).filename(), "merge_c1_s1_seed7.png");
    EXPECT_EQ(plan.images[3].noise_draw, 0);
    EXPECT_EQ(plan.images[6].noise_draw, 1);
    std::set<std::string> paths;
    for (const auto& im : plan.images) paths.insert(im.png_path);
    EXPECT_EQ(paths.size(), plan.images.size());
}

TEST(BatchShards, UnionIsThePlanWithNoOverlap) {
    const auto& c = shipped("anime");
    auto plan = batch::make_plan(c);
    for (int n : {1, 2, 3, 7, 16, 240, 1000}) {
        std::vector<int> owner(plan.images.size(), -1);
        std::vector<int> per_shard(n, 0);
        for (int i = 0; i < n; ++i) {
            batch::Shard shard{i, n};
            for (const auto& s : plan.sets)
                if (shard.contains(s))
                    for (size_t im : s.images) {
                        EXPECT_EQ(owner[im], -1) << "image " << im << " in two shards";
                        owner[im] = i;
                        ++per_shard[i];
                    }
        }
        for (size_t im = 0; im < owner.size(); ++im) EXPECT_GE(owner[im], 0) << "image " << im << " in no shard";
        // Interleaved: shard sizes differ by at most one set's images.
        auto [lo, hi] = std::minmax_element(per_shard.begin(), per_shard.end());
        if (n <= 240) EXPECT_LE(*hi - *lo, 3) << n;
    }
    // Every shard of 4 gets each k in equal measure.
    for (int i = 0; i < 4; ++i) {
        std::map<int, int> per_k;
        for (const auto& s : plan.sets)
            if (batch::Shard{i, 4}.contains(s)) ++per_k[s.k];
        EXPECT_EQ(per_k[2], 6);
        EXPECT_EQ(per_k[3], 18);
        EXPECT_EQ(per_k[4], 24);
        EXPECT_EQ(per_k[5], 12);
    }
}

TEST(BatchShards, ParsingAndSlurmDefaults) {
    auto s = batch::parse_shard("2/5");
    EXPECT_EQ(s.index, 2);
    EXPECT_EQ(s.count, 5);
    for (const char* bad : {"5/5", "-1/3", "1", "a/b", "1/0", "/3", "1/"})
        EXPECT_THROW(batch::parse_shard(bad), UsageError) << bad;

    unsetenv("SLURM_ARRAY_TASK_ID");
    unsetenv("SLURM_ARRAY_TASK_COUNT");
    unsetenv("SLURM_ARRAY_TASK_MIN");
    unsetenv("SLURM_ARRAY_TASK_STEP");
    EXPECT_EQ(batch::shard_from_environment().count, 1);
    setenv("SLURM_ARRAY_TASK_ID", "3", 1);
    setenv("SLURM_ARRAY_TASK_COUNT", "4", 1);
    auto e = batch::shard_from_environment();
    EXPECT_EQ(e.index, 3);
    EXPECT_EQ(e.count, 4);
    // --array=1-4: ids start at 1.
    setenv("SLURM_ARRAY_TASK_MIN", "1", 1);
    e = batch::shard_from_environment();
    EXPECT_EQ(e.index, 2);
    setenv("SLURM_ARRAY_TASK_ID", "9", 1);
    EXPECT_THROW(batch::shard_from_environment(), UsageError);
    unsetenv("SLURM_ARRAY_TASK_COUNT");
    EXPECT_THROW(batch::shard_from_environment(), UsageError);
    unsetenv("SLURM_ARRAY_TASK_ID");
    unsetenv("SLURM_ARRAY_TASK_MIN");
}

// configs/world-testbed.json: every set of the world (3 characters; 3 concepts in each of 4 other categories):
// k = 2: 3·4·3 = 36, k = 3: 3·C(4,2)·9 = 162, k = 4: 3·C(4,3)·27 = 324, k = 5: 3·81 = 243 sets; 8 seeds; 10 methods
// (the 9 composition methods and none), K-LoRA at k = 2 only: 8·(36·10 + 729·9) = 55 368 images. --quick: the
// characters and one concept of each other category: 12 + 18 + 12 + 3 = 45 sets, 2 seeds: 2·(12·10 + 33·9) = 834
// images, in its own folder.
TEST(BatchConfig, WorldTestbedAndItsQuickSubset) {
    const std::string path = (configs_dir() / "world-testbed.json").string();
    const batch::BatchConfig full = batch::load_batch_config(path);
    const batch::BatchPlan plan = batch::make_plan(full);
    EXPECT_EQ(plan.sets.size(), 765u);
    EXPECT_EQ(plan.images.size(), 55368u);
    const batch::BatchConfig quick = batch::load_batch_config(path, true);
    const batch::BatchPlan qplan = batch::make_plan(quick);
    EXPECT_EQ(qplan.sets.size(), 45u);
    EXPECT_EQ(qplan.images.size(), 834u);
    EXPECT_EQ(quick.seeds, (std::vector<uint64_t>{1, 2}));
    EXPECT_EQ(fs::path(quick.out).filename(), "world-testbed-quick");
    EXPECT_EQ(quick.methods, full.methods);
    EXPECT_EQ(quick.steps, full.steps);
}

TEST(BatchConfig, QuickSubsetErrors) {
    auto usage_error = [](const std::function<void()>& f) {
        try {
            f();
        } catch (const UsageError& e) {
            return std::string(e.what());
        }
        return std::string("(no error)");
    };
    EXPECT_NE(usage_error([&] { batch::load_batch_config(write_config(base_config(), "noquick").string(), true); })
                  .find("--quick asks for the config's \"quick\" subset, and it has none"),
              std::string::npos);
    auto j = base_config();
    j["quick"] = "yes";
    EXPECT_NE(config_error(j).find("quick: expected an object of batch keys"), std::string::npos);
    j["quick"] = ordered_json{{"quick", ordered_json::object()}};
    EXPECT_NE(config_error(j).find("quick.quick: a quick subset cannot hold another"), std::string::npos);
    j["quick"] = ordered_json{{"seedz", {1}}};
    const fs::path p = write_config(j, "quick-typo");
    EXPECT_NE(usage_error([&] { batch::load_batch_config(p.string(), true); }).find("seedz: unknown key (did you mean \"seeds\"?)"),
              std::string::npos);
    j["quick"] = ordered_json{{"seeds", {5, 6}}, {"k", {2}}};
    const batch::BatchConfig q = batch::load_batch_config(write_config(j, "quick-ok").string(), true);
    EXPECT_EQ(q.seeds, (std::vector<uint64_t>{5, 6}));
    EXPECT_EQ(q.ks, (std::vector<int>{2}));
    EXPECT_EQ(batch::load_batch_config(write_config(j, "quick-off").string()).seeds, (std::vector<uint64_t>{111}));
}
