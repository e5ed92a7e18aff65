// Pages the project writes (report.html, the batch gallery), opened in headless Chromium (Debian's `chromium`,
// which scripts/install_deps.sh installs): a wrapper page next to PAGE loads it in an iframe and reports its
// images (and which did not load), its element ids and its visible text; Chromium's log gives every console
// message (errors, uncaught exceptions). File access between the two pages needs --allow-file-access-from-files.
#pragma once

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace multilora::test {

struct PageCheck {
    std::string error;  // non-empty when Chromium is missing or gave no result
    int images = 0;
    std::vector<std::string> broken_images;  // src of images that did not load
    std::vector<std::string> ids;
    std::string text;
    std::vector<std::string> console;  // console messages, as Chromium logged them
};

inline PageCheck check_page(const std::filesystem::path& page) {
    namespace fs = std::filesystem;
    PageCheck r;
    if (std::system("command -v chromium >/dev/null 2>&1") != 0) {
        r.error = "chromium is not installed (scripts/install_deps.sh installs Debian's chromium)";
        return r;
    }
    const fs::path wrapper = page.parent_path() / ".page-check.html", log = page.parent_path() / ".page-check.log";
    std::ofstream(wrapper) << R"(<!DOCTYPE html><html><body><iframe id="f" src=")" << page.filename().string()
                           << R"(" width="1280" height="900"></iframe><script>
document.getElementById('f').addEventListener('load', () => {
  const d = document.getElementById('f').contentDocument;
  const imgs = [...d.images];
  const out = {images: imgs.length, broken: imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src')),
               ids: [...d.querySelectorAll('[id]')].map(e => e.id), text: d.body.innerText};
  const pre = document.createElement('pre'); pre.id = 'page-check'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script></body></html>)";
    const std::string cmd = "timeout 120 chromium --headless=new --no-sandbox --disable-gpu --allow-file-access-from-files "
                            "--enable-logging=stderr --v=0 --virtual-time-budget=10000 --dump-dom 'file://" +
                            fs::absolute(wrapper).string() + "' 2>'" + log.string() + "'";
    std::string dom;
    if (FILE* p = popen(cmd.c_str(), "r")) {
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, p)) > 0) dom.append(buf, n);
        pclose(p);
    }
    std::ifstream in(log);
    for (std::string line; std::getline(in, line);)
        if (line.find(":CONSOLE") != std::string::npos && line.find(".page-check.html") == std::string::npos)
            r.console.push_back(line);
    fs::remove(wrapper);
    fs::remove(log);
    const std::string open = "<pre id=\"page-check\">";
    const size_t a = dom.find(open), b = dom.find("</pre>", a);
    if (a == std::string::npos || b == std::string::npos) {
        r.error = "Chromium gave no page-check result for " + page.string();
        return r;
    }
    std::string text = dom.substr(a + open.size(), b - a - open.size());
    for (const auto& [from, to] : {std::pair<std::string, std::string>{"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&amp;", "&"}})
        for (size_t pos = 0; (pos = text.find(from, pos)) != std::string::npos; pos += to.size()) text.replace(pos, from.size(), to);
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded()) {
        r.error = "unreadable page-check result: " + text.substr(0, 200);
        return r;
    }
    r.images = j.value("images", 0);
    r.broken_images = j.value("broken", std::vector<std::string>{});
    r.ids = j.value("ids", std::vector<std::string>{});
    r.text = j.value("text", "");
    return r;
}

}  // namespace multilora::test
