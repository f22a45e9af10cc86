// Exact modular kernels for capc.he.raw.matmul_mod: split residues into float64 limbs and recombine
// the limb products modulo an RNS prime.  NumPy needs ~15 full-array passes (an integer division
// among them) to recombine; here it is one pass per output with Shoup multiplication, and the GIL
// is released so that the affine stages' column blocks run on several threads.
#include <cmath>
#include <cstdint>
#include <stdexcept>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace {

using u64 = std::uint64_t;
using i64 = std::int64_t;
using u128 = unsigned __int128;

// Shoup multiplication by a constant w < q < 2^63: w_shoup = floor(w * 2^64 / q).
struct ShoupConst {
  u64 w, w_shoup;
  ShoupConst(u64 w_, u64 q) : w(w_), w_shoup(static_cast<u64>((static_cast<u128>(w_) << 64) / q)) {}
  u64 mul(u64 a, u64 q) const {  // a < q
    u64 qt = static_cast<u64>((static_cast<u128>(a) * w_shoup) >> 64);
    u64 r = a * w - qt * q;  // exact modulo 2^64, in [0, 2q)
    return r >= q ? r - q : r;
  }
};

// v mod q for an integer-valued double |v| < 2^53.
inline u64 reduce_double(double v, u64 q, double inv_q) {
  i64 x = static_cast<i64>(v);
  if (q > (u64{1} << 53)) return x < 0 ? static_cast<u64>(x + static_cast<i64>(q)) : static_cast<u64>(x);
  i64 qt = static_cast<i64>(std::floor(v * inv_q));
  i64 r = x - qt * static_cast<i64>(q);  // off by at most one q either way
  if (r < 0) r += static_cast<i64>(q);
  if (r >= static_cast<i64>(q)) r -= static_cast<i64>(q);
  return static_cast<u64>(r);
}

void check_modulus(u64 q) {
  if (q < 2 || q >= (u64{1} << 62)) throw std::invalid_argument("modulus must be in [2, 2^62)");
}

py::array_t<double> split_limbs(py::array_t<u64, py::array::c_style> x, int bits, int nlimbs) {
  if (x.ndim() != 2) throw std::invalid_argument("x must be 2-D");
  if (bits < 1 || bits > 52 || nlimbs < 1 || static_cast<long>(bits) * nlimbs > 64 + bits)
    throw std::invalid_argument("bad limb width or count");
  const py::ssize_t n = x.shape(0), k = x.shape(1);
  py::array_t<double> out({n, static_cast<py::ssize_t>(nlimbs) * k});
  const u64* src = x.data();
  double* dst = out.mutable_data();
  const u64 mask = (u64{1} << bits) - 1;
  {
    py::gil_scoped_release release;
    for (py::ssize_t i = 0; i < n; ++i) {
      const u64* row = src + i * k;
      double* o = dst + i * nlimbs * k;
      for (int j = 0; j < nlimbs; ++j) {
        const int s = j * bits;
        double* oj = o + j * k;
        for (py::ssize_t c = 0; c < k; ++c) oj[c] = static_cast<double>(s < 64 ? (row[c] >> s) & mask : 0);
      }
    }
  }
  return out;
}

py::array_t<u64> combine_limbs(py::array_t<double, py::array::c_style> prod, int nlimbs, int bits, u64 q,
                               u64 factor, py::array_t<u64, py::array::c_style> bias) {
  check_modulus(q);
  if (prod.ndim() != 2 || nlimbs < 1 || prod.shape(1) % nlimbs != 0)
    throw std::invalid_argument("prod must be [m, nlimbs * k]");
  if (bits < 1 || bits > 52) throw std::invalid_argument("bad limb width");
  const py::ssize_t m = prod.shape(0), k = prod.shape(1) / nlimbs;
  const bool has_bias = bias.size() > 0;
  if (has_bias && (bias.ndim() != 1 || bias.shape(0) != m)) throw std::invalid_argument("bias must be [m]");
  py::array_t<u64> out({m, k});
  const double* p = prod.data();
  const u64* b = bias.data();
  u64* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    const double inv_q = 1.0 / static_cast<double>(q);
    const ShoupConst radix((u64{1} << bits) % q, q), scale(factor % q, q);
    for (py::ssize_t i = 0; i < m; ++i) {
      const double* row = p + i * nlimbs * k;
      const u64 add = has_bias ? b[i] % q : 0;
      u64* orow = o + i * k;
      for (py::ssize_t c = 0; c < k; ++c) {
        u64 acc = reduce_double(row[(nlimbs - 1) * k + c], q, inv_q);
        for (int j = nlimbs - 2; j >= 0; --j) {  // Horner over the limbs, most significant first
          acc = radix.mul(acc, q) + reduce_double(row[j * k + c], q, inv_q);
          if (acc >= q) acc -= q;
        }
        acc = scale.mul(acc, q) + add;
        orow[c] = acc >= q ? acc - q : acc;
      }
    }
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_rns, m) {
  m.doc() = "Exact limb split / recombination modulo RNS primes (see capc.he.raw.matmul_mod)";
  m.def("split_limbs", &split_limbs, py::arg("x"), py::arg("bits"), py::arg("nlimbs"),
        "float64 [n, nlimbs*k]: limb j of x[:, c] (bits j*bits .. (j+1)*bits) at column j*k + c");
  m.def("combine_limbs", &combine_limbs, py::arg("prod"), py::arg("nlimbs"), py::arg("bits"), py::arg("q"),
        py::arg("factor"), py::arg("bias"),
        "uint64 [m, k]: (sum_j prod[:, j*k + c] * 2^(j*bits)) * factor + bias[i] mod q");
}
