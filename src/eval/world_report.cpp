// The world scorer's part of summary.md and report.html (world_scorer.h describes the figures).
#include <sstream>

#include "multilora/eval/report.h"
#include "multilora/eval/text_util.h"
#include "multilora/util/html.h"

using nlohmann::json;

namespace multilora::eval {
namespace {

const char* kWorldMetrics[] = {"recall", "success", "leakage", "in_world"};

// "63.2 [58.1, 68.0]"
std::string with_interval(const json& figure) {
    if (!figure.is_object() || !figure["mean"].is_number()) return "-";
    std::string s = format_fixed(figure["mean"].get<double>(), 1);
    const json& ci = figure["ci95"];
    if (ci.is_array()) s += " [" + format_fixed(ci[0].get<double>(), 1) + ", " + format_fixed(ci[1].get<double>(), 1) + "]";
    return s;
}

std::string k_text(const json& k) { return k.is_string() ? "all" : std::to_string(k.get<int>()); }

std::string wtl_text(const json& w) {
    const json& p = w["percent"];
    return format_fixed(p["win"].get<double>(), 1) + " / " + format_fixed(p["tie"].get<double>(), 1) + " / " +
           format_fixed(p["loss"].get<double>(), 1);
}

// Per style and k, each method's recall interval as run (half its bootstrap width) and what unlimited seeds
// would leave of it (seed_limit): "merge ±5.6 → ±4.3".
std::vector<std::pair<std::string, std::string>> seed_limit_lines(const json& world) {
    std::vector<std::pair<std::string, std::string>> lines;  // (style, k label) text -> methods
    for (const auto& g : world["groups"]) {
        const json& r = g["recall"];
        if (!r.is_object() || !r.contains("half_width_unlimited_seeds") || !r["ci95"].is_array()) continue;
        const std::string key = g.value("style", "") + ", k = " + k_text(g["k"]);
        const double now = (r["ci95"][1].get<double>() - r["ci95"][0].get<double>()) / 2;
        const std::string text = g.value("method", "") + " ±" + format_fixed(now, 1) + " → ±" +
                                 format_fixed(r["half_width_unlimited_seeds"].get<double>(), 1);
        if (lines.empty() || lines.back().first != key) lines.push_back({key, text});
        else lines.back().second += ", " + text;
    }
    return lines;
}

}  // namespace

std::string render_world_markdown(const json& world) {
    if (!world.is_object()) return "";
    std::ostringstream md;
    const auto methods = world.value("methods", std::vector<std::string>{});
    md << "## World scorer (the trained world's element detector)\n\n"
       << "Detector: `" << world["detector"].value("path", "") << "`. Percentages of images, with 95% bootstrap "
       << "intervals over composition sets and seeds (" << world["settings"].value("bootstrap_resamples", 0)
       << " resamples). Recall: share of the set's elements found; success: all found; leakage: images showing a "
          "concept the set does not contain; in-world: images the detector calls a scene of this world.\n\n";
    md << "| style | k | method | images | recall | success | leakage | in-world |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n";
    for (const auto& g : world["groups"]) {
        md << "| " << g.value("style", "") << " | " << k_text(g["k"]) << " | " << g.value("method", "") << " | "
           << g.value("images", 0) << " |";
        for (const char* m : kWorldMetrics) md << " " << with_interval(g[m]) << " |";
        md << "\n";
    }
    if (const auto limits = seed_limit_lines(world); !limits.empty()) {
        md << "\n### What more seeds would do\n\nRecall's 95% half-width as run, and with unlimited seeds per set "
              "(normal approximation from the variance between sets and between seeds; only more sets narrow the "
              "rest):\n\n";
        for (const auto& [key, text] : limits) md << "- " << key << ": " << text << "\n";
    }
    if (!world["win_tie_loss"].empty()) {
        md << "\n### Recall: win / tie / loss against " << (methods.empty() ? "" : methods[0]) << " per set (%)\n\n"
           << "| style | k | method | sets | win / tie / loss |\n| --- | --- | --- | --- | --- |\n";
        for (const auto& w : world["win_tie_loss"])
            md << "| " << w.value("style", "") << " | " << k_text(w["k"]) << " | " << w.value("method", "") << " | "
               << w.value("sets", 0) << " | " << wtl_text(w) << " |\n";
    }
    if (world.contains("plot")) md << "\n![recall against k](" << world.value("plot", "") << ")\n";
    if (world.contains("judge_agreement")) {
        const json& a = world["judge_agreement"];
        auto r = [](const json& v) { return v.is_number() ? format_fixed(v.get<double>(), 3) : std::string("-"); };
        md << "\nThe judge against the detector, over the " << a.value("images", 0) << " images both scored: Pearson "
           << r(a["pearson"]) << ", Spearman " << r(a["spearman"]) << " (composition score against recall).\n";
    }
    for (const auto& t : world.value("typical", json::array()))
        md << "\nTypical set at k = " << t.value("k", 0) << ": `" << t.value("set", "") << "` (mean recall "
           << format_fixed(t.value("recall", 0.0), 1) << "%, the k's mean " << format_fixed(t.value("k_recall", 0.0), 1)
           << "%): [sheet](" << t.value("sheet", "") << ")\n";
    return md.str();
}

std::string render_world_html(const json& world) {
    if (!world.is_object()) return "";
    std::ostringstream h;
    h << "<h2>World scorer</h2>\n<p class=\"muted\">The trained world's element detector (<code>"
      << html_escape(world["detector"].value("path", "")) << "</code>). Percentages of images with 95% bootstrap "
      << "intervals over composition sets and seeds.</p>\n";
    if (world.contains("plot"))
        h << "<img id=\"world-recall\" src=\"" << html_escape(world.value("plot", "")) << "\" alt=\"element recall against k\" width=\"720\">\n";
    h << "<table id=\"world-table\"><tr><th>style</th><th>k</th><th>method</th><th>images</th><th>recall</th>"
         "<th>success</th><th>leakage</th><th>in-world</th></tr>\n";
    for (const auto& g : world["groups"]) {
        h << "<tr><td>" << html_escape(g.value("style", "")) << "</td><td>" << k_text(g["k"]) << "</td><td>"
          << html_escape(g.value("method", "")) << "</td><td>" << g.value("images", 0) << "</td>";
        for (const char* m : kWorldMetrics) h << "<td>" << html_escape(with_interval(g[m])) << "</td>";
        h << "</tr>\n";
    }
    h << "</table>\n";
    if (const auto limits = seed_limit_lines(world); !limits.empty()) {
        h << "<h3>What more seeds would do</h3>\n<p class=\"muted\">Recall's 95% half-width as run, and with unlimited "
             "seeds per set (normal approximation from the variance between sets and between seeds).</p>\n"
             "<ul id=\"world-seed-limit\">\n";
        for (const auto& [key, text] : limits) h << "<li>" << html_escape(key + ": " + text) << "</li>\n";
        h << "</ul>\n";
    }
    h << "<table id=\"world-wtl\"><tr><th>style</th><th>k</th><th>method vs base</th><th>sets</th>"
         "<th>recall win / tie / loss (%)</th></tr>\n";
    for (const auto& w : world["win_tie_loss"])
        h << "<tr><td>" << html_escape(w.value("style", "")) << "</td><td>" << k_text(w["k"]) << "</td><td>"
          << html_escape(w.value("method", "")) << " vs " << html_escape(w.value("against", "")) << "</td><td>"
          << w.value("sets", 0) << "</td><td>" << wtl_text(w) << "</td></tr>\n";
    h << "</table>\n";
    for (const auto& t : world.value("typical", json::array()))
        h << "<figure><img class=\"typical\" src=\"" << html_escape(t.value("sheet", "")) << "\" alt=\"typical set at k="
          << t.value("k", 0) << "\" style=\"max-width:100%\"><figcaption>Typical set at k = " << t.value("k", 0) << ": "
          << html_escape(t.value("set", "")) << " (mean recall " << format_fixed(t.value("recall", 0.0), 1)
          << "%)</figcaption></figure>\n";
    return h.str();
}

}  // namespace multilora::eval
