#include "multilora/eval/aggregate.h"

#include <algorithm>
#include <map>
#include <set>

using nlohmann::json;

namespace multilora::eval {

namespace {

const char* kDims[2] = {"composition", "image"};

enum Outcome { kWin = 0, kTie = 1, kLoss = 2 };

Outcome outcome(double compare, double base) {
    const double eps = 1e-9;
    if (compare > base + eps) return kWin;
    if (compare < base - eps) return kLoss;
    return kTie;
}

double dim_score(const JudgeScores& s, int dim, int image) { return dim == 0 ? s.composition[image] : s.image[image]; }

json pct(double count, double total) { return total > 0 ? json(100.0 * count / total) : json(nullptr); }
json mean(double sum, double n) { return n > 0 ? json(sum / n) : json(nullptr); }

json wtl(const int counts[3], int total) {
    return json{{"win", pct(counts[kWin], total)},
                {"tie", pct(counts[kTie], total)},
                {"loss", pct(counts[kLoss], total)},
                {"counts", {{"win", counts[kWin]}, {"tie", counts[kTie]}, {"loss", counts[kLoss]}}},
                {"total", total}};
}

json summarize(const std::vector<const JudgedPair*>& ps, const std::string& base, const std::string& compare) {
    struct PerSet {
        double base_sum[2] = {0, 0}, cmp_sum[2] = {0, 0};
        int n = 0;
        int verdict[2][2] = {{-1, -1}, {-1, -1}};  // [0: compare shown first, 1: second][dim]
    };
    std::map<std::string, PerSet> sets;
    std::vector<std::string> set_order;
    double base_sum[2] = {0, 0}, cmp_sum[2] = {0, 0};
    int judge_counts[2][3] = {};
    int pos_counts[2][2][3] = {};  // [0: compare shown first, 1: second][dim][outcome]
    int pos_n[2] = {0, 0};
    int first_pref[2][3] = {};  // [dim][first higher, tie, second higher]
    for (const JudgedPair* p : ps) {
        const int ci = p->compare_first ? 0 : 1, bi = 1 - ci;
        std::string id = p->style + "|" + std::to_string(p->k) + "|" + p->set_key;
        auto [it, fresh] = sets.try_emplace(id);
        if (fresh) set_order.push_back(id);
        PerSet& s = it->second;
        ++s.n;
        const int f = p->compare_first ? 0 : 1;  // index into pos_names
        ++pos_n[f];
        for (int d = 0; d < 2; ++d) {
            double c = dim_score(p->scores, d, ci), b = dim_score(p->scores, d, bi);
            s.base_sum[d] += b;
            s.cmp_sum[d] += c;
            base_sum[d] += b;
            cmp_sum[d] += c;
            Outcome o = outcome(c, b);
            ++judge_counts[d][o];
            ++pos_counts[f][d][o];
            s.verdict[f][d] = o;
            double first = dim_score(p->scores, d, 0), second = dim_score(p->scores, d, 1);
            ++first_pref[d][first > second + 1e-9 ? 0 : first < second - 1e-9 ? 2 : 1];
        }
    }
    const int n_judgements = static_cast<int>(ps.size());
    const int n_sets = static_cast<int>(sets.size());
    int set_counts[2][3] = {};
    int both = 0, consistent[2] = {0, 0};
    for (const auto& id : set_order) {
        const PerSet& s = sets[id];
        for (int d = 0; d < 2; ++d) ++set_counts[d][outcome(s.cmp_sum[d] / s.n, s.base_sum[d] / s.n)];
        if (s.verdict[0][0] >= 0 && s.verdict[1][0] >= 0) {
            ++both;
            for (int d = 0; d < 2; ++d)
                if (s.verdict[0][d] == s.verdict[1][d]) ++consistent[d];
        }
    }
    json g;
    g["base"] = base;
    g["compare"] = compare;
    g["sets"] = n_sets;
    g["judgements"] = n_judgements;
    g["sets_with_both_orders"] = both;
    json m;
    for (int d = 0; d < 2; ++d) {
        m[base][kDims[d]] = mean(base_sum[d], n_judgements);
        m[compare][kDims[d]] = mean(cmp_sum[d], n_judgements);
    }
    g["mean"] = m;
    for (int d = 0; d < 2; ++d) {
        g["win_tie_loss"][kDims[d]] = wtl(set_counts[d], n_sets);
        g["win_tie_loss_per_judgement"][kDims[d]] = wtl(judge_counts[d], n_judgements);
    }
    json pb;
    const char* pos_names[2] = {"compare_shown_first", "compare_shown_second"};
    for (int f = 0; f < 2; ++f) {
        json x;
        x["judgements"] = pos_n[f];
        for (int d = 0; d < 2; ++d) x[kDims[d]] = wtl(pos_counts[f][d], pos_n[f]);
        pb[pos_names[f]] = x;
    }
    for (int d = 0; d < 2; ++d) {
        pb["first_image_preferred"][kDims[d]] = pct(first_pref[d][0], n_judgements);
        pb["second_image_preferred"][kDims[d]] = pct(first_pref[d][2], n_judgements);
        pb["images_tied"][kDims[d]] = pct(first_pref[d][1], n_judgements);
        pb["order_consistency"][kDims[d]] = pct(consistent[d], both);
    }
    pb["order_consistency"]["sets"] = both;
    g["position_bias"] = pb;
    return g;
}

}  // namespace

json aggregate_judgements(const std::vector<JudgedPair>& pairs, const std::string& base,
                          const std::vector<std::string>& compares) {
    std::vector<std::string> styles;
    std::map<std::string, std::set<int>> ks;
    for (const auto& p : pairs) {
        if (std::find(styles.begin(), styles.end(), p.style) == styles.end()) styles.push_back(p.style);
        ks[p.style].insert(p.k);
    }
    struct Scope {
        std::string style;  // "all" = every style
        int k;              // 0 = every k
    };
    std::vector<Scope> scopes;
    for (const auto& st : styles) {
        for (int k : ks[st]) scopes.push_back({st, k});
        scopes.push_back({st, 0});
    }
    if (styles.size() > 1) scopes.push_back({"all", 0});
    auto in_scope = [](const JudgedPair& p, const Scope& sc) {
        return (sc.style == "all" || p.style == sc.style) && (sc.k == 0 || p.k == sc.k);
    };
    json groups = json::array(), method_means = json::array();
    for (const auto& sc : scopes) {
        json kval = sc.k == 0 ? json("all") : json(sc.k);
        for (const auto& cmp : compares) {
            std::vector<const JudgedPair*> ps;
            for (const auto& p : pairs)
                if (p.base == base && p.compare == cmp && in_scope(p, sc)) ps.push_back(&p);
            if (ps.empty()) continue;
            json g = summarize(ps, base, cmp);
            g["style"] = sc.style;
            g["k"] = kval;
            groups.push_back(g);
        }
        // Every method's mean over all its judgements in this scope.
        std::vector<std::string> methods = {base};
        methods.insert(methods.end(), compares.begin(), compares.end());
        for (const auto& method : methods) {
            double sum[2] = {0, 0};
            int n = 0;
            for (const auto& p : pairs) {
                if (!in_scope(p, sc) || p.base != base) continue;
                if (method != base && p.compare != method) continue;
                if (method == base && std::find(compares.begin(), compares.end(), p.compare) == compares.end())
                    continue;
                const int ci = p.compare_first ? 0 : 1;
                const int idx = method == base ? 1 - ci : ci;
                for (int d = 0; d < 2; ++d) sum[d] += dim_score(p.scores, d, idx);
                ++n;
            }
            if (n == 0) continue;
            method_means.push_back({{"style", sc.style},
                                    {"k", kval},
                                    {"method", method},
                                    {"judgements", n},
                                    {"composition", sum[0] / n},
                                    {"image", sum[1] / n}});
        }
    }
    return json{{"groups", groups}, {"method_means", method_means}};
}

}  // namespace multilora::eval
