#include "multilora/models/fused_attention.h"

#include <immintrin.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace multilora::models {

// Everything that uses AVX-512 carries this attribute, so the rest of the build stays generic x86-64
// and the kernel is only entered after the runtime check in use_fused_attention().
#define ML_AVX512 __attribute__((target("avx512f,avx512dq,fma")))

namespace {

bool g_fused_enabled = true;

constexpr int64_t kRows = 12;      // query rows per task
constexpr int64_t kKeyBlock = 128;  // keys per online-softmax block (a multiple of 32; 64-512 within 5%)
constexpr int64_t kHalfRows = 6;   // rows per pass of the value product
constexpr int kMaxColumnRegs = 4;  // 16-float registers per pass of the value product

// One head's keys, packed in panels of 32: [keys/32][d][32] (a panel is contiguous, so the score product
// reads it sequentially; a [d, keys] layout put its rows 16 KiB apart, all in the same L1 sets), and values
// [keys, dp]; both zero-padded.
struct HeadView {
    const float* kt;
    const float* v;
    int64_t d, dp, keys;
};

// Per-task state: scores/weights [kRows, kKeyBlock], the running output [kRows, dp], max and sum per row.
struct TaskState {
    std::vector<float> q, s, o, m, l;
    TaskState(int64_t d, int64_t dp)
        : q(kRows * d), s(kRows * kKeyBlock), o(kRows * dp), m(kRows), l(kRows) {}
    void reset() {  // q too: a tail task's unused rows must hold zeros, not the last task's queries
        std::fill(q.begin(), q.end(), 0.f);
        std::fill(o.begin(), o.end(), 0.f);
        std::fill(m.begin(), m.end(), -std::numeric_limits<float>::infinity());
        std::fill(l.begin(), l.end(), 0.f);
    }
};

// e^x to about 1 ulp (Cephes' expf polynomial on x - n·ln2, |x - n·ln2| <= ln2/2), 0 below -87.
ML_AVX512 inline __m512 exp16(__m512 x) {
    const __mmask16 underflow = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.f), _CMP_LT_OQ);
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
    return _mm512_maskz_mov_ps(static_cast<__mmask16>(~underflow), _mm512_scalef_ps(p, n));
}

// s[r, j] = Σ_c q[r, c]·k[j0 + j, c] for kRows rows and `cols` keys (a multiple of 32) from key j0.
ML_AVX512 void block_scores(const float* q, const HeadView& h, int64_t j0, int64_t cols, float* s) {
    for (int64_t j = 0; j < cols; j += 32) {
        __m512 acc[kRows][2];
#pragma GCC unroll 12
        for (int64_t r = 0; r < kRows; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
        const float* k = h.kt + (j0 + j) * h.d;  // panel (j0 + j) / 32
        for (int64_t c = 0; c < h.d; ++c) {
            const __m512 k0 = _mm512_loadu_ps(k + c * 32), k1 = _mm512_loadu_ps(k + c * 32 + 16);
#pragma GCC unroll 12
            for (int64_t r = 0; r < kRows; ++r) {
                const __m512 b = _mm512_set1_ps(q[r * h.d + c]);
                acc[r][0] = _mm512_fmadd_ps(b, k0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(b, k1, acc[r][1]);
            }
        }
#pragma GCC unroll 12
        for (int64_t r = 0; r < kRows; ++r) {
            _mm512_storeu_ps(s + r * kKeyBlock + j, acc[r][0]);
            _mm512_storeu_ps(s + r * kKeyBlock + j + 16, acc[r][1]);
        }
    }
}

// Online softmax over one block: scores become weights e^{scale·(s - m)} against the new running max m;
// the row's earlier sum and partial output are rescaled to that max. Keys at or past `valid` weigh 0.
ML_AVX512 void block_softmax(TaskState& t, int64_t cols, int64_t valid, float scale, int64_t dp) {
    for (int64_t r = 0; r < kRows; ++r) {
        float* s = t.s.data() + r * kKeyBlock;
        std::fill(s + valid, s + cols, -std::numeric_limits<float>::infinity());
        __m512 mx = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
        for (int64_t j = 0; j < cols; j += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(s + j));
        const float m_new = std::max(t.m[r], _mm512_reduce_max_ps(mx));
        const float alpha = std::exp(scale * (t.m[r] - m_new));  // 0 on the first block (m = -inf)
        const __m512 m_vec = _mm512_set1_ps(m_new), scale_vec = _mm512_set1_ps(scale);
        __m512 sum = _mm512_setzero_ps();
        for (int64_t j = 0; j < cols; j += 16) {
            const __m512 p = exp16(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(s + j), m_vec), scale_vec));
            _mm512_storeu_ps(s + j, p);
            sum = _mm512_add_ps(sum, p);
        }
        t.l[r] = t.l[r] * alpha + _mm512_reduce_add_ps(sum);
        t.m[r] = m_new;
        float* o = t.o.data() + r * dp;
        const __m512 a = _mm512_set1_ps(alpha);
        for (int64_t c = 0; c < dp; c += 16) _mm512_storeu_ps(o + c, _mm512_mul_ps(_mm512_loadu_ps(o + c), a));
    }
}

// o[r, c0 + 16z] += Σ_j p[r, j]·v[j0 + j, c0 + 16z] for kHalfRows rows and Z registers of columns.
template <int Z>
ML_AVX512 void block_values_pass(const float* p, const float* v, int64_t dp, int64_t cols, float* o) {
    __m512 acc[kHalfRows][Z];
#pragma GCC unroll 6
    for (int64_t r = 0; r < kHalfRows; ++r)
#pragma GCC unroll 4
        for (int z = 0; z < Z; ++z) acc[r][z] = _mm512_loadu_ps(o + r * dp + 16 * z);
    for (int64_t j = 0; j < cols; ++j) {
        __m512 vv[Z];
#pragma GCC unroll 4
        for (int z = 0; z < Z; ++z) vv[z] = _mm512_loadu_ps(v + j * dp + 16 * z);
#pragma GCC unroll 6
        for (int64_t r = 0; r < kHalfRows; ++r) {
            const __m512 b = _mm512_set1_ps(p[r * kKeyBlock + j]);
#pragma GCC unroll 4
            for (int z = 0; z < Z; ++z) acc[r][z] = _mm512_fmadd_ps(b, vv[z], acc[r][z]);
        }
    }
#pragma GCC unroll 6
    for (int64_t r = 0; r < kHalfRows; ++r)
#pragma GCC unroll 4
        for (int z = 0; z < Z; ++z) _mm512_storeu_ps(o + r * dp + 16 * z, acc[r][z]);
}

// The weighted sum of one block's values into the running output, in passes of 6 rows x up to 64 columns.
ML_AVX512 void block_values(TaskState& t, const HeadView& h, int64_t j0, int64_t cols) {
    const float* v = h.v + j0 * h.dp;
    for (int64_t r0 = 0; r0 < kRows; r0 += kHalfRows) {
        const float* p = t.s.data() + r0 * kKeyBlock;
        for (int64_t c0 = 0; c0 < h.dp; c0 += 16 * kMaxColumnRegs) {
            float* o = t.o.data() + r0 * h.dp + c0;
            switch (std::min<int64_t>(kMaxColumnRegs, (h.dp - c0) / 16)) {
                case 1: block_values_pass<1>(p, v + c0, h.dp, cols, o); break;
                case 2: block_values_pass<2>(p, v + c0, h.dp, cols, o); break;
                case 3: block_values_pass<3>(p, v + c0, h.dp, cols, o); break;
                default: block_values_pass<4>(p, v + c0, h.dp, cols, o); break;
            }
        }
    }
}

// One task: rows [row0, row0 + kRows) of one head, written to `out` (row stride `ld`) divided by their sums.
ML_AVX512 void attend_rows(TaskState& t, const HeadView& h, const float* q, int64_t rows, int64_t ld, float scale,
                           float* out) {
    t.reset();
    for (int64_t r = 0; r < rows; ++r) std::copy(q + r * ld, q + r * ld + h.d, t.q.data() + r * h.d);
    for (int64_t j0 = 0; j0 < h.keys; j0 += kKeyBlock) {
        const int64_t valid = std::min(kKeyBlock, h.keys - j0);
        const int64_t cols = (valid + 31) / 32 * 32;
        block_scores(t.q.data(), h, j0, cols, t.s.data());
        block_softmax(t, cols, valid, scale, h.dp);
        block_values(t, h, j0, cols);
    }
    for (int64_t r = 0; r < rows; ++r) {
        const float inv = 1.f / t.l[r];
        for (int64_t c = 0; c < h.d; ++c) out[r * ld + c] = t.o[r * h.dp + c] * inv;
    }
}

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

}  // namespace

void set_fused_attention_enabled(bool enabled) { g_fused_enabled = enabled; }
bool fused_attention_enabled() { return g_fused_enabled; }

bool use_fused_attention(const at::Tensor& q) {
    static const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
    return g_fused_enabled && avx512 && q.device().is_cpu() && q.scalar_type() == at::kFloat;
}

at::Tensor fused_attention(const at::Tensor& q_in, const at::Tensor& k, const at::Tensor& v, int64_t heads,
                           double scale) {
    RECORD_FUNCTION("multilora::fused_attention", std::vector<c10::IValue>({q_in, k, v}));  // for bench --profile
    const int64_t batch = q_in.size(0), nq = q_in.size(1), nk = k.size(1), width = q_in.size(2);
    const int64_t d = width / heads, dp = round_up(d, 16), ldk = round_up(nk, 32);
    // Packing: keys [batch, heads, ldk/32, d, 32], values [batch, heads, ldk, dp], zero-padded.
    const at::Tensor kt = at::constant_pad_nd(k.view({batch, nk, heads, d}), {0, 0, 0, 0, 0, ldk - nk})
                              .view({batch, ldk / 32, 32, heads, d})
                              .permute({0, 3, 1, 4, 2})
                              .contiguous();
    const at::Tensor vp =
        at::constant_pad_nd(v.view({batch, nk, heads, d}).permute({0, 2, 1, 3}), {0, dp - d, 0, ldk - nk}).contiguous();
    const at::Tensor q = q_in.contiguous();
    at::Tensor out = at::empty({batch, nq, width}, q.options());
    const int64_t groups = (nq + kRows - 1) / kRows;
    const float* qp = q.data_ptr<float>();
    float* op = out.data_ptr<float>();
    at::parallel_for(0, batch * heads * groups, 1, [&](int64_t begin, int64_t end) {
        TaskState state(d, dp);
        for (int64_t task = begin; task < end; ++task) {
            const int64_t g = task % groups, bh = task / groups, b = bh / heads, hd = bh % heads;
            const HeadView h{kt.data_ptr<float>() + bh * d * ldk, vp.data_ptr<float>() + bh * ldk * dp, d, dp, nk};
            const int64_t row0 = g * kRows, rows = std::min(kRows, nq - row0);
            const int64_t offset = (b * nq + row0) * width + hd * d;
            attend_rows(state, h, qp + offset, rows, width, static_cast<float>(scale), op + offset);
        }
    });
    return out;
}

}  // namespace multilora::models
