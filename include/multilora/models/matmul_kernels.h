// The matrix products of the hot path (linear layers and attention), routed to the fastest kernel that
// libtorch offers for the tensors at hand.
//
// On the CPU in float32, libtorch 1.13 sends at::linear and at::bmm to the system BLAS, while its
// convolutions run on oneDNN. A 1x1 convolution over a channels-last view computes x·Wᵀ + b without any
// copy, and measured here it runs about twice as fast as OpenBLAS for every SD1.5 linear shape (e.g.
// 8192x320x320: 400 vs 163 GFLOP/s, 2 threads). Attention's per-head products become grouped 1x1
// convolutions the same way. Results agree with the BLAS path to ~1e-6 relative (a different summation
// order), which tests/test_models_matmul.cpp checks. Other devices and dtypes use at::linear / at::bmm.
#pragma once

#include <cstdint>

namespace at {
class Tensor;
}

namespace multilora::models {

// y = x·Wᵀ + b for x [..., in], weight [out, in], bias [out] or undefined.
at::Tensor dense(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

// softmax(scale·q·kᵀ)·v over one batch element's heads, written into `out` [nq, heads*d]: q [nq, heads*d],
// k and v [nk, heads*d]. Queries go in chunks of at most `max_score_elements` scores. For the CPU paths
// where use_grouped_attention() is true for q.
void grouped_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads, double scale,
                       int64_t max_score_elements, const at::Tensor& out);

// Whether dense() takes the oneDNN convolution route for tensors like `x` (CPU float32).
bool use_onednn_products(const at::Tensor& x);

// Whether attention takes grouped_attention for queries like `q`: CPU float32, and CPU bfloat16 where the
// CPU has bf16 units (AVX512-BF16/AMX): there oneDNN's bf16 grouped convolutions beat bmm by ~30% (4096x4096,
// 8 heads: 81 vs 112 ms per batch row on 2 threads).
bool use_grouped_attention(const at::Tensor& q);

// Off: everything goes through at::linear / at::bmm (for comparisons in tests and the benchmark).
void set_onednn_products_enabled(bool enabled);
bool onednn_products_enabled();

}  // namespace multilora::models
