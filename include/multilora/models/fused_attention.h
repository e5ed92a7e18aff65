// Fused softmax attention for the CPU in float32 (AVX-512): a flash-style blocked kernel that never
// materialises the score matrix.
//
// Each task takes 12 query rows of one head and walks the keys in blocks of 128: the block's scores go to
// a 6 KiB buffer that stays in L1, an online softmax (running max and sum per row, earlier partial outputs
// rescaled when the max grows) turns them into weights, and the weights multiply the block's values into a
// 12-row accumulator. Keys are packed per head in panels of 32 as [d, 32] and values as [keys, d rounded up
// to 16] (zero padding), so the two products are register-blocked outer products (12x32 and 6x64). Tasks
// (rows x heads x batch) run through at::parallel_for; each row's result does not depend on the thread count.
//
// Measured with `multilora bench --size 512` (2 threads, one interleaved run, 2026-12-06): the plain fp32
// UNet step 6.22 s fused against 7.29 s on the grouped-convolution route it replaces (paired ratio 1.167,
// 1.152-1.174), 77% against 66% of the fp32 peak. In a standalone probe (one batch row, 8 heads, without
// main()'s allocator tuning, which flatters the fused kernel: the old route's 128 MiB score chunks page-fault
// there) 4096x4096 d 40 ran at 213 against 59 GFLOP/s and 4096x77 at 121 against 82.
// Results agree with that route to float32 rounding (the weights are normalised once at the end instead of
// before the product), which tests/test_models_routes.cpp checks.
#pragma once

#include <cstdint>

namespace at {
class Tensor;
}

namespace multilora::models {

// softmax(scale·q·kᵀ)·v per head for q [batch, nq, heads*d], k and v [batch, nk, heads*d], float32 on the
// CPU; returns [batch, nq, heads*d]. Only where use_fused_attention(q) is true.
at::Tensor fused_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads, double scale);

// CPU float32 and a CPU with AVX-512F, and not switched off.
bool use_fused_attention(const at::Tensor& q);

// Off: attention takes the grouped-convolution route (for comparisons in tests and the benchmark).
void set_fused_attention_enabled(bool enabled);
bool fused_attention_enabled();

}  // namespace multilora::models
