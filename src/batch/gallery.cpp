#include "multilora/batch/gallery.h"

#include <algorithm>
#include <filesystem>

#include "multilora/io/atomic_file.h"
#include "multilora/util/html.h"

namespace fs = std::filesystem;

namespace multilora::batch {
namespace {

using ojson = nlohmann::ordered_json;

// Relative URLs: each path segment percent-encoded where HTML/URL syntax needs it.
std::string url_path(const std::string& rel) {
    std::string out;
    for (unsigned char c : rel) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' || c == '_' ||
            c == '-' || c == '.' || c == '~')
            out += static_cast<char>(c);
        else {
            char buf[4];
            std::snprintf(buf, sizeof buf, "%%%02X", c);
            out += buf;
        }
    }
    return out;
}

bool safe_url(const std::string& u) { return u.rfind("https://", 0) == 0 || u.rfind("http://", 0) == 0; }

const char* kStyle = R"(body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.2em;margin-top:2em}h3{font-size:1.05em;margin:1.5em 0 .4em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:6px;vertical-align:top;text-align:left}
th{background:#f3f3f3}.prompt{max-width:26em;font-size:.85em}.loras{font-size:.85em;max-width:22em}
.loras ul{margin:0;padding-left:1.1em}.trig{color:#555}img{width:192px;image-rendering:auto;display:block}
.pending{display:block;width:192px;height:60px;line-height:60px;text-align:center;background:#eee;color:#888}
figure{margin:0 0 4px 0}figcaption{font-size:.75em;color:#555}.id{font-family:monospace}
)";

}  // namespace

std::string gallery_plan_path(const BatchConfig& c) { return (fs::path(c.out) / c.style / "plan.json").string(); }

ojson gallery_plan(const BatchConfig& c, const BatchPlan& plan) {
    ojson j;
    j["style"] = c.style;
    j["prompt"] = c.prompt;
    j["negative_prompt"] = c.negative_prompt;
    j["methods"] = c.methods;
    j["seeds"] = c.seeds;
    j["ks"] = c.ks;
    ojson sets = ojson::array();
    for (const auto& s : plan.sets) {
        ojson set;
        set["k"] = s.k;
        set["set_index"] = s.set_index;
        set["prompt"] = s.prompt;
        ojson loras = ojson::array();
        for (const LoraEntry* e : s.loras)
            loras.push_back({{"id", e->id}, {"name", e->name}, {"category", e->category}, {"trigger", e->trigger}, {"url", e->url}});
        set["loras"] = loras;
        set["sheet"] = fs::path(s.sheet_path).lexically_relative(c.out).string();
        ojson images = ojson::array();
        for (size_t i : s.images) {
            const PlanImage& im = plan.images[i];
            images.push_back({{"method", im.method}, {"seed", im.seed}, {"png", im.rel_png}, {"manifest", im.rel_manifest}});
        }
        set["images"] = images;
        sets.push_back(set);
    }
    j["sets"] = sets;
    return j;
}

std::string render_gallery(const std::string& out_dir) {
    std::vector<ojson> styles;
    std::error_code ec;
    std::vector<fs::path> plans;
    if (fs::is_directory(out_dir, ec))
        for (const auto& entry : fs::directory_iterator(out_dir, ec))
            if (entry.is_directory() && fs::is_regular_file(entry.path() / "plan.json")) plans.push_back(entry.path() / "plan.json");
    std::sort(plans.begin(), plans.end());
    for (const auto& p : plans) {
        try {
            styles.push_back(ojson::parse(io::read_file(p.string())));
        } catch (const std::exception&) {
            // A plan being replaced right now, or damaged: leave its style out of this rendering.
        }
    }
    auto present = [&](const std::string& rel) {
        std::error_code e;
        return fs::is_regular_file(fs::path(out_dir) / rel, e);
    };

    std::string h;
    h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>multilora batch gallery</title>\n<style>\n";
    h += kStyle;
    h += "</style>\n</head>\n<body>\n<h1>multilora batch gallery</h1>\n";
    if (styles.empty()) h += "<p>No batch plans found.</p>\n";
    for (const auto& st : styles) {
        const std::string style = st.value("style", "");
        size_t total = 0, done = 0;
        for (const auto& s : st["sets"])
            for (const auto& im : s["images"]) {
                ++total;
                if (present(im["png"].get<std::string>()) && present(im["manifest"].get<std::string>())) ++done;
            }
        h += "<h2>" + html_escape(style) + "</h2>\n";
        h += "<p>" + std::to_string(st["sets"].size()) + " sets, " + std::to_string(done) + " of " + std::to_string(total) +
             " images finished. Negative prompt: <span class=\"prompt\">" +
             html_escape(st.value("negative_prompt", "")) + "</span></p>\n";
        const auto methods = st["methods"].get<std::vector<std::string>>();
        const bool many_seeds = st["seeds"].size() > 1;
        int current_k = -1;
        bool open = false;
        for (const auto& s : st["sets"]) {
            const int k = s["k"].get<int>();
            if (k != current_k) {
                if (open) h += "</table>\n";
                current_k = k;
                h += "<h3 id=\"" + html_escape(style) + "-k" + std::to_string(k) + "\">" + std::to_string(k) +
                     " elements</h3>\n<table>\n<tr><th>set</th><th>prompt</th><th>LoRAs</th>";
                for (const auto& m : methods) h += "<th>" + html_escape(m) + "</th>";
                h += "</tr>\n";
                open = true;
            }
            h += "<tr><td>#" + std::to_string(s["set_index"].get<int>());
            const std::string sheet = s["sheet"].get<std::string>();
            if (present(sheet)) h += "<br><a href=\"" + url_path(sheet) + "\">sheet</a>";
            h += "</td><td class=\"prompt\">" + html_escape(s["prompt"].get<std::string>()) + "</td><td class=\"loras\"><ul>";
            for (const auto& l : s["loras"]) {
                std::string name = html_escape(l["name"].get<std::string>());
                const std::string url = l.value("url", "");
                if (safe_url(url)) name = "<a href=\"" + html_escape(url) + "\">" + name + "</a>";
                std::string triggers;
                for (const auto& t : l["trigger"]) triggers += (triggers.empty() ? "" : ", ") + t.get<std::string>();
                h += "<li>" + name + " <span class=\"id\">" + html_escape(l["id"].get<std::string>()) +
                     "</span><br><span class=\"trig\">" + html_escape(triggers) + "</span></li>";
            }
            h += "</ul></td>";
            for (const auto& m : methods) {
                h += "<td>";
                for (const auto& im : s["images"]) {
                    if (im["method"].get<std::string>() != m) continue;
                    const std::string png = im["png"].get<std::string>(), manifest = im["manifest"].get<std::string>();
                    const std::string caption = many_seeds ? "seed " + std::to_string(im["seed"].get<uint64_t>()) : "";
                    h += "<figure>";
                    if (present(png) && present(manifest))
                        h += "<a href=\"" + url_path(manifest) + "\"><img src=\"" + url_path(png) + "\" alt=\"" +
                             html_escape(m) + "\" loading=\"lazy\"></a>";
                    else h += "<span class=\"pending\">pending</span>";
                    if (!caption.empty()) h += "<figcaption>" + html_escape(caption) + "</figcaption>";
                    h += "</figure>";
                }
                h += "</td>";
            }
            h += "</tr>\n";
        }
        if (open) h += "</table>\n";
    }
    h += "</body>\n</html>\n";
    return h;
}

}  // namespace multilora::batch
