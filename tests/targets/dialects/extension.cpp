// The ops of extension.py / extension_schema.py, defined in C++ (TORCH_LIBRARY) with CPU kernels.
#include <torch/extension.h>

at::Tensor scale2(const at::Tensor& x) { return x * 2; }
at::Tensor rowsum(const at::Tensor& x) { return x.sum(-1, true); }
at::Tensor halve(const at::Tensor& x) { return (x / 2).to(at::kDouble); }
at::Tensor colmajor(const at::Tensor& x) {
  // a column-major result, as a BLAS kernel writes it
  at::Tensor out = at::empty({x.size(1), x.size(0)}, x.options()).t();
  out.copy_(x + 1);
  return out;
}
void store(const at::Tensor& k, const at::Tensor& cache) { cache.narrow(0, 0, k.size(0)).copy_(k); }
at::Tensor twice(const at::Tensor& x, const at::Tensor& scratch) { return x * 2; }
at::Tensor flat(const at::Tensor& x) { return x.is_contiguous() ? x.view(-1) : x.reshape(-1).clone(); }

TORCH_LIBRARY(pcgd_ext, m) {
  m.def("scale2(Tensor x) -> Tensor");
  m.def("rowsum(Tensor x) -> Tensor");
  m.def("halve(Tensor x) -> Tensor");
  m.def("colmajor(Tensor x) -> Tensor");
  m.def("store(Tensor k, Tensor cache) -> ()");  // writes cache, the schema says nothing
  m.def("twice(Tensor x, Tensor(a!) scratch) -> Tensor");  // says it writes scratch; it never does
  m.def("flat(Tensor x) -> Tensor");  // returns a view of x when x is contiguous
}

TORCH_LIBRARY_IMPL(pcgd_ext, CPU, m) {
  m.impl("scale2", &scale2);
  m.impl("rowsum", &rowsum);
  m.impl("halve", &halve);
  m.impl("colmajor", &colmajor);
  m.impl("store", &store);
  m.impl("twice", &twice);
  m.impl("flat", &flat);
}
