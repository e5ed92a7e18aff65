#include "multilora/lora/lycoris.h"

#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <numeric>

#include "multilora/util/strings.h"

namespace multilora::lora {
namespace {

int64_t product(const std::vector<int64_t>& v, size_t from = 0) {
    return std::accumulate(v.begin() + static_cast<std::ptrdiff_t>(std::min(from, v.size())), v.end(), int64_t{1},
                           std::multiplies<>());
}

std::vector<int64_t> sizes(const at::Tensor& t) { return t.sizes().vec(); }

std::string shapes(const LoraGroup& g, std::initializer_list<const char*> names) {
    std::string out;
    for (const char* n : names) {
        at::Tensor t = g.factor(n);
        if (t.defined()) out += std::string(out.empty() ? "" : ", ") + n + " " + shape_str(sizes(t));
    }
    return out;
}

bool tucker(const LoraGroup& g) {
    return g.factor("hada_t1").defined() || g.factor("lokr_t2").defined() || g.factor("lora_mid").defined();
}

// LoKr's second Kronecker factor: w2, w2_a·w2_b (a convolution's w2_b carries the kernel), or the Tucker
// rebuild of t2 with w2_a [r, b] and w2_b [r, d].
at::Tensor lokr_w2(const LoraGroup& g) {
    if (g.factor("lokr_w2").defined()) return g.factor("lokr_w2").to(at::kFloat);
    at::Tensor a = g.factor("lokr_w2_a").to(at::kFloat), b = g.factor("lokr_w2_b").to(at::kFloat);
    if (g.factor("lokr_t2").defined()) return at::einsum("ijhw,ip,jr->prhw", {g.factor("lokr_t2").to(at::kFloat), a, b});
    std::vector<int64_t> shape = sizes(b);
    shape[0] = a.size(0);
    return a.mm(b.reshape({b.size(0), -1})).view(shape);
}

at::Tensor lokr_w1(const LoraGroup& g) {
    if (g.factor("lokr_w1").defined()) return g.factor("lokr_w1").to(at::kFloat);
    return g.factor("lokr_w1_a").to(at::kFloat).mm(g.factor("lokr_w1_b").to(at::kFloat));
}

// LyCORIS's make_kron: w1 gets w2's trailing kernel dims as ones, then torch.kron.
at::Tensor make_kron(at::Tensor w1, const at::Tensor& w2) {
    while (w1.dim() < w2.dim()) w1 = w1.unsqueeze(-1);
    return at::kron(w1, w2.contiguous());
}

at::Tensor loha_delta(const LoraGroup& g) {
    auto f = [&](const char* n) { return g.factor(n).to(at::kFloat); };
    if (g.factor("hada_t1").defined()) {
        at::Tensor r1 = at::einsum("ijhw,jr,ip->prhw", {f("hada_t1"), f("hada_w1_b"), f("hada_w1_a")});
        at::Tensor r2 = at::einsum("ijhw,jr,ip->prhw", {f("hada_t2"), f("hada_w2_b"), f("hada_w2_a")});
        return r1 * r2;
    }
    auto flat = [](const at::Tensor& t) { return t.reshape({t.size(0), -1}); };
    return flat(f("hada_w1_a")).mm(flat(f("hada_w1_b"))) * flat(f("hada_w2_a")).mm(flat(f("hada_w2_b")));
}

at::Tensor lora_delta(const LoraGroup& g) {
    at::Tensor up = g.up.to(at::kFloat).reshape({g.up.size(0), -1});
    at::Tensor down = g.down.to(at::kFloat).reshape({g.down.size(0), -1});
    if (!g.factor("lora_mid").defined()) return up.mm(down);
    return at::einsum("ijhw,ip,jr->prhw", {g.factor("lora_mid").to(at::kFloat), up.t(), down});
}

// IA3: W∘w, w broadcast over output rows (or, on_input, over input columns).
at::Tensor ia3_delta(const LoraGroup& g, const at::Tensor& w) {
    std::vector<int64_t> shape(static_cast<size_t>(w.dim()), 1);
    shape[g.on_input ? 1 : 0] = -1;
    return w * g.factor("weight").to(at::kFloat).reshape(shape);
}

// DoRA: m·W'/‖W'‖ − W with W' = W + ΔW; the norm per output row when m has a row per output, else per
// input column (LyCORIS's wd_on_out = false), eps added as LyCORIS and ComfyUI add it.
at::Tensor decompose(const at::Tensor& w, const at::Tensor& delta, const at::Tensor& magnitude) {
    const at::Tensor merged = w + delta;
    const bool on_output = magnitude.size(0) == w.size(0) && magnitude.numel() == w.size(0);
    std::vector<int64_t> shape(static_cast<size_t>(w.dim()), 1);
    at::Tensor norm;
    if (on_output) {
        shape[0] = w.size(0);
        norm = merged.reshape({w.size(0), -1}).norm(2, {1}).view(shape);
    } else {
        shape[1] = w.size(1);
        norm = merged.transpose(0, 1).reshape({w.size(1), -1}).norm(2, {1}).view(shape);
    }
    norm = norm + std::numeric_limits<float>::epsilon();
    return merged * (magnitude.to(at::kFloat).reshape(shape) / norm) - w;
}

std::string dora_problem(const LoraGroup& g, const std::vector<int64_t>& w) {
    if (!g.dora_scale.defined()) return "";
    const auto& m = g.dora_scale;
    if (m.numel() == w[0] && m.size(0) == w[0]) return "";
    if (w.size() >= 2 && m.numel() == w[1] && m.dim() >= 2 && m.size(0) == 1 && m.size(1) == w[1]) return "";
    return "DoRA magnitude " + shape_str(sizes(m)) + " has neither a row per output (" + std::to_string(w[0]) +
           ") nor a column per input";
}

}  // namespace

std::string form_name(const LoraGroup& g) {
    std::string name;
    switch (g.form) {
        case AdapterForm::Lora: name = g.factor("lora_mid").defined() ? "locon-tucker" : "lora"; break;
        case AdapterForm::LoHa: name = tucker(g) ? "loha-tucker" : "loha"; break;
        case AdapterForm::LoKr: name = tucker(g) ? "lokr-tucker" : "lokr"; break;
        case AdapterForm::IA3: name = "ia3"; break;
        case AdapterForm::Full: name = "full"; break;
    }
    return g.dora_scale.defined() ? name + "+dora" : name;
}

bool is_full_rank(const LoraGroup& g) {
    return g.form != AdapterForm::Lora || g.dora_scale.defined() || g.factor("lora_mid").defined();
}

namespace {

// Each factor's rank (number of dimensions) as its role needs it, and no empty dimension: checked before any
// size is read, so that a damaged file is an error and never an out-of-range index.
std::string rank_problem(const LoraGroup& g) {
    const bool tucker_lokr = g.factor("lokr_t2").defined();
    for (const auto& [name, t] : g.factors) {
        std::vector<int64_t> ok;
        if (starts_with(name, "hada_t") || name == "lokr_t2" || name == "lora_mid") ok = {4};
        else if (starts_with(name, "hada_w") || name == "lokr_w1" || name == "lokr_w1_a" || name == "lokr_w1_b" ||
                 name == "lokr_w2_a" || (name == "lokr_w2_b" && tucker_lokr))
            ok = {2};
        else if (name == "lokr_w2" || name == "lokr_w2_b") ok = {2, 4};
        if (!ok.empty() && std::find(ok.begin(), ok.end(), t.dim()) == ok.end())
            return name + " has shape " + shape_str(sizes(t)) + " (" + std::to_string(ok.front()) + "-D expected)";
        if (name != "on_input" && t.numel() == 0) return name + " is empty (shape " + shape_str(sizes(t)) + ")";
    }
    for (const at::Tensor* t : {&g.down, &g.up, &g.dora_scale})
        if (t->defined() && (t->numel() == 0 || t->dim() == 0))
            return "a factor of shape " + shape_str(sizes(*t)) + " (empty or 0-D)";
    return "";
}

}  // namespace

std::string factor_problem(const LoraGroup& g) {
    if (std::string p = rank_problem(g); !p.empty()) return p;
    auto t = [&](const char* n) { return g.factor(n); };
    switch (g.form) {
        case AdapterForm::Lora: {
            at::Tensor mid = t("lora_mid");
            if (mid.defined() && (mid.dim() != 4 || mid.size(0) != g.up.size(1) || mid.size(1) != g.down.size(0)))
                return "Tucker core lora_mid " + shape_str(sizes(mid)) + " does not sit between up " +
                       shape_str(sizes(g.up)) + " and down " + shape_str(sizes(g.down));
            return "";
        }
        case AdapterForm::LoHa: {
            const bool tk = t("hada_t1").defined();
            if (tk != t("hada_t2").defined()) return "only one of the Tucker cores hada_t1, hada_t2";
            for (const char* n : {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"})
                if (t(n).dim() < 2) return std::string(n) + " is not a matrix";
            const auto all = shapes(g, {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2"});
            if (tk) {
                for (int i : {1, 2}) {
                    at::Tensor c = t(i == 1 ? "hada_t1" : "hada_t2"), a = t(i == 1 ? "hada_w1_a" : "hada_w2_a"),
                               b = t(i == 1 ? "hada_w1_b" : "hada_w2_b");
                    if (c.dim() != 4 || a.dim() != 2 || b.dim() != 2 || c.size(0) != a.size(0) || c.size(1) != b.size(0))
                        return "Tucker factors do not fit together: " + all;
                }
                if (t("hada_w1_a").size(1) != t("hada_w2_a").size(1) || t("hada_w1_b").size(1) != t("hada_w2_b").size(1) ||
                    t("hada_t1").sizes().slice(2) != t("hada_t2").sizes().slice(2))
                    return "the two Hadamard factors have different shapes: " + all;
                return "";
            }
            if (t("hada_w1_a").size(1) != t("hada_w1_b").size(0) || t("hada_w2_a").size(1) != t("hada_w2_b").size(0))
                return "ranks differ within a pair: " + all;
            if (t("hada_w1_a").size(0) != t("hada_w2_a").size(0) ||
                t("hada_w1_b").numel() / t("hada_w1_b").size(0) != t("hada_w2_b").numel() / t("hada_w2_b").size(0))
                return "the two Hadamard factors have different shapes: " + all;
            return "";
        }
        case AdapterForm::LoKr: {
            const auto all = shapes(g, {"lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2"});
            if (!t("lokr_w1").defined() && t("lokr_w1_a").size(1) != t("lokr_w1_b").size(0))
                return "lokr_w1_a and lokr_w1_b ranks differ: " + all;
            if (t("lokr_w1").defined() && t("lokr_w1").dim() != 2) return "lokr_w1 is not a matrix: " + all;
            if (t("lokr_w2").defined()) return "";
            if (t("lokr_t2").defined()) {
                at::Tensor c = t("lokr_t2");
                if (c.dim() != 4 || t("lokr_w2_a").dim() != 2 || t("lokr_w2_b").dim() != 2 ||
                    c.size(0) != t("lokr_w2_a").size(0) || c.size(1) != t("lokr_w2_b").size(0))
                    return "Tucker factors do not fit together: " + all;
                return "";
            }
            if (t("lokr_w2_a").dim() != 2 || t("lokr_w2_a").size(1) != t("lokr_w2_b").size(0))
                return "lokr_w2_a and lokr_w2_b ranks differ: " + all;
            return "";
        }
        case AdapterForm::IA3:
        case AdapterForm::Full: return "";
    }
    return "";
}

std::vector<int64_t> delta_shape(const LoraGroup& g) {
    auto t = [&](const char* n) { return g.factor(n); };
    switch (g.form) {
        case AdapterForm::Lora: {
            std::vector<int64_t> s{g.up.size(0), g.down.size(1)};
            if (t("lora_mid").defined()) s.insert(s.end(), {t("lora_mid").size(2), t("lora_mid").size(3)});
            else if (g.down.dim() == 4) s.insert(s.end(), {g.down.size(2), g.down.size(3)});
            return s;
        }
        case AdapterForm::LoHa:
            if (t("hada_t1").defined())
                return {t("hada_w1_a").size(1), t("hada_w1_b").size(1), t("hada_t1").size(2), t("hada_t1").size(3)};
            return {t("hada_w1_a").size(0), t("hada_w1_b").numel() / t("hada_w1_b").size(0)};
        case AdapterForm::LoKr: {
            std::vector<int64_t> w1 = t("lokr_w1").defined() ? sizes(t("lokr_w1"))
                                                             : std::vector<int64_t>{t("lokr_w1_a").size(0), t("lokr_w1_b").size(1)};
            std::vector<int64_t> w2;
            if (t("lokr_w2").defined()) w2 = sizes(t("lokr_w2"));
            else if (t("lokr_t2").defined())
                w2 = {t("lokr_w2_a").size(1), t("lokr_w2_b").size(1), t("lokr_t2").size(2), t("lokr_t2").size(3)};
            else {
                w2 = sizes(t("lokr_w2_b"));
                w2[0] = t("lokr_w2_a").size(0);
            }
            std::vector<int64_t> s{w1[0] * w2[0], w1[1] * (w2.size() > 1 ? w2[1] : 1)};
            s.insert(s.end(), w2.begin() + std::min<std::ptrdiff_t>(2, static_cast<std::ptrdiff_t>(w2.size())), w2.end());
            return s;
        }
        case AdapterForm::IA3: return {};
        case AdapterForm::Full: return sizes(t("diff"));
    }
    return {};
}

std::string fit_problem(const LoraGroup& g, const std::vector<int64_t>& w) {
    if (g.form == AdapterForm::IA3) {
        const int64_t want = w[g.on_input ? 1 : 0];
        if (g.factor("weight").numel() != want)
            return "IA3 scale has " + std::to_string(g.factor("weight").numel()) + " values for " + std::to_string(want) +
                   (g.on_input ? " input" : " output") + " channels";
        return "";
    }
    const std::vector<int64_t> d = delta_shape(g);
    bool ok = !d.empty() && d[0] == w[0] && product(d) == product(w);
    // A 4-D ΔW must match the kernel; a 2-D one fits a Linear, a 1×1 convolution, or LoHa's flattened kernel.
    if (ok && d.size() == 4) ok = d == w;
    if (ok && d.size() == 2 && w.size() == 4 && g.form != AdapterForm::LoHa && g.form != AdapterForm::Full)
        ok = w[2] == 1 && w[3] == 1;
    if (ok && g.form == AdapterForm::Full && g.factor("diff_b").defined()) ok = g.factor("diff_b").numel() == w[0];
    if (!ok) {
        std::string what = g.form == AdapterForm::LoKr ? "the Kronecker product " : "ΔW ";
        return what + shape_str(d) + " does not fit";
    }
    return dora_problem(g, w);
}

at::Tensor form_delta(const LoraGroup& g, const at::Tensor& base) {
    const at::Tensor w = base.to(at::kFloat);
    at::Tensor delta;
    switch (g.form) {
        case AdapterForm::Lora: delta = lora_delta(g); break;
        case AdapterForm::LoHa: delta = loha_delta(g); break;
        case AdapterForm::LoKr: delta = make_kron(lokr_w1(g), lokr_w2(g)); break;
        case AdapterForm::IA3: delta = ia3_delta(g, w); break;
        case AdapterForm::Full: delta = g.factor("diff").to(at::kFloat); break;
    }
    const double s = g.scale();
    delta = (s == 1.0 ? delta : delta * s).reshape(w.sizes());
    if (g.dora_scale.defined()) delta = decompose(w, delta, g.dora_scale);
    return delta;
}

}  // namespace multilora::lora
