// engine_module.cpp — pybind11 module capc.gc._engine: CaPC's circuits over a Python byte stream.
//
// A Session wraps any Python object with sendall(bytes-like) and recv_into(buffer) -> int (a socket or an
// ssl.SSLSocket) and keeps the engine state of one party across queries: the handshake and the base OTs
// run once, at the first query; each query starts with a header (operation, size, sequence number and the
// operation's public parameters such as window and shift) that both sides check, so mismatched calls fail
// with ProtocolError instead of desynchronising. The GIL is released while computing and re-acquired only
// inside the I/O callbacks.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "capc_circuits.h"
#include "capc_gc/capc_gc.h"

namespace py = pybind11;
using namespace capc_gc;

namespace {

enum Op : uint32_t { kOpArgmaxShare = 1, kOpNoisyArgmax = 2, kOpReluShare = 3, kOpMaxpoolShare = 4 };

const char* op_name(uint32_t op) {
  switch (op) {
    case kOpArgmaxShare: return "argmax_share";
    case kOpNoisyArgmax: return "noisy_argmax";
    case kOpReluShare: return "relu_share";
    case kOpMaxpoolShare: return "maxpool_share";
    default: return "an unknown operation";
  }
}

/// Most values one relu_share / maxpool_share call accepts (memory per round is bounded by chunking).
constexpr size_t kMaxValues = size_t{1} << 26;

/// IOChannel over a Python stream object; every call into Python holds the GIL.
class PyIO : public IOChannel {
 public:
  explicit PyIO(py::object stream)
      : stream_(std::move(stream)), sendall_(stream_.attr("sendall")), recv_into_(stream_.attr("recv_into")),
        unread_(py::hasattr(stream_, "unread") ? stream_.attr("unread") : py::object()) {}

  /// After a program: give the stream back what was read ahead of the circuit's last byte (the peer's
  /// next framed message, say), when the stream can take it back; else it stays buffered here for the
  /// next program, which is right for a stream only the engine reads.
  void give_back_read_ahead() {
    if (unread_.is_none() || !unread_) return;
    std::vector<uint8_t> rest = take_read_ahead();
    if (rest.empty()) return;
    py::gil_scoped_acquire gil;
    unread_(py::bytes(reinterpret_cast<const char*>(rest.data()), static_cast<py::ssize_t>(rest.size())));
  }
  ~PyIO() override {
    py::gil_scoped_acquire gil;
    sendall_ = py::object();
    recv_into_ = py::object();
    unread_ = py::object();
    stream_ = py::object();
  }

 protected:
  void raw_send(const uint8_t* data, size_t n) override {
    py::gil_scoped_acquire gil;
    sendall_(py::memoryview::from_memory(data, static_cast<py::ssize_t>(n)));
  }
  size_t raw_recv(uint8_t* data, size_t max) override {
    py::gil_scoped_acquire gil;
    py::object r = recv_into_(py::memoryview::from_memory(data, static_cast<py::ssize_t>(max), false));
    auto got = r.cast<long long>();
    if (got == 0) throw NetError("the peer closed the connection");
    if (got < 0 || static_cast<size_t>(got) > max) throw NetError("recv_into returned an invalid count");
    return static_cast<size_t>(got);
  }

 private:
  py::object stream_, sendall_, recv_into_, unread_;
};

using I64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

/// A 1-D int64 array's data, read in place (no copy): the caller's array outlives the call.
struct I64View {
  const int64_t* data = nullptr;
  size_t size = 0;
};

I64View view(const I64Array& a, const char* name) {
  if (a.ndim() != 1) throw InputError(std::string(name) + " must be a 1-D array, got " + std::to_string(a.ndim()) + "-D");
  return {a.data(), static_cast<size_t>(a.shape(0))};
}

std::vector<int64_t> to_vec(const I64Array& a, const char* name) {
  I64View v = view(a, name);
  return std::vector<int64_t>(v.data, v.data + v.size);
}

class Session {
 public:
  Session(py::object stream, const std::string& role) {
    if (role == "garbler")
      party_ = ALICE;
    else if (role == "evaluator")
      party_ = BOB;
    else
      throw InputError("role must be 'garbler' (AP or PG) or 'evaluator' (QP), got '" + role + "'");
    for (const char* attr : {"sendall", "recv_into"})
      if (!py::hasattr(stream, attr))
        throw InputError(std::string("io object has no ") + attr + "() method (expected a socket-like object)");
    io_ = std::make_unique<PyIO>(std::move(stream));
  }

  py::array_t<int64_t> argmax_share_evaluator(const I64Array& a_in) {
    need(BOB, "argmax_share_evaluator");
    const I64View a = view(a_in, "a");
    check_classes(a.size);
    py::array_t<int64_t> w(static_cast<py::ssize_t>(a.size));
    int64_t* out = w.mutable_data();
    run(kOpArgmaxShare, a.size, [&] { capc_programs::sliced::argmax_share(BOB, a.size, a.data, nullptr, out); });
    return w;
  }

  void argmax_share_garbler(const I64Array& b_in, const I64Array& m_in) {
    need(ALICE, "argmax_share_garbler");
    const I64View b = view(b_in, "b"), m = view(m_in, "m");
    check_classes(b.size);
    if (m.size != b.size)
      throw InputError("m has " + std::to_string(m.size) + " entries but b has " + std::to_string(b.size));
    run(kOpArgmaxShare, b.size, [&] { capc_programs::sliced::argmax_share(ALICE, b.size, b.data, m.data, nullptr); });
  }

  py::tuple noisy_argmax_evaluator(const I64Array& w_in) {
    need(BOB, "noisy_argmax_evaluator");
    std::vector<int64_t> W = to_vec(w_in, "W");
    check_classes(W.size());
    capc_programs::NoisyArgmaxResult r;
    run(kOpNoisyArgmax, W.size(), [&] { r = capc_programs::noisy_argmax(BOB, W.size(), W, {}, 0, 0); });
    return py::make_tuple(r.answered, r.answered ? py::object(py::int_(r.label)) : py::object(py::none()));
  }

  bool noisy_argmax_garbler(const I64Array& m_in, const I64Array& eg_in, int64_t eta_t, int64_t threshold) {
    need(ALICE, "noisy_argmax_garbler");
    std::vector<int64_t> M = to_vec(m_in, "M"), eg = to_vec(eg_in, "eta_G");
    check_classes(M.size());
    if (eg.size() != M.size())
      throw InputError("eta_G has " + std::to_string(eg.size()) + " entries but M has " + std::to_string(M.size()));
    capc_programs::NoisyArgmaxResult r;
    run(kOpNoisyArgmax, M.size(), [&] { r = capc_programs::noisy_argmax(ALICE, M.size(), M, eg, eta_t, threshold); });
    return r.answered;
  }

  py::array_t<int64_t> relu_share_evaluator(const I64Array& a_in, int shift, int in_bits, int out_bits) {
    need(BOB, "relu_share_evaluator");
    const I64View a = view(a_in, "a");
    check_values(a.size, 1, shift, in_bits, out_bits);
    py::array_t<int64_t> y(static_cast<py::ssize_t>(a.size));
    int64_t* out = y.mutable_data();
    run(kOpReluShare, a.size, "values", relu_params(shift, in_bits, out_bits), [&] {
      capc_programs::sliced::pool_share(BOB, a.size, 1, true, shift, a.data, nullptr, out, capc_programs::kShareChunk,
                                        in_bits, out_bits);
    });
    return y;
  }

  void relu_share_garbler(const I64Array& b_in, const I64Array& m_in, int shift, int in_bits, int out_bits) {
    need(ALICE, "relu_share_garbler");
    const I64View b = view(b_in, "b"), m = view(m_in, "m");
    check_values(b.size, 1, shift, in_bits, out_bits);
    if (m.size != b.size)
      throw InputError("m has " + std::to_string(m.size) + " entries but b has " + std::to_string(b.size));
    run(kOpReluShare, b.size, "values", relu_params(shift, in_bits, out_bits), [&] {
      capc_programs::sliced::pool_share(ALICE, b.size, 1, true, shift, b.data, m.data, nullptr,
                                        capc_programs::kShareChunk, in_bits, out_bits);
    });
  }

  py::array_t<int64_t> maxpool_share_evaluator(const I64Array& a_in, int64_t window, int shift, bool relu_after,
                                               int in_bits, int out_bits) {
    need(BOB, "maxpool_share_evaluator");
    const I64View a = view(a_in, "a");
    check_values(a.size, window, shift, in_bits, out_bits);
    const auto w = static_cast<size_t>(window);
    py::array_t<int64_t> y(static_cast<py::ssize_t>(a.size / w));
    int64_t* out = y.mutable_data();
    run(kOpMaxpoolShare, a.size, "values", pool_params(w, shift, relu_after, in_bits, out_bits), [&] {
      capc_programs::sliced::pool_share(BOB, a.size, w, relu_after, shift, a.data, nullptr, out,
                                        capc_programs::kShareChunk, in_bits, out_bits);
    });
    return y;
  }

  void maxpool_share_garbler(const I64Array& b_in, const I64Array& m_in, int64_t window, int shift,
                             bool relu_after, int in_bits, int out_bits) {
    need(ALICE, "maxpool_share_garbler");
    const I64View b = view(b_in, "b"), m = view(m_in, "m");
    check_values(b.size, window, shift, in_bits, out_bits);
    const auto w = static_cast<size_t>(window);
    if (m.size != b.size / w)
      throw InputError("m has " + std::to_string(m.size) + " entries but b has " + std::to_string(b.size / w) +
                       " windows of " + std::to_string(w));
    run(kOpMaxpoolShare, b.size, "values", pool_params(w, shift, relu_after, in_bits, out_bits), [&] {
      capc_programs::sliced::pool_share(ALICE, b.size, w, relu_after, shift, b.data, m.data, nullptr,
                                        capc_programs::kShareChunk, in_bits, out_bits);
    });
  }

  uint64_t bytes_sent() const { return io_ ? io_->bytes_sent() : closed_sent_; }
  uint64_t bytes_received() const { return io_ ? io_->bytes_received() : closed_received_; }
  uint64_t queries() const { return seq_; }
  uint64_t and_gates() const { return party_obj_ ? party_obj_->and_gates() : closed_and_gates_; }
  bool broken() const { return broken_; }

  void close() {
    if (!io_) return;
    closed_sent_ = io_->bytes_sent();
    closed_received_ = io_->bytes_received();
    closed_and_gates_ = party_obj_ ? party_obj_->and_gates() : 0;
    party_obj_.reset();
    io_.reset();
  }

 private:
  void need(int party, const char* method) const {
    if (!io_) throw ProtocolError(std::string(method) + ": the session is closed");
    if (party != party_)
      throw InputError(std::string(method) + " is for the " + (party == ALICE ? "garbler" : "evaluator") +
                       ", but this session's role is " + (party_ == ALICE ? "garbler" : "evaluator"));
    if (broken_)
      throw ProtocolError(std::string(method) + ": the session failed earlier and its stream is out of sync; "
                          "open a new connection and session");
  }
  static void check_classes(size_t c) {
    if (c == 0) throw InputError("need at least one class, got an empty array");
    if (c > (size_t{1} << 20)) throw InputError("too many classes: " + std::to_string(c) + " (at most 1048576)");
  }

  /// n values in windows of `window`, rescale shift: the checks the Python layer also makes, repeated so
  /// that the module is safe to call directly.
  static void check_values(size_t n, int64_t window, int shift, int in_bits = 64, int out_bits = 64) {
    if (in_bits < 3 || in_bits > 64 || out_bits < in_bits || out_bits > 64)
      throw InputError("register widths must satisfy 3 <= in_bits <= out_bits <= 64, got " +
                       std::to_string(in_bits) + " and " + std::to_string(out_bits));
    if (shift > in_bits - 2)
      throw InputError("shift " + std::to_string(shift) + " does not fit a " + std::to_string(in_bits) + "-bit value");
    if (n == 0) throw InputError("need at least one value, got an empty array");
    if (n > kMaxValues) throw InputError("too many values: " + std::to_string(n) + " (at most " +
                                         std::to_string(kMaxValues) + " per call)");
    if (window < 1) throw InputError("window must be at least 1, got " + std::to_string(window));
    if (n % static_cast<uint64_t>(window) != 0)
      throw InputError("window " + std::to_string(window) + " does not divide the number of values " +
                       std::to_string(n));
    if (shift < 0 || shift > capc_programs::kMaxShift)
      throw InputError("shift must be in 0.." + std::to_string(capc_programs::kMaxShift) + ", got " +
                       std::to_string(shift));
  }
  static std::vector<QueryParam> relu_params(int shift, int in_bits, int out_bits) {
    return {{"shift", static_cast<uint32_t>(shift)}, {"in_bits", static_cast<uint32_t>(in_bits)},
            {"out_bits", static_cast<uint32_t>(out_bits)}};
  }
  static std::vector<QueryParam> pool_params(size_t window, int shift, bool relu_after, int in_bits,
                                             int out_bits) {
    return {{"window", static_cast<uint32_t>(window)}, {"shift", static_cast<uint32_t>(shift)},
            {"relu_after", relu_after ? 1u : 0u}, {"in_bits", static_cast<uint32_t>(in_bits)},
            {"out_bits", static_cast<uint32_t>(out_bits)}};
  }

  void run(uint32_t op, size_t classes, const std::function<void()>& circuit) {
    run(op, classes, "classes", {}, circuit);
  }

  void run(uint32_t op, size_t size, const char* unit, const std::vector<QueryParam>& params,
           const std::function<void()>& circuit) {
    try {
      py::gil_scoped_release nogil;
      if (!party_obj_) {
        block sid = handshake(*io_, party_, kProgSession, 0);
        party_obj_ = make_party(party_, *io_, sid);
        party_obj_->setup();  // base OTs and Delta, once per session
      }
      const auto sz = static_cast<uint32_t>(size);
      send_query_header(*io_, op, sz, seq_, params);
      if (party_ == ALICE) {
        io_->flush();
        check_query_header(*io_, op, sz, seq_, op_name, unit, params);
      } else {
        // The evaluator's header leaves with its OT-extension message; the garbler's is checked before
        // anything else of this query is read.
        io_->before_next_recv([&] { check_query_header(*io_, op, sz, seq_, op_name, unit, params); });
      }
      ScopedBackend scope(party_obj_.get());
      circuit();
      io_->run_pending_check();
      io_->flush();
      io_->give_back_read_ahead();
      ++seq_;
    } catch (...) {
      broken_ = true;
      if (io_) io_->clear_pending_check();
      throw;
    }
  }

  int party_ = 0;
  std::unique_ptr<PyIO> io_;
  std::unique_ptr<SemiHonestParty> party_obj_;
  uint64_t seq_ = 0;
  bool broken_ = false;
  uint64_t closed_sent_ = 0, closed_received_ = 0, closed_and_gates_ = 0;
};

}  // namespace

PYBIND11_MODULE(_engine, m) {
  m.doc() = "capc's garbled-circuit engine: argmax_share, noisy_argmax, relu_share and maxpool_share over a "
            "Python byte stream";
  // Engine errors become the Python classes of capc.gc.errors (looked up when first needed).
  py::register_exception_translator([](std::exception_ptr p) {
    auto raise = [](const char* cls, const char* what) {
      py::object c = py::module_::import("capc.gc.errors").attr(cls);
      PyErr_SetString(c.ptr(), what);
    };
    try {
      if (p) std::rethrow_exception(p);
    } catch (const InputError& e) {
      raise("GcInputError", e.what());
    } catch (const NetError& e) {
      raise("GcNetworkError", e.what());
    } catch (const ProtocolError& e) {
      raise("GcProtocolError", e.what());
    } catch (const GcError& e) {
      raise("GcError", e.what());
    }
  });
  py::class_<Session>(m, "Session")
      .def(py::init<py::object, const std::string&>(), py::arg("io"), py::arg("role"))
      .def("argmax_share_evaluator", &Session::argmax_share_evaluator, py::arg("a"))
      .def("argmax_share_garbler", &Session::argmax_share_garbler, py::arg("b"), py::arg("m"))
      .def("noisy_argmax_evaluator", &Session::noisy_argmax_evaluator, py::arg("W"))
      .def("noisy_argmax_garbler", &Session::noisy_argmax_garbler, py::arg("M"), py::arg("eta_G"), py::arg("eta_T"),
           py::arg("threshold"))
      .def("relu_share_evaluator", &Session::relu_share_evaluator, py::arg("a"), py::arg("shift") = 0,
           py::arg("in_bits") = 64, py::arg("out_bits") = 64)
      .def("relu_share_garbler", &Session::relu_share_garbler, py::arg("b"), py::arg("m"), py::arg("shift") = 0,
           py::arg("in_bits") = 64, py::arg("out_bits") = 64)
      .def("maxpool_share_evaluator", &Session::maxpool_share_evaluator, py::arg("a"), py::arg("window"),
           py::arg("shift") = 0, py::arg("relu_after") = false, py::arg("in_bits") = 64, py::arg("out_bits") = 64)
      .def("maxpool_share_garbler", &Session::maxpool_share_garbler, py::arg("b"), py::arg("m"), py::arg("window"),
           py::arg("shift") = 0, py::arg("relu_after") = false, py::arg("in_bits") = 64, py::arg("out_bits") = 64)
      .def_property_readonly("bytes_sent", &Session::bytes_sent)
      .def_property_readonly("bytes_received", &Session::bytes_received)
      .def_property_readonly("queries", &Session::queries)
      .def_property_readonly("and_gates", &Session::and_gates)
      .def_property_readonly("broken", &Session::broken)
      .def("close", &Session::close);
  m.def("aesni_enabled", &aesni_enabled, "True when the AES-NI code path is in use");
  m.def("aes_path", &aes_path, "The AES code path in use: VAES-512, VAES-256, AES-NI or OpenSSL");
  m.attr("protocol_version") = kProtocolVersion;
}
