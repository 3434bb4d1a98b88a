// Dense 2-D convolutions (NHWC activations, HWIO filters) and their two gradients as oneDNN primitives, exposed to
// XLA:CPU as FFI custom calls. Built and loaded by cnn_jax/ops/onednn.py; the Python side owns the shapes.
//
// Each call reads the logical shapes from its buffers, looks up (or creates) the primitive for them, and runs it
// on the calling thread's OpenMP team. Activations stay in the plain NHWC layout XLA keeps them in (oneDNN's
// channels-last kernels take it directly, as PyTorch's channels_last does); filters are reordered between HWIO and
// the blocked layout the chosen kernel wants, which is cheap at filter sizes.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <unordered_map>

#include "dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

enum class Kind { kForward = 0, kBackwardData = 1, kBackwardWeights = 2 };

struct Plan {
  dnnl::primitive primitive;
  memory::desc src, weights, dst;  // what the primitive reads/writes (weights possibly blocked)
  memory::desc user_weights;       // HWIO
  bool reorder_weights = false;
  dnnl::reorder weights_reorder;  // HWIO -> blocked (forward, backward data) or blocked -> HWIO (backward weights)
  size_t scratchpad_bytes = 0;
};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

struct Geometry {
  memory::dim n, c, h, w, o, kh, kw, oh, ow;
  memory::dims strides, dilation, pad_lo, pad_hi;
  memory::data_type dtype;
};

std::string KeyOf(Kind kind, const Geometry& g) {
  std::ostringstream key;
  key << static_cast<int>(kind) << ':' << static_cast<int>(g.dtype);
  for (memory::dim d : {g.n, g.c, g.h, g.w, g.o, g.kh, g.kw, g.oh, g.ow}) key << ',' << d;
  for (const memory::dims* v : {&g.strides, &g.dilation, &g.pad_lo, &g.pad_hi})
    for (memory::dim d : *v) key << ';' << d;
  return key.str();
}

std::shared_ptr<Plan> MakePlan(Kind kind, const Geometry& g) {
  dnnl::engine& engine = Engine();
  memory::dims src_dims = {g.n, g.c, g.h, g.w}, wei_dims = {g.o, g.c, g.kh, g.kw}, dst_dims = {g.n, g.o, g.oh, g.ow};
  memory::desc src(src_dims, g.dtype, memory::format_tag::nhwc);
  memory::desc dst(dst_dims, g.dtype, memory::format_tag::nhwc);
  memory::desc wei_any(wei_dims, g.dtype, memory::format_tag::any);
  auto plan = std::make_shared<Plan>();
  plan->user_weights = memory::desc(wei_dims, g.dtype, memory::format_tag::hwio);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // per call: primitives may run on several threads at once
  dnnl::convolution_forward::primitive_desc forward(engine, dnnl::prop_kind::forward_training,
                                                    dnnl::algorithm::convolution_direct, src, wei_any, dst,
                                                    g.strides, g.dilation, g.pad_lo, g.pad_hi, attr);
  memory::desc weights;
  if (kind == Kind::kForward) {
    weights = forward.weights_desc();
    plan->primitive = dnnl::convolution_forward(forward);
    plan->scratchpad_bytes = forward.scratchpad_desc().get_size();
  } else if (kind == Kind::kBackwardData) {
    dnnl::convolution_backward_data::primitive_desc pd(engine, dnnl::algorithm::convolution_direct, src, wei_any,
                                                       dst, g.strides, g.dilation, g.pad_lo, g.pad_hi, forward,
                                                       attr);
    weights = pd.weights_desc();
    plan->primitive = dnnl::convolution_backward_data(pd);
    plan->scratchpad_bytes = pd.scratchpad_desc().get_size();
  } else {
    dnnl::convolution_backward_weights::primitive_desc pd(engine, dnnl::algorithm::convolution_direct, src,
                                                          wei_any, dst, g.strides, g.dilation, g.pad_lo,
                                                          g.pad_hi, forward, attr);
    weights = pd.diff_weights_desc();
    plan->primitive = dnnl::convolution_backward_weights(pd);
    plan->scratchpad_bytes = pd.scratchpad_desc().get_size();
  }
  plan->src = src;
  plan->dst = dst;
  plan->weights = weights;
  plan->reorder_weights = weights != plan->user_weights;
  if (plan->reorder_weights) {
    plan->weights_reorder = kind == Kind::kBackwardWeights
                                ? dnnl::reorder(dnnl::reorder::primitive_desc(engine, weights, engine,
                                                                              plan->user_weights))
                                : dnnl::reorder(dnnl::reorder::primitive_desc(engine, plan->user_weights, engine,
                                                                              weights));
  }
  return plan;
}

std::shared_ptr<Plan> GetPlan(Kind kind, const Geometry& g) {
  static std::mutex mutex;
  static auto* plans = new std::unordered_map<std::string, std::shared_ptr<Plan>>();
  std::string key = KeyOf(kind, g);
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = plans->find(key);
    if (it != plans->end()) return it->second;
  }
  std::shared_ptr<Plan> plan = MakePlan(kind, g);
  std::lock_guard<std::mutex> lock(mutex);
  return plans->emplace(key, plan).first->second;
}

struct Buffer {  // 64-byte aligned scratch memory (tcmalloc keeps freed blocks, so this is cheap per call)
  explicit Buffer(size_t bytes) : data(bytes ? std::aligned_alloc(64, (bytes + 63) / 64 * 64) : nullptr) {}
  ~Buffer() { std::free(data); }
  void* data;
};

ffi::Error Run(Kind kind, ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out,
               ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding,
               ffi::Span<const int64_t> dilation) {
  // Operands: forward (x, w) -> y; backward data (dy, w) -> dx; backward weights (x, dy) -> dw.
  ffi::AnyBuffer::Dimensions x = kind == Kind::kBackwardData ? out->dimensions() : a.dimensions();
  ffi::AnyBuffer::Dimensions w = kind == Kind::kBackwardWeights ? out->dimensions() : b.dimensions();
  ffi::AnyBuffer::Dimensions y = kind == Kind::kForward ? out->dimensions() : kind == Kind::kBackwardData
                                                                                 ? a.dimensions()
                                                                                 : b.dimensions();
  if (x.size() != 4 || w.size() != 4 || y.size() != 4 || strides.size() != 2 || padding.size() != 4 ||
      dilation.size() != 2) {
    return ffi::Error::InvalidArgument("onednn conv: expected NHWC/HWIO operands and 2-D window attributes");
  }
  Geometry g;
  switch (a.element_type()) {
    case ffi::DataType::F32: g.dtype = memory::data_type::f32; break;
    case ffi::DataType::BF16: g.dtype = memory::data_type::bf16; break;
    default: return ffi::Error::InvalidArgument("onednn conv: only float32 and bfloat16 are supported");
  }
  g.n = x[0]; g.h = x[1]; g.w = x[2]; g.c = x[3];
  g.kh = w[0]; g.kw = w[1]; g.o = w[3];
  g.oh = y[1]; g.ow = y[2];
  if (w[2] != g.c || y[3] != g.o || y[0] != g.n) {
    return ffi::Error::InvalidArgument("onednn conv: operand shapes do not agree");
  }
  g.strides = {strides[0], strides[1]};
  g.dilation = {dilation[0] - 1, dilation[1] - 1};  // oneDNN counts the gaps between taps
  g.pad_lo = {padding[0], padding[2]};
  g.pad_hi = {padding[1], padding[3]};
  try {
    std::shared_ptr<Plan> plan = GetPlan(kind, g);
    dnnl::engine& engine = Engine();
    dnnl::stream stream(engine);
    void* weights_ptr = kind == Kind::kBackwardWeights ? out->untyped_data() : b.untyped_data();
    memory user_weights(plan->user_weights, engine, weights_ptr);
    Buffer blocked(plan->reorder_weights ? plan->weights.get_size() : 0);
    memory weights = plan->reorder_weights ? memory(plan->weights, engine, blocked.data) : user_weights;
    if (plan->reorder_weights && kind != Kind::kBackwardWeights) {
      plan->weights_reorder.execute(stream, user_weights, weights);
    }
    Buffer scratch(plan->scratchpad_bytes);
    memory scratchpad(memory::desc({static_cast<memory::dim>(plan->scratchpad_bytes)}, memory::data_type::u8,
                                   memory::format_tag::a),
                      engine, scratch.data);
    std::unordered_map<int, memory> args = {{DNNL_ARG_SCRATCHPAD, scratchpad}};
    if (kind == Kind::kForward) {
      args.insert({{DNNL_ARG_SRC, memory(plan->src, engine, a.untyped_data())},
                   {DNNL_ARG_WEIGHTS, weights},
                   {DNNL_ARG_DST, memory(plan->dst, engine, out->untyped_data())}});
    } else if (kind == Kind::kBackwardData) {
      args.insert({{DNNL_ARG_DIFF_DST, memory(plan->dst, engine, a.untyped_data())},
                   {DNNL_ARG_WEIGHTS, weights},
                   {DNNL_ARG_DIFF_SRC, memory(plan->src, engine, out->untyped_data())}});
    } else {
      args.insert({{DNNL_ARG_SRC, memory(plan->src, engine, a.untyped_data())},
                   {DNNL_ARG_DIFF_DST, memory(plan->dst, engine, b.untyped_data())},
                   {DNNL_ARG_DIFF_WEIGHTS, weights}});
    }
    plan->primitive.execute(stream, args);
    if (plan->reorder_weights && kind == Kind::kBackwardWeights) {
      plan->weights_reorder.execute(stream, weights, user_weights);
    }
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("onednn conv: ") + e.what());
  }
  return ffi::Error::Success();
}

#define CNN_JAX_CONV_BINDING                                          \
  ffi::Ffi::Bind()                                                    \
      .Arg<ffi::AnyBuffer>()                                          \
      .Arg<ffi::AnyBuffer>()                                          \
      .Ret<ffi::AnyBuffer>()                                          \
      .Attr<ffi::Span<const int64_t>>("window_strides")               \
      .Attr<ffi::Span<const int64_t>>("padding")                      \
      .Attr<ffi::Span<const int64_t>>("rhs_dilation")

ffi::Error Forward(ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> y, ffi::Span<const int64_t> s,
                   ffi::Span<const int64_t> p, ffi::Span<const int64_t> d) {
  return Run(Kind::kForward, x, w, y, s, p, d);
}
ffi::Error BackwardData(ffi::AnyBuffer dy, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> dx,
                        ffi::Span<const int64_t> s, ffi::Span<const int64_t> p, ffi::Span<const int64_t> d) {
  return Run(Kind::kBackwardData, dy, w, dx, s, p, d);
}
ffi::Error BackwardWeights(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dw,
                           ffi::Span<const int64_t> s, ffi::Span<const int64_t> p, ffi::Span<const int64_t> d) {
  return Run(Kind::kBackwardWeights, x, dy, dw, s, p, d);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(CnnJaxConvForward, Forward, CNN_JAX_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(CnnJaxConvBackwardData, BackwardData, CNN_JAX_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(CnnJaxConvBackwardWeights, BackwardWeights, CNN_JAX_CONV_BINDING);
