// Small re-implementations of the numpy routines whose exact float64 results the schedulers depend on
// (diffusers builds its timestep and sigma grids with numpy in float64, then rounds to float32 or int64).
// Each follows numpy's documented evaluation order so that the same doubles come out; products are kept
// out of fused multiply-adds, which numpy's own loops do not use on x86-64.
#pragma once

#include <cstdint>
#include <vector>

namespace multilora::sampling::detail {

// np.linspace(start, stop, num) with endpoint=True, in float64: start + k * ((stop - start) / (num - 1)),
// the last element set to `stop` exactly; num == 1 gives {start}.
std::vector<double> np_linspace(double start, double stop, int64_t num);

// np.arange(start, stop, step) for float arguments: ceil((stop - start) / step) elements, element k
// being start + k * ((start + step) - start) as numpy's fill loop computes it.
std::vector<double> np_arange(double start, double stop, double step);

// np.round / ndarray.round() with zero decimals: round half to even.
double np_round(double x);

// np.interp(x, arange(fp.size()), fp): piecewise-linear interpolation over the integer grid
// 0..fp.size()-1, clamped to fp's end values outside it.
std::vector<double> np_interp_unit_grid(const std::vector<double>& x, const std::vector<double>& fp);

// a * b rounded to double, never contracted with a following addition.
double mul_no_fma(double a, double b);

}  // namespace multilora::sampling::detail
