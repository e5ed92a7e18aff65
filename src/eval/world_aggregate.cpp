// The world scorer's figures: means with bootstrap intervals per (style, k, method), win/tie/loss on recall per
// set, and a typical set per k (world_scorer.h describes them).
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>

#include "multilora/eval/text_util.h"
#include "world_internal.h"

using nlohmann::json;

namespace multilora::eval {

std::pair<double, double> bootstrap_interval(const std::vector<std::vector<double>>& units, int resamples, uint64_t seed) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    if (units.empty() || resamples < 1) return {nan, nan};
    std::mt19937_64 rng(seed);  // rng() % n, not a std:: distribution: those differ between standard libraries
    std::vector<double> means(static_cast<size_t>(resamples));
    for (double& mean : means) {
        double sum = 0;
        size_t count = 0;
        for (size_t draw = 0; draw < units.size(); ++draw) {
            const auto& unit = units[rng() % units.size()];  // a set ...
            for (size_t i = 0; i < unit.size(); ++i) sum += unit[rng() % unit.size()];  // ... and its seeds
            count += unit.size();
        }
        mean = count ? sum / count : nan;
    }
    std::sort(means.begin(), means.end());
    auto percentile = [&](double q) {  // numpy's default (linear) percentile
        const double pos = q * (means.size() - 1);
        const size_t lo = static_cast<size_t>(std::floor(pos));
        const size_t hi = std::min(lo + 1, means.size() - 1);
        return means[lo] + (pos - lo) * (means[hi] - means[lo]);
    };
    return {percentile(0.025), percentile(0.975)};
}

SeedLimit seed_limit(const std::vector<std::vector<double>>& units) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::vector<double> means;
    double within = 0, values = 0;
    int with_two = 0;
    for (const auto& unit : units) {
        if (unit.empty()) continue;
        double m = 0;
        for (double x : unit) m += x / unit.size();
        means.push_back(m);
        values += unit.size();
        if (unit.size() < 2) continue;
        double ss = 0;
        for (double x : unit) ss += (x - m) * (x - m);
        within += ss / (unit.size() - 1);
        ++with_two;
    }
    if (means.size() < 2 || with_two == 0) return {nan, nan};
    const double sets = static_cast<double>(means.size());
    double grand = 0, between = 0;
    for (double m : means) grand += m / sets;
    for (double m : means) between += (m - grand) * (m - grand) / (sets - 1);
    within /= with_two;
    const double component = std::max(0.0, between - within / (values / sets));
    return {1.96 * std::sqrt(between / sets), 1.96 * std::sqrt(component / sets)};
}

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
    const size_t n = std::min(x.size(), y.size());
    if (n < 2) return std::numeric_limits<double>::quiet_NaN();
    double mx = 0, my = 0;
    for (size_t i = 0; i < n; ++i) mx += x[i] / n, my += y[i] / n;
    double sxy = 0, sxx = 0, syy = 0;
    for (size_t i = 0; i < n; ++i) {
        sxy += (x[i] - mx) * (y[i] - my);
        sxx += (x[i] - mx) * (x[i] - mx);
        syy += (y[i] - my) * (y[i] - my);
    }
    if (sxx <= 0 || syy <= 0) return std::numeric_limits<double>::quiet_NaN();
    return sxy / std::sqrt(sxx * syy);
}

namespace {

std::vector<double> ranks(const std::vector<double>& v) {
    std::vector<size_t> order(v.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
    std::vector<double> r(v.size());
    for (size_t i = 0; i < order.size();) {
        size_t j = i;
        while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
        for (size_t t = i; t <= j; ++t) r[order[t]] = (i + j) / 2.0 + 1;  // ties share their mean rank
        i = j + 1;
    }
    return r;
}

}  // namespace

double spearman(const std::vector<double>& x, const std::vector<double>& y) { return pearson(ranks(x), ranks(y)); }

namespace {

struct Metric {
    const char* name;
    double (*value)(const WorldItem&);
};
const Metric kMetrics[] = {
    {"recall", [](const WorldItem& i) { return i.recall; }},
    {"success", [](const WorldItem& i) { return i.success ? 1.0 : 0.0; }},
    {"leakage", [](const WorldItem& i) { return i.leaked > 0 ? 1.0 : 0.0; }},
    {"in_world", [](const WorldItem& i) { return i.in_world ? 1.0 : 0.0; }},
};

json k_label(int k) { return k ? json(k) : json("all"); }

// The scored images, by set and method, and the styles and ks they cover.
struct Index {
    const std::vector<CompositionSet>& sets;
    const WorldScoreOptions& o;
    std::map<std::pair<size_t, std::string>, const WorldItem*> item;
    std::vector<std::string> styles, methods;
    std::vector<int> ks;

    Index(const std::vector<CompositionSet>& s, const std::vector<WorldItem>& items, const WorldScoreOptions& options)
        : sets(s), o(options) {
        for (const auto& it : items) {
            item[{it.set, it.method}] = &it;
            const auto& set = sets[it.set];
            if (std::find(styles.begin(), styles.end(), set.style) == styles.end()) styles.push_back(set.style);
            if (std::find(ks.begin(), ks.end(), set.k) == ks.end()) ks.push_back(set.k);
        }
        std::sort(ks.begin(), ks.end());
        methods.push_back(o.base);
        methods.insert(methods.end(), o.compares.begin(), o.compares.end());
    }
    bool in_scope(size_t set, const std::string& style, int k) const {
        return sets[set].style == style && (k == 0 || sets[set].k == k);
    }
    const WorldItem* find(size_t set, const std::string& method) const {
        auto it = item.find({set, method});
        return it == item.end() ? nullptr : it->second;
    }
};

json group_figures(const Index& x, const std::string& style, int k, const std::string& method) {
    std::vector<const WorldItem*> units;  // one image per composition set drawn with one seed
    std::map<std::string, std::vector<const WorldItem*>> by_set;  // the bootstrap's units: a set, all its seeds
    for (size_t s = 0; s < x.sets.size(); ++s)
        if (x.in_scope(s, style, k))
            if (const WorldItem* it = x.find(s, method)) {
                units.push_back(it);
                by_set[std::to_string(x.sets[s].k) + "/" + x.sets[s].key].push_back(it);
            }
    if (units.empty()) return nullptr;
    json g = {{"style", style}, {"k", k_label(k)}, {"method", method}, {"images", units.size()}};
    double leaked = 0;
    for (const WorldItem* it : units) leaked += it->leaked;
    for (const Metric& m : kMetrics) {
        std::vector<std::vector<double>> values;
        double sum = 0;
        for (const WorldItem* it : units) sum += m.value(*it);
        for (const auto& [key, items] : by_set) {
            values.emplace_back();
            for (const WorldItem* it : items) values.back().push_back(m.value(*it));
        }
        const auto [lo, hi] = bootstrap_interval(values, x.o.bootstrap, x.o.bootstrap_seed);
        json ci = std::isnan(lo) ? json(nullptr) : json::array({100 * lo, 100 * hi});
        g[m.name] = {{"mean", 100 * sum / units.size()}, {"ci95", ci}};
        if (std::string(m.name) == "recall") {
            const SeedLimit limit = seed_limit(values);
            if (!std::isnan(limit.unlimited_seeds)) g[m.name]["half_width_unlimited_seeds"] = 100 * limit.unlimited_seeds;
        }
    }
    g["leaked_per_image"] = leaked / units.size();
    return g;
}

// a against b on recall, per set (seeds pooled where both have an image).
json recall_verdicts(const Index& x, const std::string& style, int k, const std::string& a, const std::string& b) {
    std::map<std::string, std::pair<double, double>> by_key;  // set key -> summed recall of a, of b
    for (size_t s = 0; s < x.sets.size(); ++s) {
        if (!x.in_scope(s, style, k)) continue;
        const WorldItem* ia = x.find(s, a);
        const WorldItem* ib = x.find(s, b);
        if (!ia || !ib) continue;
        auto& acc = by_key[std::to_string(x.sets[s].k) + "/" + x.sets[s].key];
        acc.first += ia->recall;
        acc.second += ib->recall;
    }
    int win = 0, tie = 0, loss = 0;
    for (const auto& [key, acc] : by_key) {
        if (acc.first > acc.second + 1e-9) ++win;
        else if (acc.first < acc.second - 1e-9) ++loss;
        else ++tie;
    }
    const double n = std::max<size_t>(1, by_key.size());
    return {{"style", style}, {"k", k_label(k)}, {"method", a}, {"against", b}, {"sets", by_key.size()},
            {"win", win}, {"tie", tie}, {"loss", loss},
            {"percent", {{"win", 100 * win / n}, {"tie", 100 * tie / n}, {"loss", 100 * loss / n}}}};
}

// The set (with its sheet) whose mean recall over the methods is nearest to the k's mean recall.
json typical_set(const Index& x, const std::string& style, int k) {
    double total = 0;
    size_t count = 0;
    std::vector<std::pair<size_t, double>> candidates;
    for (size_t s = 0; s < x.sets.size(); ++s) {
        if (!x.in_scope(s, style, k)) continue;
        double sum = 0;
        size_t n = 0;
        for (const auto& m : x.methods)
            if (const WorldItem* it = x.find(s, m)) sum += it->recall, ++n;
        total += sum, count += n;
        if (n && !x.sets[s].sheet.empty()) candidates.push_back({s, sum / n});
    }
    if (candidates.empty()) return nullptr;
    const double mean = total / count;
    auto best = std::min_element(candidates.begin(), candidates.end(), [&](const auto& p, const auto& q) {
        return std::abs(p.second - mean) < std::abs(q.second - mean);
    });
    const CompositionSet& s = x.sets[best->first];
    return {{"style", style}, {"k", k}, {"set", s.id()}, {"lora_ids", s.lora_ids},
            {"sheet", relative_path(s.sheet, x.o.eval_dir)}, {"recall", 100 * best->second}, {"k_recall", 100 * mean}};
}

}  // namespace

json aggregate_world(const std::vector<CompositionSet>& sets, const std::vector<WorldItem>& items, const WorldScoreOptions& o) {
    const Index x(sets, items, o);
    std::vector<int> ks = x.ks;
    ks.push_back(0);  // all k
    json groups = json::array(), wtl = json::array(), pairwise = json::array(), typical = json::array();
    for (const auto& style : x.styles)
        for (int k : ks) {
            for (const auto& m : x.methods)
                if (json g = group_figures(x, style, k, m); !g.is_null()) groups.push_back(g);
            auto add = [](json& list, json v) {  // no row for pairs with no common set (K-LoRA beyond k = 2)
                if (v["sets"].get<size_t>() > 0) list.push_back(std::move(v));
            };
            for (size_t b = 1; b < x.methods.size(); ++b) add(wtl, recall_verdicts(x, style, k, x.methods[b], o.base));
            for (size_t a = 0; a < x.methods.size(); ++a)
                for (size_t b = a + 1; b < x.methods.size(); ++b)
                    add(pairwise, recall_verdicts(x, style, k, x.methods[a], x.methods[b]));
            if (k)
                if (json t = typical_set(x, style, k); !t.is_null()) typical.push_back(t);
        }
    json settings = {{"bootstrap_resamples", o.bootstrap}, {"bootstrap_seed", o.bootstrap_seed},
                     {"interval", "95% percentile bootstrap, two levels: sets drawn with replacement, then each drawn set's seeds"},
                     {"win_tie_loss", "recall per set, seeds pooled where both methods have an image"}};
    return {{"settings", settings}, {"methods", x.methods}, {"groups", groups}, {"win_tie_loss", wtl},
            {"pairwise", pairwise}, {"typical", typical}};
}

}  // namespace multilora::eval
