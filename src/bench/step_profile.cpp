#include "multilora/bench/step_profile.h"

#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <c10/util/accumulate.h>

#include <algorithm>
#include <map>

namespace multilora::bench {

namespace prof = torch::autograd::profiler;

namespace {

// One of an int list argument's two values (a one-element list stands for both, as at::conv2d reads it).
int64_t pair_value(const c10::IValue& list, size_t i) {
    const std::vector<int64_t> v = list.toIntVector();
    return v.size() > i ? v[i] : v.at(0);
}

// 2 * N * out * out_h * out_w * in/groups * kh * kw, from the arguments the profiler saved. libtorch 1.13's own
// count refuses one-element padding lists (the default of at::conv2d) and warns; this one reads them.
double conv2d_flops(const prof::LegacyEvent& e) {
    const auto& args = e.extraArgs();
    for (const char* key : {"input_size", "weight_size", "stride", "padding", "dilation", "groups"})
        if (!args.count(key)) return 0;
    const std::vector<int64_t> x = args.at("input_size").toIntVector(), w = args.at("weight_size").toIntVector();
    if (x.size() != 4 || w.size() != 4) return 0;
    double flops = 2.0 * static_cast<double>(x[0] * w[0] * w[1] * w[2] * w[3]);
    for (size_t i = 0; i < 2; ++i) {
        const int64_t span = pair_value(args.at("dilation"), i) * (w[2 + i] - 1) + 1;
        flops *= static_cast<double>((x[2 + i] + 2 * pair_value(args.at("padding"), i) - span) / pair_value(args.at("stride"), i) + 1);
    }
    return flops;
}

// The FLOPs of one event itself: convolutions counted here, matrix products by libtorch (which also counts
// elementwise ops: not products, so not kept).
double own_flops(const prof::LegacyEvent& e) {
    const std::string name = e.name();
    if (name == "aten::conv2d") return conv2d_flops(e);
    if (name == "aten::mm" || name == "aten::addmm" || name == "aten::bmm" || name == "aten::baddbmm") {
        prof::LegacyEvent copy = e;  // flops() is not const in libtorch 1.13
        return static_cast<double>(copy.flops());
    }
    return 0;
}

// Pairs each thread's push and pop events; keeps the outermost ones, each with the FLOPs of the products
// called inside it (aten::linear's addmm, say).
void collect_top_level(const prof::thread_event_lists& lists, std::vector<ProfiledOp>& out) {
    struct Open {
        const prof::LegacyEvent* event;
        double flops = 0;
    };
    for (const auto& list : lists) {
        std::vector<Open> open;
        for (const prof::LegacyEvent& e : list) {
            if (e.kindStr() == "push") {
                open.push_back({&e});
            } else if (e.kindStr() == "pop" && !open.empty()) {
                const Open done = open.back();
                open.pop_back();
                const double flops = done.flops + own_flops(*done.event);
                if (!open.empty()) {
                    open.back().flops += flops;
                    continue;
                }
                out.push_back({done.event->name(), done.event->cpuElapsedUs(e) / 1e6, done.event->shapes(), flops});
            }
        }
    }
}

bool is_attention(const std::string& name) {
    return name == "multilora::fused_attention" || name == "multilora::grouped_attention";
}

std::string conv_group(const ProfiledOp& op) {
    if (op.shapes.size() < 2 || op.shapes[0].size() != 4 || op.shapes[1].size() != 4) return op.name;
    const auto& x = op.shapes[0];
    const auto& w = op.shapes[1];
    if (w[1] != x[1]) return "grouped convolutions";
    if (w[2] == 1 && w[3] == 1) return x[3] == 1 ? "linear layers (1x1 convolutions over rows)" : "1x1 convolutions";
    return std::to_string(w[2]) + "x" + std::to_string(w[3]) + " convolutions at " + std::to_string(x[2]) + "x" +
           std::to_string(x[3]);
}

}  // namespace

std::vector<ProfiledOp> profile_top_level(const std::function<void()>& fn) {
    const torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::CPU,
                                                       /*report_input_shapes=*/true, /*profile_memory=*/false,
                                                       /*with_stack=*/false, /*with_flops=*/true);
    std::vector<ProfiledOp> ops;
    // libtorch's own FLOP count warns for every convolution it cannot count: those warnings are dropped.
    struct Quiet : c10::WarningHandler {
        void process(const c10::SourceLocation&, const std::string&, const bool) override {}
    } quiet;
    c10::Warning::WarningHandlerGuard quiet_guard(&quiet);
    {
        prof::TLSLegacyProfilerGuard guard(config, [&](const prof::thread_event_lists& lists) { collect_top_level(lists, ops); });
        fn();
    }
    return ops;
}

std::string op_group(const ProfiledOp& op) {
    if (op.name == "aten::conv2d") return conv_group(op);
    if (is_attention(op.name)) return "attention";
    static const std::map<std::string, std::string> groups{
        {"aten::linear", "products through BLAS"}, {"aten::addmm", "products through BLAS"},
        {"aten::mm", "products through BLAS"},     {"aten::matmul", "products through BLAS"},
        {"aten::bmm", "products through BLAS"},    {"aten::group_norm", "norms"},
        {"aten::layer_norm", "norms"}};
    const auto it = groups.find(op.name);
    return it != groups.end() ? it->second : op.name;
}

double op_flops(const ProfiledOp& op) {
    if (!is_attention(op.name) || op.shapes.size() < 2 || op.shapes[0].size() < 2 || op.shapes[1].size() < 2) return op.flops;
    const auto& q = op.shapes[0];
    const auto& k = op.shapes[1];
    const double rows = static_cast<double>(c10::multiply_integers(q.begin(), q.end() - 1)), width = static_cast<double>(q.back());
    return 4.0 * rows * static_cast<double>(k[k.size() - 2]) * width;
}

nlohmann::json profile_rows(const std::vector<ProfiledOp>& ops, double wall_seconds, double min_share) {
    struct Row {
        int calls = 0;
        double seconds = 0, flops = 0;
    };
    std::map<std::string, Row> rows;
    double accounted = 0;
    for (const ProfiledOp& op : ops) {
        Row& r = rows[op_group(op)];
        ++r.calls, r.seconds += op.seconds, r.flops += op_flops(op);
        accounted += op.seconds;
    }
    Row other;
    std::vector<std::pair<std::string, Row>> kept;
    for (const auto& [group, r] : rows) {
        if (r.seconds >= min_share * wall_seconds) kept.emplace_back(group, r);
        else other.calls += r.calls, other.seconds += r.seconds, other.flops += r.flops;
    }
    std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
    if (other.calls > 0) kept.emplace_back("other operators", other);
    kept.emplace_back("not in an operator", Row{0, std::max(0.0, wall_seconds - accounted), 0});
    nlohmann::json out = nlohmann::json::array();
    for (const auto& [group, r] : kept)
        out.push_back({{"group", group},
                       {"calls", r.calls},
                       {"seconds", r.seconds},
                       {"share", wall_seconds > 0 ? r.seconds / wall_seconds : 0.0},
                       {"gflop", r.flops / 1e9},
                       {"gflop_per_s", r.flops > 0 && r.seconds > 0 ? r.flops / r.seconds / 1e9 : 0.0}});
    return out;
}

}  // namespace multilora::bench
