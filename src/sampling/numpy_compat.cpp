#include "sampling/numpy_compat.h"

#include <cmath>
#include <stdexcept>

namespace multilora::sampling::detail {

double mul_no_fma(double a, double b) {
    // The volatile store forces the product to be rounded on its own, so the compiler cannot fuse it
    // with the caller's addition into an FMA (which would round once instead of twice).
    volatile double p = a * b;
    return p;
}

std::vector<double> np_linspace(double start, double stop, int64_t num) {
    if (num < 0) throw std::invalid_argument("np_linspace: negative count");
    std::vector<double> y(static_cast<size_t>(num));
    if (num == 0) return y;
    const int64_t div = num - 1;
    const double delta = stop - start;
    if (div > 0) {
        const double step = delta / static_cast<double>(div);
        for (int64_t k = 0; k < num; ++k) {
            double v;
            if (step == 0.0) {
                v = mul_no_fma(static_cast<double>(k) / static_cast<double>(div), delta);
            } else {
                v = mul_no_fma(static_cast<double>(k), step);
            }
            y[static_cast<size_t>(k)] = v + start;
        }
        y.back() = stop;
    } else {
        y[0] = mul_no_fma(0.0, delta) + start;
    }
    return y;
}

std::vector<double> np_arange(double start, double stop, double step) {
    if (step == 0.0) throw std::invalid_argument("np_arange: zero step");
    const double len_f = std::ceil((stop - start) / step);
    if (!(len_f > 0.0)) return {};
    const auto len = static_cast<size_t>(len_f);
    std::vector<double> y(len);
    y[0] = start;
    if (len > 1) {
        y[1] = start + step;
        const double delta = y[1] - start;
        for (size_t i = 2; i < len; ++i) y[i] = start + mul_no_fma(static_cast<double>(i), delta);
    }
    return y;
}

double np_round(double x) {
    // nearbyint honours the current rounding mode, which is round-to-nearest-even unless someone
    // changed it; numpy's rint behaves the same way.
    return std::nearbyint(x);
}

std::vector<double> np_interp_unit_grid(const std::vector<double>& x, const std::vector<double>& fp) {
    if (fp.empty()) throw std::invalid_argument("np_interp: empty table");
    const auto n = static_cast<int64_t>(fp.size());
    const double last = static_cast<double>(n - 1);
    std::vector<double> out(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        const double xv = x[i];
        if (std::isnan(xv)) {
            out[i] = xv;
        } else if (xv < 0.0) {
            out[i] = fp.front();
        } else if (xv >= last) {
            out[i] = fp.back();
        } else {
            const auto j = static_cast<int64_t>(std::floor(xv));
            const double xj = static_cast<double>(j);
            if (xj == xv) {
                out[i] = fp[static_cast<size_t>(j)];
            } else {
                // slope over a unit interval: (fp[j+1] - fp[j]) / (xp[j+1] - xp[j]) with the divisor 1.0
                const double slope = (fp[static_cast<size_t>(j + 1)] - fp[static_cast<size_t>(j)]) / 1.0;
                double r = mul_no_fma(slope, xv - xj) + fp[static_cast<size_t>(j)];
                if (std::isnan(r)) {
                    r = mul_no_fma(slope, xv - (xj + 1.0)) + fp[static_cast<size_t>(j + 1)];
                    if (std::isnan(r) && fp[static_cast<size_t>(j)] == fp[static_cast<size_t>(j + 1)])
                        r = fp[static_cast<size_t>(j)];
                }
                out[i] = r;
            }
        }
    }
    return out;
}

}  // namespace multilora::sampling::detail
