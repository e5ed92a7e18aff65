// Aggregation on a hand-worked example (means, win/tie/loss per set and per judgement, position bias), and
// the reports rendered from it.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "multilora/eval/aggregate.h"
#include "multilora/eval/report.h"

using namespace multilora::eval;
using nlohmann::json;

namespace {

// image 1 and image 2 scores as the judge gives them
JudgedPair jp(const std::string& style, int k, const std::string& set, const std::string& cmp, bool compare_first,
              double c1, double i1, double c2, double i2) {
    JudgedPair p;
    p.style = style;
    p.k = k;
    p.set_key = set;
    p.base = "merge";
    p.compare = cmp;
    p.compare_first = compare_first;
    p.scores.composition[0] = c1;
    p.scores.image[0] = i1;
    p.scores.composition[1] = c2;
    p.scores.image[1] = i2;
    return p;
}

// The worked example (merge is the base):
//   set A (anime, k=2), switch: base first   merge 6/7, switch 8/7   | switch first  switch 7/6, merge 5/8
//   set B (anime, k=2), switch: base first   merge 7/7, switch 7/8   | switch first  switch 6/9, merge 8/6
//   set C (anime, k=2), switch: base first   merge 4/5, switch 6/5   | (the other order failed)
//   set D (anime, k=3), composite: base first merge 5/5, comp. 7/6   | composite first comp. 8/4, merge 6/6
//   set E (reality, k=2), switch: base first merge 3/3, switch 5/5
std::vector<JudgedPair> example() {
    return {jp("anime", 2, "A", "switch", false, 6, 7, 8, 7),    jp("anime", 2, "A", "switch", true, 7, 6, 5, 8),
            jp("anime", 2, "B", "switch", false, 7, 7, 7, 8),    jp("anime", 2, "B", "switch", true, 6, 9, 8, 6),
            jp("anime", 2, "C", "switch", false, 4, 5, 6, 5),    jp("anime", 3, "D", "composite", false, 5, 5, 7, 6),
            jp("anime", 3, "D", "composite", true, 8, 4, 6, 6),  jp("reality", 2, "E", "switch", false, 3, 3, 5, 5)};
}

const json& group(const json& agg, const std::string& style, const json& k, const std::string& cmp) {
    for (const auto& g : agg["groups"])
        if (g["style"] == style && g["k"] == k && g["compare"] == cmp) return g;
    static const json none;
    ADD_FAILURE() << "no group " << style << " " << k << " " << cmp;
    return none;
}

void expect_wtl(const json& w, double win, double tie, double loss) {
    EXPECT_NEAR(w["win"].get<double>(), win, 1e-9) << w;
    EXPECT_NEAR(w["tie"].get<double>(), tie, 1e-9) << w;
    EXPECT_NEAR(w["loss"].get<double>(), loss, 1e-9) << w;
}

}  // namespace

TEST(EvalAggregate, HandWorkedExample) {
    json agg = aggregate_judgements(example(), "merge", {"switch", "composite"});
    const json& g = group(agg, "anime", 2, "switch");
    EXPECT_EQ(g["sets"], 3);
    EXPECT_EQ(g["judgements"], 5);
    EXPECT_EQ(g["sets_with_both_orders"], 2);
    // means over the 5 judgements
    EXPECT_NEAR(g["mean"]["merge"]["composition"].get<double>(), 30.0 / 5, 1e-12);
    EXPECT_NEAR(g["mean"]["merge"]["image"].get<double>(), 33.0 / 5, 1e-12);
    EXPECT_NEAR(g["mean"]["switch"]["composition"].get<double>(), 34.0 / 5, 1e-12);
    EXPECT_NEAR(g["mean"]["switch"]["image"].get<double>(), 35.0 / 5, 1e-12);
    // per set, scores averaged over orders: A comp 7.5 vs 5.5 win, image 6.5 vs 7.5 loss;
    // B comp 6.5 vs 7.5 loss, image 8.5 vs 6.5 win; C comp 6 vs 4 win, image 5 vs 5 tie.
    expect_wtl(g["win_tie_loss"]["composition"], 200.0 / 3, 0, 100.0 / 3);
    expect_wtl(g["win_tie_loss"]["image"], 100.0 / 3, 100.0 / 3, 100.0 / 3);
    EXPECT_EQ(g["win_tie_loss"]["composition"]["counts"], json({{"win", 2}, {"tie", 0}, {"loss", 1}}));
    // per judgement: comp win, win, tie, loss, win; image tie, loss, win, win, tie
    expect_wtl(g["win_tie_loss_per_judgement"]["composition"], 60, 20, 20);
    expect_wtl(g["win_tie_loss_per_judgement"]["image"], 40, 40, 20);
    // position bias: switch first in A2, B2; second in A1, B1, C1
    const json& pb = g["position_bias"];
    EXPECT_EQ(pb["compare_shown_first"]["judgements"], 2);
    EXPECT_EQ(pb["compare_shown_second"]["judgements"], 3);
    expect_wtl(pb["compare_shown_first"]["composition"], 50, 0, 50);
    expect_wtl(pb["compare_shown_first"]["image"], 50, 0, 50);
    expect_wtl(pb["compare_shown_second"]["composition"], 200.0 / 3, 100.0 / 3, 0);
    expect_wtl(pb["compare_shown_second"]["image"], 100.0 / 3, 200.0 / 3, 0);
    EXPECT_NEAR(pb["first_image_preferred"]["composition"].get<double>(), 20, 1e-9);
    EXPECT_NEAR(pb["second_image_preferred"]["composition"].get<double>(), 60, 1e-9);
    EXPECT_NEAR(pb["images_tied"]["composition"].get<double>(), 20, 1e-9);
    EXPECT_NEAR(pb["first_image_preferred"]["image"].get<double>(), 20, 1e-9);
    EXPECT_NEAR(pb["second_image_preferred"]["image"].get<double>(), 40, 1e-9);
    EXPECT_EQ(pb["order_consistency"]["sets"], 2);
    EXPECT_NEAR(pb["order_consistency"]["composition"].get<double>(), 50, 1e-9);
    EXPECT_NEAR(pb["order_consistency"]["image"].get<double>(), 50, 1e-9);

    // k=3 composite: D comp (7+8)/2=7.5 vs (5+6)/2=5.5 win; image (6+4)/2=5 vs (5+6)/2=5.5 loss
    const json& d = group(agg, "anime", 3, "composite");
    EXPECT_EQ(d["sets"], 1);
    expect_wtl(d["win_tie_loss"]["composition"], 100, 0, 0);
    expect_wtl(d["win_tie_loss"]["image"], 0, 0, 100);
    EXPECT_NEAR(d["mean"]["composite"]["composition"].get<double>(), 7.5, 1e-12);
    // anime/all for switch equals k=2; all styles pools E too: comp A win, B loss, C win, E win
    EXPECT_EQ(group(agg, "anime", "all", "switch")["win_tie_loss"], g["win_tie_loss"]);
    const json& all = group(agg, "all", "all", "switch");
    EXPECT_EQ(all["sets"], 4);
    expect_wtl(all["win_tie_loss"]["composition"], 75, 0, 25);
    expect_wtl(all["win_tie_loss"]["image"], 50, 25, 25);
    // no reality composite group, no k=3 switch group
    for (const auto& x : agg["groups"]) {
        EXPECT_FALSE(x["style"] == "reality" && x["compare"] == "composite");
        EXPECT_FALSE(x["k"] == 3 && x["compare"] == "switch");
    }
    // method means: merge in anime/all pools its switch and composite judgements
    bool found = false;
    for (const auto& m : agg["method_means"])
        if (m["style"] == "anime" && m["k"] == "all" && m["method"] == "merge") {
            found = true;
            EXPECT_EQ(m["judgements"], 7);
            EXPECT_NEAR(m["composition"].get<double>(), 41.0 / 7, 1e-12);
            EXPECT_NEAR(m["image"].get<double>(), 44.0 / 7, 1e-12);
        }
    EXPECT_TRUE(found);
}

TEST(EvalAggregate, EmptyInput) {
    json agg = aggregate_judgements({}, "merge", {"switch"});
    EXPECT_TRUE(agg["groups"].empty());
    EXPECT_TRUE(agg["method_means"].empty());
}

TEST(EvalReport, MarkdownAndHtml) {
    json agg = aggregate_judgements(example(), "merge", {"switch", "composite"});
    json summary = {{"run", "out"},
                    {"base", "merge"},
                    {"compare", {"switch", "composite"}},
                    {"judge", {{"enabled", true}, {"model", "gpt-4o"}, {"api_base", "http://x/v1"},
                               {"temperature", 1.0}, {"max_tokens", 2048}, {"prompt_template", "built-in"}}},
                    {"judgements", {{"requested", 10}, {"ok", 8}, {"failed", 2}, {"missing", 2}}},
                    {"groups", agg["groups"]},
                    {"method_means", agg["method_means"]},
                    {"clipscore",
                     {{"model", "clip"},
                      {"text", "the generation prompt"},
                      {"groups", {{{"style", "anime"}, {"k", 2}, {"method", "merge"}, {"images", 3}, {"mean", 27.5}}}}}},
                    {"sets",
                     {{{"style", "anime"},
                       {"k", 2},
                       {"lora_ids", {"character_1", "clothing_2"}},
                       {"elements", {{{"category", "character"}, {"name", "A <b>"}}}},
                       {"sheet", "../anime/2_elements/sheet_character_1_clothing_2.png"},
                       {"images", {{"merge", "../anime/2_elements/merge_character_1_clothing_2.png"}}},
                       {"judge",
                        {{"switch",
                          {{"orders", 2},
                           {"mean", {{"merge", {{"composition", 5.5}, {"image", 7.5}}},
                                     {"switch", {{"composition", 7.5}, {"image", 6.5}}}}},
                           {"verdict", {{"composition", "win"}, {"image", "loss"}}}}}}},
                       {"clipscore", {{"merge", 27.5}}}}}}};
    std::string md = render_summary_markdown(summary);
    EXPECT_NE(md.find("| method | k=2 | all |"), std::string::npos) << md;
    EXPECT_NE(md.find("| method | k=2 | k=3 | all |"), std::string::npos) << md;
    EXPECT_NE(md.find("| switch vs merge | 66.7 / 0.0 / 33.3 | - | 66.7 / 0.0 / 33.3 |"), std::string::npos) << md;
    EXPECT_NE(md.find("| composite vs merge | - | 100.0 / 0.0 / 0.0 | 100.0 / 0.0 / 0.0 |"), std::string::npos) << md;
    EXPECT_NE(md.find("## All styles"), std::string::npos);
    EXPECT_NE(md.find("### Position bias"), std::string::npos);
    EXPECT_NE(md.find("| switch | 6.80 / 7.00 |"), std::string::npos) << md;
    EXPECT_NE(md.find("CLIPScore"), std::string::npos);
    EXPECT_NE(md.find("27.50"), std::string::npos);
    std::string html = render_report_html(summary);
    EXPECT_NE(html.find("<svg"), std::string::npos);
    EXPECT_NE(html.find("mean score by k"), std::string::npos);
    EXPECT_NE(html.find("win / tie / loss"), std::string::npos);
    EXPECT_NE(html.find("href=\"../anime/2_elements/sheet_character_1_clothing_2.png\""), std::string::npos);
    EXPECT_NE(html.find("A &lt;b&gt;"), std::string::npos);
    EXPECT_EQ(html.find("A <b>"), std::string::npos);
    EXPECT_NE(html.find("CLIPScore by k"), std::string::npos);
    EXPECT_NE(html.find("</html>"), std::string::npos);
}
