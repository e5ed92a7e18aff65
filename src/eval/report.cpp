#include "multilora/eval/report.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "multilora/eval/text_util.h"
#include "multilora/util/html.h"

using nlohmann::json;

namespace multilora::eval {

namespace {

const char* kDims[2] = {"composition", "image"};
const char* kDimTitles[2] = {"Composition quality", "Image quality"};
const char* kPalette[] = {"#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f"};
const char* kWin = "#59a14f";
const char* kTie = "#bab0ac";
const char* kLoss = "#e15759";

std::string num(const json& v, int decimals) {
    if (!v.is_number()) return "-";
    return format_fixed(v.get<double>(), decimals);
}

std::string k_label(const json& k) { return k.is_string() ? "all" : "k=" + std::to_string(k.get<int>()); }

std::vector<std::string> styles_of(const json& summary) {
    std::vector<std::string> out;
    auto add = [&](const json& arr) {
        if (!arr.is_array()) return;
        for (const auto& g : arr) {
            std::string s = g.value("style", "");
            if (!s.empty() && std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
        }
    };
    add(summary.value("groups", json::array()));
    if (summary.contains("clipscore") && summary["clipscore"].is_object())
        add(summary["clipscore"].value("groups", json::array()));
    // "all" last
    auto it = std::find(out.begin(), out.end(), "all");
    if (it != out.end()) {
        out.erase(it);
        out.push_back("all");
    }
    return out;
}

// The k values (ints ascending, then "all") present for a style in an array of rows.
std::vector<json> ks_of(const json& rows, const std::string& style) {
    std::set<int> ints;
    bool all = false;
    if (rows.is_array())
        for (const auto& r : rows) {
            if (r.value("style", "") != style) continue;
            if (r["k"].is_number_integer()) ints.insert(r["k"].get<int>());
            else all = true;
        }
    std::vector<json> out(ints.begin(), ints.end());
    if (all) out.push_back("all");
    return out;
}

const json* find_row(const json& rows, const std::string& style, const json& k, const char* field,
                     const std::string& value) {
    if (!rows.is_array()) return nullptr;
    for (const auto& r : rows)
        if (r.value("style", "") == style && r["k"] == k && r.value(field, "") == value) return &r;
    return nullptr;
}

std::string wtl_cell(const json* g, const char* dim) {
    if (!g) return "-";
    const json& w = (*g)["win_tie_loss"][dim];
    return num(w["win"], 1) + " / " + num(w["tie"], 1) + " / " + num(w["loss"], 1);
}

std::vector<std::string> methods_of(const json& summary) {
    std::vector<std::string> m;
    if (summary.contains("base") && summary["base"].is_string()) m.push_back(summary["base"]);
    if (summary.contains("compare") && summary["compare"].is_array())
        for (const auto& c : summary["compare"]) m.push_back(c.get<std::string>());
    return m;
}

// ---- SVG ----

struct Series {
    std::string name;
    std::vector<double> values;  // NaN = absent
};

std::string svg_grouped_bars(const std::string& title, const std::vector<std::string>& categories,
                             const std::vector<Series>& series, double ymax, const std::string& unit) {
    const int width =
        std::max(380, 120 + static_cast<int>(categories.size()) * (24 * static_cast<int>(series.size()) + 30));
    const int height = 260, top = 34, bottom = 40, left = 46;
    const double plot_h = height - top - bottom;
    std::ostringstream s;
    s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"sans-serif\" role=\"img\" aria-label=\"" << html_escape(title) << "\">";
    s << "<text x=\"" << left << "\" y=\"18\" font-size=\"14\" font-weight=\"bold\">" << html_escape(title)
      << "</text>";
    for (int t = 0; t <= 5; ++t) {
        double v = ymax * t / 5.0;
        double y = top + plot_h - plot_h * t / 5.0;
        s << "<line x1=\"" << left << "\" x2=\"" << width - 10 << "\" y1=\"" << y << "\" y2=\"" << y
          << "\" stroke=\"#ddd\"/><text x=\"" << left - 6 << "\" y=\"" << y + 4
          << "\" font-size=\"10\" text-anchor=\"end\">" << format_fixed(v, ymax >= 20 ? 0 : 1) << "</text>";
    }
    double x = left + 14;
    for (size_t c = 0; c < categories.size(); ++c) {
        double group_x = x;
        for (size_t i = 0; i < series.size(); ++i) {
            double v = c < series[i].values.size() ? series[i].values[c] : NAN;
            if (!std::isnan(v)) {
                double h = plot_h * std::clamp(v / ymax, 0.0, 1.0);
                s << "<rect x=\"" << x << "\" y=\"" << top + plot_h - h << "\" width=\"20\" height=\"" << h
                  << "\" fill=\"" << kPalette[i % 8] << "\"><title>" << html_escape(series[i].name) << ", "
                  << html_escape(categories[c]) << ": " << format_fixed(v, 2) << unit << "</title></rect>";
                s << "<text x=\"" << x + 10 << "\" y=\"" << top + plot_h - h - 3
                  << "\" font-size=\"9\" text-anchor=\"middle\">" << format_fixed(v, v >= 20 ? 1 : 2) << "</text>";
            }
            x += 24;
        }
        s << "<text x=\"" << (group_x + x - 4) / 2 << "\" y=\"" << top + plot_h + 16
          << "\" font-size=\"11\" text-anchor=\"middle\">" << html_escape(categories[c]) << "</text>";
        x += 30;
    }
    // legend
    double lx = left;
    for (size_t i = 0; i < series.size(); ++i) {
        s << "<rect x=\"" << lx << "\" y=\"" << height - 14 << "\" width=\"10\" height=\"10\" fill=\""
          << kPalette[i % 8] << "\"/><text x=\"" << lx + 14 << "\" y=\"" << height - 5 << "\" font-size=\"11\">"
          << html_escape(series[i].name) << "</text>";
        lx += 24 + 7.0 * static_cast<double>(series[i].name.size());
    }
    s << "</svg>";
    return s.str();
}

struct StackRow {
    std::string label;
    double win, tie, loss;  // percentages
    int sets;
};

std::string svg_wtl_stacks(const std::string& title, const std::vector<StackRow>& rows) {
    const int bar_w = 360, left = 170, row_h = 24, top = 30;
    const int height = top + static_cast<int>(rows.size()) * row_h + 30;
    const int width = left + bar_w + 70;
    std::ostringstream s;
    s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"sans-serif\" role=\"img\" aria-label=\"" << html_escape(title) << "\">";
    s << "<text x=\"4\" y=\"18\" font-size=\"14\" font-weight=\"bold\">" << html_escape(title) << "</text>";
    for (size_t r = 0; r < rows.size(); ++r) {
        const StackRow& row = rows[r];
        double y = top + static_cast<double>(r) * row_h;
        s << "<text x=\"" << left - 6 << "\" y=\"" << y + 15 << "\" font-size=\"11\" text-anchor=\"end\">"
          << html_escape(row.label) << "</text>";
        double x = left;
        const std::pair<double, const char*> parts[3] = {{row.win, kWin}, {row.tie, kTie}, {row.loss, kLoss}};
        const char* names[3] = {"win", "tie", "loss"};
        for (int p = 0; p < 3; ++p) {
            double w = bar_w * std::clamp(parts[p].first / 100.0, 0.0, 1.0);
            if (w <= 0) continue;
            s << "<rect x=\"" << x << "\" y=\"" << y + 3 << "\" width=\"" << w << "\" height=\"" << row_h - 6
              << "\" fill=\"" << parts[p].second << "\"><title>" << html_escape(row.label) << " " << names[p] << ": "
              << format_fixed(parts[p].first, 1) << "%</title></rect>";
            if (w > 28)
                s << "<text x=\"" << x + w / 2 << "\" y=\"" << y + 16
                  << "\" font-size=\"10\" fill=\"#fff\" text-anchor=\"middle\">" << format_fixed(parts[p].first, 0)
                  << "%</text>";
            x += w;
        }
        s << "<text x=\"" << left + bar_w + 6 << "\" y=\"" << y + 15 << "\" font-size=\"10\">n=" << row.sets
          << "</text>";
    }
    double ly = top + static_cast<double>(rows.size()) * row_h + 12;
    const std::pair<const char*, const char*> legend[3] = {{"win", kWin}, {"tie", kTie}, {"loss", kLoss}};
    for (int i = 0; i < 3; ++i)
        s << "<rect x=\"" << left + i * 60 << "\" y=\"" << ly << "\" width=\"10\" height=\"10\" fill=\""
          << legend[i].second << "\"/><text x=\"" << left + i * 60 + 14 << "\" y=\"" << ly + 9
          << "\" font-size=\"11\">" << legend[i].first << "</text>";
    s << "</svg>";
    return s.str();
}

std::string judge_line(const json& summary) {
    const json& j = summary.value("judge", json::object());
    std::ostringstream s;
    if (j.value("enabled", false)) {
        s << "Judge: " << j.value("model", "?") << " at " << j.value("api_base", "?") << " (temperature "
          << num(j.value("temperature", json()), 2) << ", max tokens " << j.value("max_tokens", 0) << ", prompt "
          << j.value("prompt_template", "built-in") << ").";
    } else if (summary.value("judgements", json::object()).value("ok", 0) == 0) {
        return "Judge: not run.";
    } else {
        s << "Judge: " << j.value("model", "?") << " (no requests sent in this run; earlier judgements only).";
    }
    const json& c = summary.value("judgements", json::object());
    if (c.is_object() && !c.empty())
        s << " Judgements: " << c.value("ok", 0) << " valid of " << c.value("requested", 0) << " requested ("
          << c.value("failed", 0) << " failed, " << c.value("missing", 0) << " not judged).";
    return s.str();
}

}  // namespace

std::string render_summary_markdown(const json& summary) {
    std::ostringstream md;
    const std::string base = summary.value("base", "");
    md << "# multilora evaluation of `" << summary.value("run", "") << "`\n\n";
    md << judge_line(summary) << " Base method: **" << base << "**.\n\n";
    const json& groups = summary.value("groups", json::array());
    if (!groups.empty())
        md << "Win / tie / loss: percentages of composition sets where the method's score, averaged over both "
              "presentation orders, is higher than / equal to / lower than the base's. Mean scores are out of 10, "
              "averaged over every judgement.\n\n";
    const json& means = summary.value("method_means", json::array());
    const std::vector<std::string> methods = methods_of(summary);
    for (const auto& style : styles_of(summary)) {
        md << "## " << (style == "all" ? std::string("All styles") : style) << "\n\n";
        std::vector<json> ks = ks_of(groups, style);
        if (!ks.empty()) {
            for (int d = 0; d < 2; ++d) {
                md << "### " << kDimTitles[d] << ": win / tie / loss against " << base << " (%)\n\n";
                md << "| method |";
                for (const auto& k : ks) md << " " << k_label(k) << " |";
                md << "\n| --- |";
                for (size_t i = 0; i < ks.size(); ++i) md << " --- |";
                md << "\n";
                for (size_t m = 1; m < methods.size(); ++m) {
                    md << "| " << methods[m] << " vs " << base << " |";
                    for (const auto& k : ks) md << " " << wtl_cell(find_row(groups, style, k, "compare", methods[m]), kDims[d]) << " |";
                    md << "\n";
                }
                md << "\n";
            }
            md << "### Mean scores (composition / image, out of 10)\n\n| method |";
            for (const auto& k : ks) md << " " << k_label(k) << " |";
            md << "\n| --- |";
            for (size_t i = 0; i < ks.size(); ++i) md << " --- |";
            md << "\n";
            for (const auto& m : methods) {
                md << "| " << m << " |";
                for (const auto& k : ks) {
                    const json* r = find_row(means, style, k, "method", m);
                    md << " " << (r ? num((*r)["composition"], 2) + " / " + num((*r)["image"], 2) : "-") << " |";
                }
                md << "\n";
            }
            md << "\n### Position bias\n\n";
            md << "| comparison | k | judgements | win % shown first (comp. / image) | win % shown second (comp. / "
                  "image) | first image preferred % | order-consistent sets % |\n";
            md << "| --- | --- | --- | --- | --- | --- | --- |\n";
            for (size_t m = 1; m < methods.size(); ++m)
                for (const auto& k : ks) {
                    const json* g = find_row(groups, style, k, "compare", methods[m]);
                    if (!g) continue;
                    const json& pb = (*g)["position_bias"];
                    md << "| " << methods[m] << " vs " << base << " | " << k_label(k) << " | " << (*g)["judgements"]
                       << " | " << num(pb["compare_shown_first"]["composition"]["win"], 1) << " / "
                       << num(pb["compare_shown_first"]["image"]["win"], 1) << " | "
                       << num(pb["compare_shown_second"]["composition"]["win"], 1) << " / "
                       << num(pb["compare_shown_second"]["image"]["win"], 1) << " | "
                       << num(pb["first_image_preferred"]["composition"], 1) << " / "
                       << num(pb["first_image_preferred"]["image"], 1) << " | "
                       << num(pb["order_consistency"]["composition"], 1) << " / "
                       << num(pb["order_consistency"]["image"], 1) << " (of " << pb["order_consistency"]["sets"]
                       << ") |\n";
                }
            md << "\n";
        }
        if (summary.contains("clipscore") && summary["clipscore"].is_object()) {
            const json& cg = summary["clipscore"].value("groups", json::array());
            std::vector<json> cks = ks_of(cg, style);
            if (!cks.empty()) {
                md << "### CLIPScore (mean, 0-100)\n\n| method |";
                for (const auto& k : cks) md << " " << k_label(k) << " |";
                md << "\n| --- |";
                for (size_t i = 0; i < cks.size(); ++i) md << " --- |";
                md << "\n";
                for (const auto& m : methods) {
                    md << "| " << m << " |";
                    for (const auto& k : cks) {
                        const json* r = find_row(cg, style, k, "method", m);
                        md << " " << (r ? num((*r)["mean"], 2) : "-") << " |";
                    }
                    md << "\n";
                }
                md << "\n";
            }
        }
    }
    if (summary.contains("clipscore") && summary["clipscore"].is_object())
        md << "CLIPScore: 100 · max(cos, 0) with `" << summary["clipscore"].value("model", "") << "`, text: "
           << summary["clipscore"].value("text", "") << ".\n";
    if (summary.contains("world")) md << "\n" << render_world_markdown(summary["world"]);
    return md.str();
}

namespace {

// What every part of the HTML report reads.
struct ReportView {
    const json& summary;
    std::string base;
    const json& groups;
    const json& means;
    std::vector<std::string> methods;
    explicit ReportView(const json& s)
        : summary(s),
          base(s.value("base", "")),
          groups(s.contains("groups") ? s["groups"] : empty_array()),
          means(s.contains("method_means") ? s["method_means"] : empty_array()),
          methods(methods_of(s)) {}
    static const json& empty_array() {
        static const json a = json::array();
        return a;
    }
    bool has_clipscore() const { return summary.contains("clipscore") && summary["clipscore"].is_object(); }
};

void html_head(std::ostringstream& h, const ReportView& v) {
    h << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>multilora evaluation</title>"
         "<style>body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;"
         "margin:8px 0 20px}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;text-align:left}"
         "th{background:#f3f3f3}.charts{display:flex;flex-wrap:wrap;gap:24px}.muted{color:#777}"
         "h2{border-bottom:1px solid #ddd;padding-bottom:4px}</style></head><body>\n";
    h << "<h1>multilora evaluation</h1>\n<p>Run: <code>" << html_escape(v.summary.value("run", "")) << "</code></p>\n";
    h << "<p>" << html_escape(judge_line(v.summary)) << " Base method: <b>" << html_escape(v.base) << "</b>.</p>\n";
    if (!v.groups.empty())
        h << "<p class=\"muted\">Win / tie / loss: share of composition sets where the method's score, averaged "
             "over both presentation orders, is higher than / equal to / lower than the base's. Scores are out of "
             "10.</p>\n";
}

// Mean scores by k (bars) and win / tie / loss against the base (stacks), for both dimensions.
void judge_charts(std::ostringstream& h, const ReportView& v, const std::string& style, const std::vector<json>& ks) {
    std::vector<std::string> cats;
    for (const auto& k : ks) cats.push_back(k_label(k));
    h << "<div class=\"charts\">";
    for (int d = 0; d < 2; ++d) {
        std::vector<Series> series;
        for (const auto& m : v.methods) {
            Series sr{m, {}};
            for (const auto& k : ks) {
                const json* r = find_row(v.means, style, k, "method", m);
                sr.values.push_back(r && (*r)[kDims[d]].is_number() ? (*r)[kDims[d]].get<double>() : NAN);
            }
            series.push_back(sr);
        }
        h << svg_grouped_bars(std::string(kDimTitles[d]) + ": mean score by k", cats, series, 10.0, "/10");
    }
    h << "</div>\n<div class=\"charts\">";
    for (int d = 0; d < 2; ++d) {
        std::vector<StackRow> rows;
        for (size_t m = 1; m < v.methods.size(); ++m)
            for (const auto& k : ks) {
                const json* g = find_row(v.groups, style, k, "compare", v.methods[m]);
                if (!g) continue;
                const json& w = (*g)["win_tie_loss"][kDims[d]];
                auto val = [](const json& x) { return x.is_number() ? x.get<double>() : 0.0; };
                rows.push_back({v.methods[m] + " vs " + v.base + ", " + k_label(k), val(w["win"]), val(w["tie"]),
                                val(w["loss"]), (*g)["sets"].get<int>()});
            }
        h << svg_wtl_stacks(std::string(kDimTitles[d]) + ": win / tie / loss", rows);
    }
    h << "</div>\n";
}

void wtl_tables(std::ostringstream& h, const ReportView& v, const std::string& style, const std::vector<json>& ks) {
    for (int d = 0; d < 2; ++d) {
        h << "<h3>" << kDimTitles[d] << ": win / tie / loss against " << html_escape(v.base)
          << " (%)</h3><table><tr><th>method</th>";
        for (const auto& k : ks) h << "<th>" << k_label(k) << "</th>";
        h << "</tr>";
        for (size_t m = 1; m < v.methods.size(); ++m) {
            h << "<tr><td>" << html_escape(v.methods[m]) << " vs " << html_escape(v.base) << "</td>";
            for (const auto& k : ks)
                h << "<td>" << wtl_cell(find_row(v.groups, style, k, "compare", v.methods[m]), kDims[d]) << "</td>";
            h << "</tr>";
        }
        h << "</table>\n";
    }
}

void position_bias_table(std::ostringstream& h, const ReportView& v, const std::string& style, const std::vector<json>& ks) {
    h << "<h3>Position bias</h3><table><tr><th>comparison</th><th>k</th><th>judgements</th><th>win % shown "
         "first (comp. / image)</th><th>win % shown second</th><th>first image preferred %</th><th>order-"
         "consistent sets %</th></tr>";
    for (size_t m = 1; m < v.methods.size(); ++m)
        for (const auto& k : ks) {
            const json* g = find_row(v.groups, style, k, "compare", v.methods[m]);
            if (!g) continue;
            const json& pb = (*g)["position_bias"];
            h << "<tr><td>" << html_escape(v.methods[m]) << " vs " << html_escape(v.base) << "</td><td>" << k_label(k)
              << "</td><td>" << (*g)["judgements"] << "</td><td>" << num(pb["compare_shown_first"]["composition"]["win"], 1)
              << " / " << num(pb["compare_shown_first"]["image"]["win"], 1) << "</td><td>"
              << num(pb["compare_shown_second"]["composition"]["win"], 1) << " / "
              << num(pb["compare_shown_second"]["image"]["win"], 1) << "</td><td>"
              << num(pb["first_image_preferred"]["composition"], 1) << " / "
              << num(pb["first_image_preferred"]["image"], 1) << "</td><td>"
              << num(pb["order_consistency"]["composition"], 1) << " / " << num(pb["order_consistency"]["image"], 1)
              << " (of " << pb["order_consistency"]["sets"] << ")</td></tr>";
        }
    h << "</table>\n";
}

void clipscore_chart(std::ostringstream& h, const ReportView& v, const std::string& style) {
    const json& cg = v.summary["clipscore"].value("groups", json::array());
    std::vector<json> cks = ks_of(cg, style);
    if (cks.empty()) return;
    std::vector<std::string> cats;
    for (const auto& k : cks) cats.push_back(k_label(k));
    std::vector<Series> series;
    double top = 0;
    for (const auto& m : v.methods) {
        Series sr{m, {}};
        for (const auto& k : cks) {
            const json* r = find_row(cg, style, k, "method", m);
            double x = r && (*r)["mean"].is_number() ? (*r)["mean"].get<double>() : NAN;
            if (!std::isnan(x)) top = std::max(top, x);
            sr.values.push_back(x);
        }
        series.push_back(sr);
    }
    double ymax = std::max(10.0, std::ceil(top / 10.0) * 10.0);
    h << "<div class=\"charts\">" << svg_grouped_bars("CLIPScore by k", cats, series, ymax, "") << "</div>\n";
}

void style_section(std::ostringstream& h, const ReportView& v, const std::string& style) {
    h << "<h2>" << html_escape(style == "all" ? std::string("All styles") : style) << "</h2>\n";
    std::vector<json> ks = ks_of(v.groups, style);
    if (!ks.empty()) {
        judge_charts(h, v, style, ks);
        wtl_tables(h, v, style, ks);
        position_bias_table(h, v, style, ks);
    }
    if (v.has_clipscore()) clipscore_chart(h, v, style);
}

// One composition set: its elements, links to its sheet and images, the judge's means and verdicts per
// comparison, and its CLIPScores.
void set_row(std::ostringstream& h, const ReportView& v, const json& s, bool clip) {
    h << "<tr><td>" << html_escape(s.value("style", "")) << "</td><td>" << s.value("k", 0) << "</td><td>";
    bool first = true;
    const json elements = s.value("elements", json::array());
    for (const auto& e : elements) {
        if (!first) h << "<br>";
        first = false;
        h << html_escape(e.value("category", "")) << ": " << html_escape(e.value("name", ""));
    }
    h << "</td><td>";
    if (s.contains("sheet") && s["sheet"].is_string())
        h << "<a href=\"" << html_escape(s["sheet"].get<std::string>()) << "\">sheet</a><br>";
    const json images = s.value("images", json::object());
    for (const auto& [m, path] : images.items())
        h << "<a href=\"" << html_escape(path.get<std::string>()) << "\">" << html_escape(m) << "</a> ";
    h << "</td>";
    const json& judge = s.value("judge", json::object());
    for (size_t m = 1; m < v.methods.size(); ++m) {
        h << "<td>";
        if (judge.contains(v.methods[m])) {
            const json& j = judge[v.methods[m]];
            const json& mb = j["mean"][v.base];
            const json& mc = j["mean"][v.methods[m]];
            h << html_escape(v.base) << " " << num(mb["composition"], 1) << " / " << num(mb["image"], 1) << "<br>"
              << html_escape(v.methods[m]) << " " << num(mc["composition"], 1) << " / " << num(mc["image"], 1)
              << "<br><span class=\"muted\">" << j["verdict"].value("composition", "") << " / "
              << j["verdict"].value("image", "") << " (" << j.value("orders", 0) << " orders)</span>";
        } else {
            h << "<span class=\"muted\">-</span>";
        }
        h << "</td>";
    }
    if (clip) {
        h << "<td>";
        const json clip_scores = s.value("clipscore", json::object());
        for (const auto& [m, x] : clip_scores.items()) h << html_escape(m) << " " << num(x, 2) << "<br>";
        h << "</td>";
    }
    h << "</tr>\n";
}

void sets_table(std::ostringstream& h, const ReportView& v) {
    const json& sets = v.summary.value("sets", json::array());
    if (sets.empty()) return;
    h << "<h2>Composition sets</h2><table><tr><th>style</th><th>k</th><th>elements</th><th>sheet</th>";
    for (size_t m = 1; m < v.methods.size(); ++m)
        h << "<th>" << html_escape(v.methods[m]) << " vs " << html_escape(v.base) << "<br><span class=\"muted\">"
          << "comp. / image</span></th>";
    const bool clip = v.has_clipscore();
    if (clip) h << "<th>CLIPScore</th>";
    h << "</tr>\n";
    for (const auto& s : sets) set_row(h, v, s, clip);
    h << "</table>\n";
}

}  // namespace

std::string render_report_html(const json& summary) {
    std::ostringstream h;
    const ReportView view(summary);
    html_head(h, view);
    for (const auto& style : styles_of(summary)) style_section(h, view, style);
    if (summary.contains("world")) h << render_world_html(summary["world"]);
    sets_table(h, view);
    h << "<p class=\"muted\">Written by multilora evaluate. Figures: summary.json; every request and answer: "
         "judgements.jsonl.</p></body></html>\n";
    return h.str();
}

}  // namespace multilora::eval
