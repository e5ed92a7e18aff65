// Where a UNet step's time goes: libtorch's profiler over one call, its top-level operators grouped by what
// they compute (3x3 convolutions by feature-map size, the linear layers' products, attention, norms,
// elementwise work), with the FLOPs of its convolutions, matrix products and attention. `bench --profile`.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace multilora::bench {

// One top-level operator call (not nested in another) as the profiler saw it.
struct ProfiledOp {
    std::string name;                          // "aten::conv2d", "multilora::fused_attention", ...
    double seconds = 0;
    std::vector<std::vector<int64_t>> shapes;  // input shapes (empty for non-tensor arguments)
    // FLOPs of the convolutions (from their saved arguments) and matrix products (libtorch's count) in it;
    // 0 for elementwise ops, and for attention records, whose FLOPs op_flops() reads from their shapes.
    double flops = 0;
};

// Runs fn once under libtorch's CPU profiler (input shapes and FLOPs on) and returns its top-level operators.
std::vector<ProfiledOp> profile_top_level(const std::function<void()>& fn);

// The row an operator is counted in: "3x3 convolutions at 64x64", "linear layers (1x1 convolutions over
// rows)", "attention", "norms", or the operator's own name.
std::string op_group(const ProfiledOp& op);

// The FLOPs of an op: its `flops`, or for multilora's attention records (q [.., nq, h*d], k [.., nk, h*d])
// the two products' 4 * rows(q) * nk * h*d.
double op_flops(const ProfiledOp& op);

// Rows {group, calls, seconds, share, gflop, gflop_per_s}, the most time first; rows under min_share of the
// wall time fold into "other operators", and the wall time no operator accounts for is its own last row.
nlohmann::json profile_rows(const std::vector<ProfiledOp>& ops, double wall_seconds, double min_share = 0.01);

}  // namespace multilora::bench
