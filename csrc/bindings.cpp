// The only pybind11 file. Python (lowbit/ops.py) validates tensors and passes raw data
// pointers as integers; here each call releases the GIL, runs the C API and turns a failure
// status into a Python exception carrying lowbit_last_error(). No torch anywhere in C++.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "lowbit/lowbit.h"
#ifdef LOWBIT_WITH_CUDA
#include "lowbit/lowbit_cuda.h"
#endif

namespace py = pybind11;

namespace {

template <class T>
T *ptr(std::uintptr_t p) { return reinterpret_cast<T *>(p); }

void check(lowbit_status st) {
  if (st == LOWBIT_OK) return;
  const std::string msg = std::string("lowbit: ") + lowbit_last_error();
  if (st == LOWBIT_ERR_UNSUPPORTED || st == LOWBIT_ERR_CUDA) throw std::runtime_error(msg);
  throw py::value_error(msg);
}

lowbit_weight make_weight(int scheme, int64_t N, int64_t K, int64_t group_size, std::uintptr_t qweight,
                          std::uintptr_t scales, std::uintptr_t zeros, std::uintptr_t bias) {
  return lowbit_weight{static_cast<lowbit_scheme>(scheme), N, K, group_size, ptr<const uint8_t>(qweight),
                       ptr<const uint16_t>(scales), ptr<const uint8_t>(zeros), ptr<const float>(bias), nullptr};
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "lowbit's compiled core (torch-free); use the lowbit package, not this module.";
  m.attr("FORMAT_VERSION") = LOWBIT_FORMAT_VERSION;
  m.def("version", &lowbit_version);
  m.def("scheme_name", [](int s) {
    const char *n = lowbit_scheme_name(static_cast<lowbit_scheme>(s));
    if (!n) throw py::value_error("lowbit: unknown scheme id " + std::to_string(s));
    return std::string(n);
  });
  m.def("weight_bits", [](int s) { return lowbit_weight_bits(static_cast<lowbit_scheme>(s)); });
  m.def("act_bits", [](int s) { return lowbit_act_bits(static_cast<lowbit_scheme>(s)); });
  m.def("packed_row_bytes", [](int s, int64_t K) { return lowbit_packed_row_bytes(static_cast<lowbit_scheme>(s), K); });

  m.def("pack", [](int s, std::uintptr_t codes, int64_t N, int64_t K, std::uintptr_t out, int64_t out_bytes) {
    lowbit_status st;
    {
      py::gil_scoped_release nogil;
      st = lowbit_pack(static_cast<lowbit_scheme>(s), ptr<const uint8_t>(codes), N, K, ptr<uint8_t>(out), out_bytes);
    }
    check(st);
  });
  m.def("unpack", [](int s, std::uintptr_t packed, int64_t N, int64_t K, std::uintptr_t codes, int64_t codes_bytes) {
    lowbit_status st;
    {
      py::gil_scoped_release nogil;
      st = lowbit_unpack(static_cast<lowbit_scheme>(s), ptr<const uint8_t>(packed), N, K, ptr<uint8_t>(codes), codes_bytes);
    }
    check(st);
  });
  m.def("quantize_act", [](std::uintptr_t x, int dtype, int64_t M, int64_t K, int bits, std::uintptr_t q, std::uintptr_t scale) {
    lowbit_status st;
    {
      py::gil_scoped_release nogil;
      st = lowbit_quantize_act(ptr<const void>(x), static_cast<lowbit_dtype>(dtype), M, K, bits, ptr<int8_t>(q), ptr<float>(scale));
    }
    check(st);
  });
  m.def("cpu_layout_bytes", [](int s, int64_t N, int64_t K, int64_t gs) {
    const lowbit_weight w = make_weight(s, N, K, gs, 0, 0, 0, 0);
    return lowbit_cpu_layout_bytes(&w);
  });
  m.def("cpu_layout_used", [](int s) { return lowbit_cpu_layout_used(static_cast<lowbit_scheme>(s)) != 0; });
  m.def("prepack_cpu", [](int s, int64_t N, int64_t K, int64_t gs, std::uintptr_t qweight, std::uintptr_t scales,
                          std::uintptr_t zeros, std::uintptr_t out, int64_t out_bytes) {
    const lowbit_weight w = make_weight(s, N, K, gs, qweight, scales, zeros, 0);
    lowbit_status st;
    {
      py::gil_scoped_release nogil;
      st = lowbit_prepack_cpu(&w, ptr<uint8_t>(out), out_bytes);
    }
    check(st);
  });
  m.def("linear", [](int s, int64_t N, int64_t K, int64_t gs, std::uintptr_t qweight, std::uintptr_t scales,
                     std::uintptr_t zeros, std::uintptr_t bias, std::uintptr_t x, int x_dtype, int64_t M,
                     std::uintptr_t y, int y_dtype, std::uintptr_t cpu_layout) {
    lowbit_weight w = make_weight(s, N, K, gs, qweight, scales, zeros, bias);
    w.cpu_layout = ptr<const uint8_t>(cpu_layout);
    lowbit_status st;
    {
      py::gil_scoped_release nogil;
      st = lowbit_linear(&w, ptr<const void>(x), static_cast<lowbit_dtype>(x_dtype), M, ptr<void>(y), static_cast<lowbit_dtype>(y_dtype));
    }
    check(st);
  });
  m.def("linear_q", [](int s, int64_t N, int64_t K, int64_t gs, std::uintptr_t qweight, std::uintptr_t scales,
                       std::uintptr_t bias, std::uintptr_t q, std::uintptr_t scale, int64_t M, std::uintptr_t y,
                       int y_dtype) {
    const lowbit_weight w = make_weight(s, N, K, gs, qweight, scales, 0, bias);
    lowbit_status st;
    {
      py::gil_scoped_release nogil;
      st = lowbit_linear_q(&w, ptr<const int8_t>(q), ptr<const float>(scale), M, ptr<void>(y), static_cast<lowbit_dtype>(y_dtype));
    }
    check(st);
  });

  m.def("linear_static", [](int s, int64_t N, int64_t K, int64_t gs, std::uintptr_t qweight, std::uintptr_t scales,
                            std::uintptr_t bias, std::uintptr_t x, int x_dtype, int64_t M, std::uintptr_t act_scale,
                            std::uintptr_t act_zero, std::uintptr_t cluster_end, int64_t C, int abits,
                            std::uintptr_t y, int y_dtype, std::uintptr_t cpu_layout) {
    lowbit_weight w = make_weight(s, N, K, gs, qweight, scales, 0, bias);
    w.cpu_layout = ptr<const uint8_t>(cpu_layout);
    lowbit_status st;
    {
      py::gil_scoped_release nogil;
      st = lowbit_linear_static(&w, ptr<const void>(x), static_cast<lowbit_dtype>(x_dtype), M,
                                ptr<const float>(act_scale), ptr<const int32_t>(act_zero),
                                ptr<const int32_t>(cluster_end), C, abits, ptr<void>(y), static_cast<lowbit_dtype>(y_dtype));
    }
    check(st);
  });

  m.def("cpu_isa", &lowbit_cpu_isa);
  m.def("cpu_isa_supported", &lowbit_cpu_isa_supported);
  m.def("set_cpu_isa", [](const std::string &isa) { check(lowbit_set_cpu_isa(isa.c_str())); });
  m.def("set_num_threads", &lowbit_set_num_threads);
  m.def("get_num_threads", &lowbit_get_num_threads);
  m.def("use_openmp_runtime", [](py::object path) {
    if (path.is_none()) return lowbit_use_openmp_runtime(nullptr);
    const std::string p = path.cast<std::string>();
    return lowbit_use_openmp_runtime(p.c_str());
  });

#ifdef LOWBIT_WITH_CUDA
  m.attr("CUDA_COMPILED") = true;
  // Every CUDA function takes the stream (torch.cuda.current_stream().cuda_stream) last.
  m.def("cuda_linear", [](int s, int64_t N, int64_t K, int64_t gs, std::uintptr_t qweight, std::uintptr_t scales,
                          std::uintptr_t zeros, std::uintptr_t bias, std::uintptr_t x, int x_dtype, int64_t M,
                          std::uintptr_t y, int y_dtype, std::uintptr_t stream, bool reference) {
    const lowbit_weight w = make_weight(s, N, K, gs, qweight, scales, zeros, bias);
    lowbit_status st;
    {
      py::gil_scoped_release nogil;
      st = (reference ? lowbit_cuda_reference_linear : lowbit_cuda_linear)(
          &w, ptr<const void>(x), static_cast<lowbit_dtype>(x_dtype), M, ptr<void>(y),
          static_cast<lowbit_dtype>(y_dtype), ptr<void>(stream));
    }
    check(st);
  });
  m.def("cuda_quantize_act", [](std::uintptr_t x, int x_dtype, int64_t M, int64_t K, int bits, std::uintptr_t q,
                                int64_t ldq, std::uintptr_t scale, std::uintptr_t stream) {
    check(lowbit_cuda_quantize_act(ptr<const void>(x), static_cast<lowbit_dtype>(x_dtype), M, K, bits, ptr<int8_t>(q),
                                   ldq, ptr<float>(scale), ptr<void>(stream)));
  });
  m.def("cuda_dequantize", [](int s, int64_t N, int64_t K, int64_t gs, std::uintptr_t qweight, std::uintptr_t scales,
                              std::uintptr_t zeros, std::uintptr_t out, int out_dtype, bool int8, std::uintptr_t stream) {
    const lowbit_weight w = make_weight(s, N, K, gs, qweight, scales, zeros, 0);
    check(lowbit_cuda_dequantize(&w, ptr<void>(out), static_cast<lowbit_dtype>(out_dtype), int8, ptr<void>(stream)));
  });
  m.def("cuda_scale_int32", [](std::uintptr_t acc, int64_t M, int64_t N, std::uintptr_t wscale, std::uintptr_t ascale,
                               std::uintptr_t bias, std::uintptr_t y, int y_dtype, std::uintptr_t stream) {
    check(lowbit_cuda_scale_int32(ptr<const int32_t>(acc), M, N, ptr<const uint16_t>(wscale), ptr<const float>(ascale),
                                  ptr<const float>(bias), ptr<void>(y), static_cast<lowbit_dtype>(y_dtype),
                                  ptr<void>(stream)));
  });
#else
  m.attr("CUDA_COMPILED") = false;
#endif
}
