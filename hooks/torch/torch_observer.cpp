// The whole-model count: the aten ops PyTorch's FlopCounterMode counts, with its
// formulas, at its level.
//
// C++ because libtorch's dispatcher API has no C form; this is the project's one C++
// file. It is built per torch version (scripts/build-observer) and dlopen'd by
// libnaflops.so only into a process whose torch is that version (torch_loader.c).
//
// Why one file of ~940 lines: it is compiled alone, per torch version, by
// build-observer, by `make compat` against eleven releases' headers, and by the
// pip package from its shipped sources; one translation unit keeps those three
// builds one command each. Its parts, in order: the aten registry and formulas,
// NATTEN's dispatcher ops, the kernels, the tensor reader (tensor_meta.h).
//
// How it sees them. A kernel at the BackendSelect dispatch key for each overload of
// the ops in FlopCounterMode's registry (and of a few other ops that call those ops
// from inside their own kernels): BackendSelect is in every thread's dispatch key set
// and comes after autograd, autocast, functionalization and the Python key, just
// before the backend's kernel, and no aten op but the factory functions has a kernel
// there. The kernel reads the operands from its boxed stack, hands the call on to the
// next key, and counts it once it returns. Every other op runs exactly as without
// the observer: no RecordFunction callback, no cost.
//
// Which calls count. FlopCounterMode is a TorchDispatchMode: it sees ops after
// autograd and after CompositeImplicitAutograd decompositions, counts the ones in its
// registry, and never sees what runs inside an op it let through. A BackendSelect
// kernel sees the same: a CompositeImplicitAutograd op (linear, matmul, conv2d)
// decomposes above it into ops that reach it; what a registry op runs inside its own
// kernel (convolution -> _convolution) is left alone, per thread. Nothing is counted
// while a NATTEN op runs on the thread, or inside a backward node that a NATTEN call
// created (NATTEN's rule counts those), or on fake/meta tensors (tracing, not work).
// The pass: an op run while the autograd engine evaluates a node is backward, or
// recompute (activation checkpointing) when grad mode is on there.
#include "tensor_meta.h"
#include "torch_observer.h"

#include <ATen/PythonTorchFunctionTLS.h>
#include <torch/csrc/PyInterpreter.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/dynamo/compiled_autograd.h>
#include <torch/version.h>

#include <ATen/SequenceNumber.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/record_function.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/function.h>
#include <torch/library.h>
#include <ATen/ops/addmm_ops.h>
#include <ATen/ops/baddbmm_ops.h>
#include <ATen/ops/bmm_ops.h>
#include <ATen/ops/mm_ops.h>

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <memory>
#include <exception>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>
#include <unordered_map>

namespace {

using u128 = unsigned __int128;

const nf_observer_host *host;
std::atomic<bool> broken{false};

void give_up(const char *what) {
    // One line, then the observer stays registered but does nothing.
    if (!broken.exchange(true) && host != nullptr) {
        char line[256];
        snprintf(line, sizeof line, "the whole-model count failed (%s); it is off from here on", what);
        host->say(line);
    }
}

// ------------------------------------------------------------------ the registry

enum Formula : uint8_t {
    F_NONE = 0, F_MM, F_ADDMM, F_BMM, F_BADDBMM, F_SCALED_MM, F_CONV, F_CONV_BACKWARD,
    F_SDPA, F_SDPA_BACKWARD, F_FLASH, F_EFFICIENT, F_FLASH_BACKWARD, F_EFFICIENT_BACKWARD,
    F_COUNT
};

// torch/utils/flop_counter.py's flop_registry, by op name (every overload).
const struct { const char *name; Formula f; } registry[] = {
    {"aten::mm", F_MM},
    {"aten::addmm", F_ADDMM},
    {"aten::bmm", F_BMM},
    {"aten::baddbmm", F_BADDBMM},
    {"aten::_scaled_mm", F_SCALED_MM},
    {"aten::convolution", F_CONV},
    {"aten::_convolution", F_CONV},
    {"aten::convolution_backward", F_CONV_BACKWARD},
    {"aten::_scaled_dot_product_efficient_attention", F_SDPA},
    {"aten::_scaled_dot_product_flash_attention", F_SDPA},
    {"aten::_scaled_dot_product_cudnn_attention", F_SDPA},
    {"aten::_scaled_dot_product_efficient_attention_backward", F_SDPA_BACKWARD},
    {"aten::_scaled_dot_product_flash_attention_backward", F_SDPA_BACKWARD},
    {"aten::_scaled_dot_product_cudnn_attention_backward", F_SDPA_BACKWARD},
    {"aten::_flash_attention_forward", F_FLASH},
    {"aten::_efficient_attention_forward", F_EFFICIENT},
    {"aten::_flash_attention_backward", F_FLASH_BACKWARD},
    {"aten::_efficient_attention_backward", F_EFFICIENT_BACKWARD},
    // Not in the registry, but their kernels call ops that are through the
    // dispatcher: FlopCounterMode sees them whole (and counts 0), so they only open.
    {"aten::_trilinear", F_NONE},
    {"aten::_cdist_forward", F_NONE},
    {"aten::_cdist_backward", F_NONE},
    {"aten::_native_multi_head_attention", F_NONE},
    {"aten::_transformer_encoder_layer_fwd", F_NONE},
};

// ------------------------------------------------------------------ reading inputs

struct Dims {
    int rank = 0;
    int64_t d[16] = {0};
    int64_t operator[](int i) const { return i < rank ? d[i] : 0; }
};

// A defined, real tensor's shape. Fake and functional tensors (torch.compile and
// export tracing) and meta tensors do no work: they make the whole call uncounted.
enum Read { READ_OK, READ_ABSENT, READ_NOT_REAL };

Read dims_of(const at::Tensor &x, Dims &out) {
    if (!x.defined()) return READ_ABSENT;
    auto keys = x.key_set();
    if (x.is_meta() || keys.has(c10::DispatchKey::Python) ||
        keys.has(c10::DispatchKey::Functionalize))
        return READ_NOT_REAL;
    auto sizes = x.sizes();
    if (sizes.size() > 16) return READ_NOT_REAL;
    out.rank = static_cast<int>(sizes.size());
    for (int i = 0; i < out.rank; i++) out.d[i] = std::max<int64_t>(sizes[i], 0);
    return READ_OK;
}

Read dims_of(const c10::IValue &v, Dims &out, const at::Tensor **t = nullptr) {
    if (!v.isTensor()) return READ_ABSENT;
    const at::Tensor &x = v.toTensor();
    Read r = dims_of(x, out);
    if (r == READ_OK && t) *t = &x;
    return r;
}

u128 prod(const Dims &s, int from) {
    u128 p = 1;
    for (int i = from; i < s.rank; i++) p *= static_cast<u128>(s.d[i]);
    return p;
}

int64_t int_at(const c10::IValue &list, int i, int64_t dflt) {
    if (!list.isIntList()) return dflt;
    auto v = list.toIntList();
    if (v.empty()) return dflt;
    return v.get(static_cast<size_t>(i) < v.size() ? i : v.size() - 1);  // one value: all dims
}

u128 mm(u128 m, u128 n, u128 k) { return 2 * m * n * k; }

// FlopCounterMode's conv_flop_count.
u128 conv_count(const Dims &x, const Dims &w, const Dims &out, bool transposed) {
    const Dims &conv = transposed ? x : out;
    return prod(conv, 2) * prod(w, 2) * static_cast<u128>(x[0]) * static_cast<u128>(w[0]) *
           static_cast<u128>(w[1]) * 2;
}

Dims swap01(const Dims &s) {
    Dims t = s;
    if (t.rank >= 2) std::swap(t.d[0], t.d[1]);
    return t;
}

// The output shape of aten::convolution (N, C_out, spatial...).
Dims conv_output(const Dims &x, const Dims &w, c10::ArrayRef<const c10::IValue> in,
                 bool transposed) {
    Dims out;
    out.rank = x.rank;
    out.d[0] = x[0];
    int64_t groups = in.size() > 8 && in[8].isInt() ? in[8].toInt() : 1;
    out.d[1] = transposed ? w[1] * groups : w[0];
    for (int i = 2; i < x.rank; i++) {
        int j = i - 2;
        int64_t s = int_at(in[3], j, 1), p = int_at(in[4], j, 0), d = int_at(in[5], j, 1);
        int64_t k = w[i];
        if (transposed) {
            int64_t op = int_at(in[7], j, 0);
            out.d[i] = (x[i] - 1) * s - 2 * p + d * (k - 1) + op + 1;
        } else {
            out.d[i] = s > 0 ? (x[i] + 2 * p - d * (k - 1) - 1) / s + 1 : 0;
        }
        if (out.d[i] < 0) out.d[i] = 0;
    }
    return out;
}

u128 sdpa_count(const Dims &q, const Dims &k, const Dims &v) {
    u128 bh = static_cast<u128>(q[0]) * static_cast<u128>(q[1]);
    return mm(bh * q[2], k[2], q[3]) + mm(bh * q[2], v[3], k[2]);
}

u128 sdpa_backward_count(const Dims &q, const Dims &k, const Dims &v) {
    u128 bh = static_cast<u128>(q[0]) * static_cast<u128>(q[1]);
    u128 sq = q[2], sk = k[2], dq = q[3], dv = v[3];
    return mm(bh * sq, sk, dq) + mm(bh * sq, sk, dv) + mm(bh * sk, dv, sq) +
           mm(bh * sq, dq, sk) + mm(bh * dq, sk, sq);
}

// Sequence lengths from cumulative offsets: read on the CPU; on a GPU reading them
// would synchronise (and break graph capture), so every sequence is taken at its
// maximum length, FlopCounterMode's own rule for tensors it cannot read.
std::vector<int64_t> lengths(const c10::IValue &offsets, const c10::IValue &max_len) {
    std::vector<int64_t> out;
    if (!offsets.isTensor()) return out;
    const at::Tensor &t = offsets.toTensor();
    int64_t max = max_len.isInt() ? max_len.toInt() : 0;
    if (!t.defined() || t.dim() != 1 || t.numel() < 1) return out;
    bool readable = t.device().is_cpu() && t.is_contiguous() &&
                    !t.key_set().has(c10::DispatchKey::Python) &&
                    (t.scalar_type() == at::kInt || t.scalar_type() == at::kLong);
    for (int64_t i = 0; i + 1 < t.numel(); i++) {
        if (!readable) {
            out.push_back(max);
        } else if (t.scalar_type() == at::kInt) {
            const int32_t *p = t.const_data_ptr<int32_t>();
            out.push_back(p[i + 1] - p[i]);
        } else {
            const int64_t *p = t.const_data_ptr<int64_t>();
            out.push_back(p[i + 1] - p[i]);
        }
    }
    return out;
}

// Attention over packed sequences (the nested-tensor forms of _flash/_efficient).
// heads_at: where the head dim is in the packed shapes (1 for flash's [T, H, D], 2 for
// efficient's [1, T, H, D]).
u128 packed_count(const Dims &q, const Dims &k, const Dims &v, const c10::IValue &cq,
                  const c10::IValue &ck, const c10::IValue &mq, const c10::IValue &mk,
                  int heads_at, bool backward) {
    auto lq = lengths(cq, mq), lk = lengths(ck, mk);
    u128 total = 0;
    for (size_t i = 0; i < lq.size() && i < lk.size(); i++) {
        Dims a, b, c;
        a.rank = b.rank = c.rank = 4;
        a.d[0] = b.d[0] = c.d[0] = 1;
        a.d[1] = q[heads_at], a.d[2] = lq[i], a.d[3] = q[heads_at + 1];
        b.d[1] = k[heads_at], b.d[2] = lk[i], b.d[3] = k[heads_at + 1];
        c.d[1] = v[heads_at], c.d[2] = lk[i], c.d[3] = v[heads_at + 1];
        total += backward ? sdpa_backward_count(a, b, c) : sdpa_count(a, b, c);
    }
    return total;
}

const char *dtype_name(at::ScalarType t) {
    switch (t) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kFloat8_e4m3fn: return "float8_e4m3fn";
    case at::kFloat8_e5m2: return "float8_e5m2";
    case at::kInt: return "int32";
    case at::kLong: return "int64";
    case at::kShort: return "int16";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    case at::kComplexFloat: return "complex64";
    case at::kComplexDouble: return "complex128";
    default: return c10::toString(t);
    }
}

// The matrix products: 2-D operands for mm/addmm/_scaled_mm, 3-D for bmm/baddbmm.
bool matmul_flops(uint8_t f, const Dims &a, const Dims &b, u128 &flops) {
    if (f == F_BMM || f == F_BADDBMM) {
        if (a.rank != 3 || b.rank != 3) return false;
        flops = static_cast<u128>(a[0]) * mm(a[1], b[2], a[2]);
    } else {
        if (a.rank != 2 || b.rank != 2) return false;
        flops = mm(a[0], b[1], a[1]);
    }
    return true;
}

void fill(nf_aten_call &call, const Dims *s, int n, u128 flops) {
    call.nshapes = n > NF_ATEN_MAX_SHAPES ? NF_ATEN_MAX_SHAPES : n;
    for (int i = 0; i < call.nshapes; i++) {
        call.rank[i] = s[i].rank;
        for (int j = 0; j < s[i].rank && j < NF_ATEN_MAX_RANK; j++) call.shape[i][j] = s[i].d[j];
    }
    call.flops_hi = static_cast<uint64_t>(flops >> 64);
    call.flops_lo = static_cast<uint64_t>(flops);
}

// Reads the operands of a registry op and computes its FLOPs. False: not counted
// (an operand is fake, missing or not the shape the formula reads).
bool measure(uint8_t f, c10::ArrayRef<const c10::IValue> in, nf_aten_call &call,
             const at::Tensor *&first) {
    Dims s[4];
    int take[4] = {0, 1, 2, -1};  // which inputs are the operands
    switch (f) {
    case F_ADDMM: case F_BADDBMM: take[0] = 1, take[1] = 2, take[2] = -1; break;
    case F_MM: case F_BMM: case F_SCALED_MM: case F_CONV: take[2] = -1; break;
    case F_SDPA_BACKWARD: case F_FLASH_BACKWARD: case F_EFFICIENT_BACKWARD:
        take[0] = 1, take[1] = 2, take[2] = 3, take[3] = 0; break;
    default: break;
    }
    int n = 0;
    for (int i = 0; i < 4 && take[i] >= 0; i++, n++) {
        if (static_cast<size_t>(take[i]) >= in.size()) return false;
        if (dims_of(in[take[i]], s[i], i == 0 ? &first : nullptr) != READ_OK) return false;
    }
    u128 flops = 0;
    switch (f) {
    case F_MM: case F_ADDMM: case F_SCALED_MM: case F_BMM: case F_BADDBMM:
        if (!matmul_flops(f, s[0], s[1], flops)) return false;
        break;
    case F_CONV: {
        if (in.size() < 9 || s[0].rank < 3 || s[1].rank != s[0].rank) return false;
        bool transposed = in[6].isBool() && in[6].toBool();
        s[2] = conv_output(s[0], s[1], in, transposed);
        flops = conv_count(s[0], s[1], s[2], transposed);
        n = 3;  // input, weight, output
        break;
    }
    case F_CONV_BACKWARD: {
        // (grad_output, input, weight, bias_sizes, stride, padding, dilation,
        //  transposed, output_padding, groups, output_mask)
        if (in.size() < 11 || s[0].rank < 3) return false;
        const Dims &g = s[0], &x = s[1], &w = s[2];
        bool transposed = in[7].isBool() && in[7].toBool();
        bool mask0 = true, mask1 = true;
        if (in[10].isBoolList()) {
            auto m = in[10].toBoolList();
            mask0 = m.size() > 0 && m.get(0);
            mask1 = m.size() > 1 && m.get(1);
        }
        if (mask0) flops += conv_count(g, w, x, !transposed);
        if (mask1) {
            if (transposed) flops += conv_count(swap01(g), swap01(x), swap01(w), false);
            else flops += conv_count(swap01(x), swap01(g), swap01(w), false);
        }
        break;
    }
    case F_SDPA:
        if (s[0].rank != 4 || s[1].rank != 4 || s[2].rank != 4) return false;
        flops = sdpa_count(s[0], s[1], s[2]);
        break;
    case F_SDPA_BACKWARD:
        if (s[0].rank != 4 || s[1].rank != 4 || s[2].rank != 4) return false;
        flops = sdpa_backward_count(s[0], s[1], s[2]);
        n = 3;
        break;
    case F_FLASH: case F_EFFICIENT: case F_FLASH_BACKWARD: case F_EFFICIENT_BACKWARD: {
        // Offsets and max lengths follow the operands: flash (q, k, v, cum_q, cum_k,
        // max_q, max_k), efficient (q, k, v, bias, cu_q, cu_k, max_q, max_k); the
        // backward forms add grad_out first and out (and lse) before them.
        size_t at = f == F_FLASH ? 3 : f == F_EFFICIENT ? 4 : 6;
        if (in.size() < at + 4) return false;
        bool backward = f == F_FLASH_BACKWARD || f == F_EFFICIENT_BACKWARD;
        bool packed = in[at].isTensor() && in[at].toTensor().defined();
        if (packed) {
            int heads_at = (f == F_FLASH || f == F_FLASH_BACKWARD) ? 1 : 2;
            if (s[0].rank != heads_at + 2) return false;
            flops = packed_count(s[0], s[1], s[2], in[at], in[at + 1], in[at + 2], in[at + 3],
                                 heads_at, backward);
        } else {
            if (s[0].rank != 4 || s[1].rank != 4 || s[2].rank != 4) return false;
            flops = backward ? sdpa_backward_count(s[0], s[1], s[2]) : sdpa_count(s[0], s[1], s[2]);
        }
        n = 3;
        break;
    }
    default:
        return false;
    }
    fill(call, s, n, flops);
    return true;
}

// ------------------------------------------------------------------ NATTEN's nodes

// Autograd nodes created during a NATTEN call, as [lo, hi) ranges of sequence numbers
// per forward thread. Sequence numbers rise on each thread, so each list is sorted;
// it keeps the most recent ranges only (backward follows its forward closely).
struct Range { uint64_t lo, hi; };
constexpr size_t RANGES_KEPT = 1 << 16;
std::mutex ranges_lock;
std::unordered_map<uint64_t, std::deque<Range>> natten_ranges;
std::atomic<bool> any_ranges{false};
thread_local uint64_t natten_seq_start;
thread_local bool natten_entered;  // leave without enter: loaded during a NATTEN call

bool created_by_natten(uint64_t thread, uint64_t seq) {
    if (!any_ranges.load(std::memory_order_relaxed)) return false;
    std::lock_guard<std::mutex> g(ranges_lock);
    auto it = natten_ranges.find(thread);
    if (it == natten_ranges.end()) return false;
    const auto &d = it->second;
    auto pos = std::upper_bound(d.begin(), d.end(), seq,
                                [](uint64_t s, const Range &r) { return s < r.lo; });
    return pos != d.begin() && seq < std::prev(pos)->hi;
}

// ------------------------------------------------------------------ the kernel

// Registry ops open on this thread: what runs inside one is its own business.
thread_local int open_ops;

// ------------------------------------------------------------------ modules
//
// The module of a forward op is read from the Python stack (host->module_here). A
// backward op runs on the autograd engine, with no module on any stack: it belongs to
// the module whose forward created the node it runs in. So each counted forward op
// leaves a mark, per thread: the node it created (sequence number) and its module; a
// counted op that created no node (no grad, or inside an autograd Function's forward,
// such as a compiled region's) marks the next sequence number, where the nodes made
// after it begin. A node is then found by its own mark; else, for a Function's node
// (made just before its forward ran, whose first counted op marked seq + 1), by that;
// else by the last mark before it.
struct Mark {
    uint64_t seq;
    uint16_t module;
    bool node; // seq is the node this op created
};
struct Marks {
    std::mutex lock;
    std::deque<Mark> v;
};
constexpr size_t MARKS_KEPT = 1 << 16;
std::mutex marks_lock;
std::unordered_map<uint64_t, std::shared_ptr<Marks>> marks_by_thread;
thread_local std::shared_ptr<Marks> my_marks;

void mark(uint16_t module, bool node) {
    if (!my_marks) {
        auto m = std::make_shared<Marks>();
        std::lock_guard<std::mutex> g(marks_lock);
        marks_by_thread[at::RecordFunction::currentThreadId()] = m;
        my_marks = m;
    }
    uint64_t next = at::sequence_number::peek();
    uint64_t seq = node && next > 0 ? next - 1 : next;
    std::lock_guard<std::mutex> g(my_marks->lock);
    auto &v = my_marks->v;
    if (!v.empty()) {
        Mark &last = v.back();
        if (!node && last.module == module) return;
        if (last.seq == seq) {
            last = Mark{seq, module, node};
            return;
        }
        if (last.seq > seq) v.clear(); // numbers went back: a new thread with a reused id
    }
    v.push_back(Mark{seq, module, node});
    if (v.size() > MARKS_KEPT) v.pop_front();
}

uint16_t module_of_node(uint64_t thread, uint64_t seq) {
    std::shared_ptr<Marks> m;
    {
        std::lock_guard<std::mutex> g(marks_lock);
        auto it = marks_by_thread.find(thread);
        if (it == marks_by_thread.end()) return 0;
        m = it->second;
    }
    std::lock_guard<std::mutex> g(m->lock);
    const auto &v = m->v;
    auto after = std::upper_bound(v.begin(), v.end(), seq,
                                  [](uint64_t s, const Mark &k) { return s < k.seq; });
    if (after != v.begin() && std::prev(after)->seq == seq) return std::prev(after)->module;
    if (after != v.end() && after->seq == seq + 1 && !after->node) return after->module;
    return after != v.begin() ? std::prev(after)->module : 0;
}

// The call's module: a forward op's (or a recomputed one's) from the stack, marked for
// its node; a backward op's from its node's mark.
void module_for(uint16_t &module, const torch::autograd::Node *node, bool recompute, bool made_node) {
    if (host->module_here == nullptr) return;
    if (node != nullptr && !recompute) {
        module = module_of_node(node->thread_id(), node->sequence_nr());
        return;
    }
    module = host->module_here();
    mark(module, made_node);
}

bool needs_grad(const at::Tensor &t) { return t.defined() && t.requires_grad(); }

// The call's pass, or false when it is not counted: inside a backward node that a
// NATTEN call created, unless checkpointing re-runs a forward there (grad mode on).
// made_node: an operand requires grad (with grad mode on, the op made a node).
bool pass_of(nf_aten_call &call, bool made_node) {
    auto node = torch::autograd::get_current_node();
    bool grad = c10::GradMode::is_enabled();
    if (!node) {
        module_for(call.module, nullptr, false, grad && made_node);
        return true;
    }
    if (grad) {
        call.recompute = true;
        module_for(call.module, node.get(), true, made_node);
        return true;
    }
    call.backward = true;
    if (created_by_natten(node->thread_id(), node->sequence_nr())) return false;
    module_for(call.module, node.get(), false, false);
    return true;
}

// The rest of a measured call: its pass, op, dtype and device; false: not counted.
bool finish(nf_aten_call &call, const char *op, const at::Tensor &first, bool made_node) {
    if (!pass_of(call, made_node)) return false;
    // The device's name, kept per thread while the device stays the same: no string
    // built per call, and the host's string cache (by pointer) hits.
    thread_local c10::Device last(c10::DeviceType::CPU);
    thread_local std::string device = last.str();
    if (first.device() != last) {
        last = first.device();
        device = last.str();
    }
    call.op = op;
    call.dtype = dtype_name(first.scalar_type());
    call.device = device.c_str();
    return true;
}

bool wanted() {
    return open_ops == 0 && !broken.load(std::memory_order_relaxed) && !host->natten_active();
}

// Runs measure_it (false: not counted, or an exception: the observer gives up), then
// the call itself (run) with this thread's registry ops open, then counts it once it
// returns: a call that raises (checkpointing's early stop, bad shapes) did no work.
template <typename Measure, typename Run>
auto counted(bool want, Measure measure_it, Run run) -> decltype(run()) {
    nf_aten_call call{};
    bool count = false;
    if (want) {
        try {
            count = measure_it(call);
        } catch (const std::exception &e) {
            give_up(e.what());
        } catch (...) {
            give_up("unknown exception");
        }
    }
    struct Open {
        Open() { open_ops++; }
        ~Open() { open_ops--; }
    } open;
    if constexpr (std::is_void_v<decltype(run())>) {
        run();
        if (count) host->count(&call);
    } else {
        auto out = run();
        if (count) host->count(&call);
        return out;
    }
}

c10::DispatchKeySet after_us(c10::DispatchKeySet ks) {
    return ks & c10::DispatchKeySet(c10::DispatchKeySet::FULL_AFTER, c10::DispatchKey::BackendSelect);
}

// Any overload of a registry op, boxed: the operands read off the stack.
template <Formula F>
void kernel(const c10::OperatorHandle &op, c10::DispatchKeySet ks, torch::jit::Stack *stack) {
    counted(
        F != F_NONE && wanted(),
        [&](nf_aten_call &call) {
            size_t n = op.schema().arguments().size();
            if (n > stack->size()) return false;
            c10::ArrayRef<const c10::IValue> in(stack->data() + (stack->size() - n), n);
            const at::Tensor *first = nullptr;
            bool grad = false;
            for (const auto &v : in) grad = grad || (v.isTensor() && needs_grad(v.toTensor()));
            return measure(F, in, call, first) && first != nullptr &&
                   finish(call, op.schema().name().c_str(), *first, grad);
        },
        [&] { op.redispatchBoxed(after_us(ks), stack); });
}

// The default overloads of the four matrix products, unboxed: the path most models'
// FLOPs take, without IValues on the way in or out.
bool measure_matmul(Formula f, const char *op, const at::Tensor &a, const at::Tensor &b,
                    nf_aten_call &call, const at::Tensor *self = nullptr) {
    Dims s[2];
    u128 flops = 0;
    if (dims_of(a, s[0]) != READ_OK || dims_of(b, s[1]) != READ_OK || !matmul_flops(f, s[0], s[1], flops))
        return false;
    fill(call, s, 2, flops);
    return finish(call, op, a, needs_grad(a) || needs_grad(b) || (self && needs_grad(*self)));
}

at::Tensor mm_kernel(c10::DispatchKeySet ks, const at::Tensor &a, const at::Tensor &b) {
    return counted(
        wanted(), [&](nf_aten_call &c) { return measure_matmul(F_MM, "aten::mm", a, b, c); },
        [&] { return at::_ops::mm::redispatch(after_us(ks), a, b); });
}

at::Tensor bmm_kernel(c10::DispatchKeySet ks, const at::Tensor &a, const at::Tensor &b) {
    return counted(
        wanted(), [&](nf_aten_call &c) { return measure_matmul(F_BMM, "aten::bmm", a, b, c); },
        [&] { return at::_ops::bmm::redispatch(after_us(ks), a, b); });
}

at::Tensor addmm_kernel(c10::DispatchKeySet ks, const at::Tensor &self, const at::Tensor &a,
                        const at::Tensor &b, const at::Scalar &beta, const at::Scalar &alpha) {
    return counted(
        wanted(), [&](nf_aten_call &c) { return measure_matmul(F_ADDMM, "aten::addmm", a, b, c, &self); },
        [&] { return at::_ops::addmm::redispatch(after_us(ks), self, a, b, beta, alpha); });
}

at::Tensor baddbmm_kernel(c10::DispatchKeySet ks, const at::Tensor &self, const at::Tensor &a,
                          const at::Tensor &b, const at::Scalar &beta, const at::Scalar &alpha) {
    return counted(
        wanted(), [&](nf_aten_call &c) { return measure_matmul(F_BADDBMM, "aten::baddbmm", a, b, c, &self); },
        [&] { return at::_ops::baddbmm::redispatch(after_us(ks), self, a, b, beta, alpha); });
}

// ------------------------------------------------------------------ NATTEN's ops
//
// NATTEN 0.20+'s libnatten kernels are torch.library custom ops
// (natten/_libnatten/torch_wrappers.py). The same BackendSelect kernel sits on each
// of them: it sees real calls only (fake tensors stop at the Python key above it, meta
// tensors are recognised), whoever makes them: NATTEN's Python functions, a compiled
// graph, an exported program, C++. It counts a call by NATTEN's rule from the op's own
// arguments, unless a NATTEN call counted by the Python wrapper is running on the
// thread (what it runs is its own) or the op runs inside a backward node that such a
// call created (the wrapper's backward hook counts that), and runs it inside NATTEN's
// scope, so that the aten ops it runs are left to the rule.

enum NaForm : uint8_t {
    NA_FNA,       // [B, *spatial, H, D] tensors (cutlass, reference)
    NA_PERMUTED,  // token-permuted tensors, the layout in qkv_shape (hopper, blackwell)
    NA_FMHA,      // plain attention, [B, S, H, D]
};

struct NattenOp {
    std::string op;       // "na2d"
    const char *backend;  // "cutlass-fna"
    int na_dim;
    bool backward;
    NaForm form;
};

// By qualified name ("natten::na2d_forward"); built before any kernel is registered,
// read-only after.
std::unordered_map<std::string, NattenOp> natten_ops;
std::atomic<bool> natten_installed{false};

void natten_table() {
    struct Family { const char *prefix; const char *backend; NaForm form; };
    const Family fna[] = {{"", "cutlass-fna", NA_FNA},
                          {"reference_", "reference-fna", NA_FNA},
                          {"hopper_", "hopper-fna", NA_PERMUTED},
                          {"blackwell_", "blackwell-fna", NA_PERMUTED}};
    for (const auto &f : fna)
        for (int d = 1; d <= 3; d++)
            for (int b = 0; b < 2; b++) {
                std::string na = "na" + std::to_string(d) + "d";
                natten_ops["natten::" + std::string(f.prefix) + na + (b ? "_backward" : "_forward")] =
                    NattenOp{na, f.backend, d, b == 1, f.form};
            }
    const Family fmha[] = {{"", "cutlass-fmha", NA_FMHA},
                           {"hopper_", "hopper-fmha", NA_FMHA},
                           {"blackwell_", "blackwell-fmha", NA_FMHA}};
    for (const auto &f : fmha)
        for (int b = 0; b < 2; b++)
            natten_ops["natten::" + std::string(f.prefix) + (b ? "fmha_backward" : "fmha_forward")] =
                NattenOp{"attention", f.backend, 1, b == 1, f.form};
}

// The argument named name, or nullptr.
const c10::IValue *arg(const c10::FunctionSchema &schema, c10::ArrayRef<const c10::IValue> in,
                       const char *name) {
    const auto &args = schema.arguments();
    for (size_t i = 0; i < args.size() && i < in.size(); i++)
        if (args[i].name() == name) return &in[i];
    return nullptr;
}

// An int[]/SymInt[]/bool[] argument (one value: every dim) into out[0..n), or fill
// where absent. False where it cannot be read.
bool ints_of(const c10::IValue *v, int n, int64_t fill, int64_t *out) {
    for (int i = 0; i < n; i++) out[i] = fill;
    if (v == nullptr || v->isNone()) return true;
    if (v->isInt()) {
        for (int i = 0; i < n; i++) out[i] = v->toInt();
        return true;
    }
    if (v->isBool()) {
        for (int i = 0; i < n; i++) out[i] = v->toBool();
        return true;
    }
    if (!v->isList()) return false;
    auto list = v->toListRef();
    if (list.empty() || (list.size() != 1 && static_cast<int>(list.size()) != n)) return false;
    for (int i = 0; i < n; i++) {
        const c10::IValue &x = list[list.size() == 1 ? 0 : i];
        if (x.isInt()) out[i] = x.toInt();
        else if (x.isBool()) out[i] = x.toBool();
        else if (x.isSymInt() && x.toSymInt().maybe_as_int()) out[i] = *x.toSymInt().maybe_as_int();
        else return false;
    }
    return true;
}

void put_shape(nf_natten_call &call, int i, const Dims &d) {
    call.rank[i] = std::min(d.rank, NF_ATEN_MAX_RANK);
    for (int j = 0; j < call.rank[i]; j++) call.shape[i][j] = d.d[j];
}

// Reads a NATTEN op's call; false: not counted here.
bool measure_natten(const NattenOp &no, const c10::FunctionSchema &schema,
                    c10::ArrayRef<const c10::IValue> in, nf_natten_call &call) {
    Dims q, k, v;
    const c10::IValue *qa = arg(schema, in, "query"), *ka = arg(schema, in, "key"),
                      *va = arg(schema, in, "value");
    if (!qa || !ka || !va || dims_of(*qa, q) != READ_OK || dims_of(*ka, k) != READ_OK ||
        dims_of(*va, v) != READ_OK)
        return false;
    int n = no.na_dim;
    call.op = no.op.c_str();
    call.backend = no.backend;
    call.na_dim = n;
    call.backward = no.backward;
    int64_t causal[3];
    if (no.form == NA_FMHA) {
        // Variable-length attention: the lengths are values, on the GPU; the Python
        // wrapper counts it (eager), and the compiled path leaves it to nobody else.
        const c10::IValue *cu = arg(schema, in, "cumulative_seqlen_Q");
        if (cu && cu->isTensor() && cu->toTensor().defined()) return false;
        if (q.rank != 4 || k.rank != 4 || v.rank != 4) return false;
        call.attention = true;
        if (!ints_of(arg(schema, in, "is_causal"), 1, 0, causal)) return false;
        call.causal_mask = causal[0] ? 1 : 0;
        put_shape(call, 0, q), put_shape(call, 1, k), put_shape(call, 2, v);
    } else {
        const c10::IValue *kernel = arg(schema, in, "kernel_size");
        if (kernel == nullptr || !ints_of(kernel, n, 0, call.kernel) ||
            !ints_of(arg(schema, in, "stride"), n, 1, call.stride) ||
            !ints_of(arg(schema, in, "dilation"), n, 1, call.dilation) ||
            !ints_of(arg(schema, in, "is_causal"), n, 0, causal))
            return false;
        for (int i = 0; i < n; i++)
            if (causal[i]) call.causal_mask |= static_cast<uint8_t>(1u << i);
        if (no.form == NA_PERMUTED) {
            // Token-permuted [B * prod(dilation), tokens, H, D]; the token layout
            // (before permutation and dilation) is qkv_shape.
            int64_t layout[3], groups = 1;
            if (!ints_of(arg(schema, in, "qkv_shape"), n, -1, layout)) return false;
            for (int i = 0; i < n; i++) {
                if (layout[i] < 0 || call.dilation[i] < 1) return false;
                groups *= call.dilation[i];
            }
            Dims *t[3] = {&q, &k, &v};
            for (Dims *d : t) {
                if (d->rank != 4 || (*d)[0] % groups != 0) return false;
                Dims u;
                u.rank = n + 3;
                u.d[0] = (*d)[0] / groups;
                for (int i = 0; i < n; i++) u.d[1 + i] = layout[i];
                u.d[n + 1] = (*d)[2], u.d[n + 2] = (*d)[3];
                *d = u;
            }
        } else if (q.rank != n + 3 || k.rank != n + 3 || v.rank != n + 3) {
            return false;
        }
        const c10::IValue *extra = arg(schema, in, "num_extra_kv");
        if (extra && extra->isInt()) call.extra_kv = extra->toInt();
        put_shape(call, 0, q), put_shape(call, 1, k), put_shape(call, 2, v);
    }
    // The pass: a backward op is backward work wherever it runs (compiled autograd runs
    // no node); a forward op inside a backward node is recomputed there (checkpointing,
    // or the partitioner's choice in a compiled backward).
    auto node = torch::autograd::get_current_node();
    if (node && created_by_natten(node->thread_id(), node->sequence_nr())) return false;
    if (!no.backward && node) call.recompute = true;
    const at::Tensor &first = qa->toTensor();
    bool grad = false;
    for (const auto &x : in) grad = grad || (x.isTensor() && needs_grad(x.toTensor()));
    module_for(call.module, node.get(), node == nullptr || call.recompute,
               c10::GradMode::is_enabled() && grad);
    thread_local c10::Device last(c10::DeviceType::CPU);
    thread_local std::string device = last.str();
    if (first.device() != last) {
        last = first.device();
        device = last.str();
    }
    call.dtype = dtype_name(first.scalar_type());
    call.device = device.c_str();
    return true;
}

void natten_kernel(const c10::OperatorHandle &op, c10::DispatchKeySet ks, torch::jit::Stack *stack) {
    nf_natten_call call{};
    bool count = false;
    if (!broken.load(std::memory_order_relaxed) && !host->natten_active()) {
        try {
            const auto &schema = op.schema();
            auto it = natten_ops.find(schema.name());
            size_t n = schema.arguments().size();
            if (it != natten_ops.end() && n <= stack->size()) {
                c10::ArrayRef<const c10::IValue> in(stack->data() + (stack->size() - n), n);
                count = measure_natten(it->second, schema, in, call);
            }
        } catch (const std::exception &e) {
            give_up(e.what());
        } catch (...) {
            give_up("unknown exception");
        }
    }
    if (!count || !host->natten_begin(&call)) {
        op.redispatchBoxed(after_us(ks), stack);
        return;
    }
    struct End {
        bool ran = false;
        ~End() { host->natten_end(ran); }
    } end;
    op.redispatchBoxed(after_us(ks), stack);
    end.ran = true;
}

// The kernel goes on each op name of the table whether or not NATTEN has defined it
// yet: the dispatcher keeps a kernel registered before its op's schema and uses it
// once the op is defined (NATTEN defines its ops when natten is imported, usually
// after torch). A registration listener cannot do this itself: the dispatcher calls
// it holding the lock that registering a kernel takes.
void install_natten() {
    natten_table();
    auto *lib = new torch::Library(torch::Library::IMPL, "natten", c10::DispatchKey::BackendSelect,
                                   __FILE__, __LINE__);
    auto &dispatcher = c10::Dispatcher::singleton();
    for (const auto &entry : natten_ops) {
        std::string name = entry.first.substr(8);  // without "natten::"
        auto handle = dispatcher.findOp(c10::OperatorName(entry.first, ""));
        if (handle && handle->hasKernelForDispatchKey(c10::DispatchKey::BackendSelect)) continue;
        lib->impl(name.c_str(), torch::CppFunction::makeFromBoxedFunction<&natten_kernel>());
    }
    natten_installed.store(true);
}

// torch.profiler.record_function regions, read for steps: torch.optim wraps every
// Optimizer.step in one named "Optimizer.step#<class>.step", and Dynamo each compile
// phase in one named "<phase> (dynamo_timed)". The regions run whether or not a
// profiler is on: their ops are dispatcher ops the observer can sit on, so steps are
// found with nothing the program can see.
thread_local std::vector<const void *> open_steps; // this thread's open Optimizer.step regions

bool starts_with(const std::string &s, const char *p) { return s.rfind(p, 0) == 0; }

bool ends_with(const std::string &s, const char *p) {
    size_t k = strlen(p);
    return s.size() >= k && s.compare(s.size() - k, k, p) == 0;
}

void region_enter(const c10::OperatorHandle &op, c10::DispatchKeySet ks, torch::jit::Stack *stack) {
    int kind = 0; // 1: Optimizer.step, 2: a compile phase
    if (!broken.load(std::memory_order_relaxed)) {
        size_t n = op.schema().arguments().size();
        if (n >= 1 && stack->size() >= n && (*stack)[stack->size() - n].isString()) {
            const std::string &name = (*stack)[stack->size() - n].toStringRef();
            kind = starts_with(name, "Optimizer.step#") ? 1 : ends_with(name, " (dynamo_timed)") ? 2 : 0;
        }
    }
    op.redispatchBoxed(after_us(ks), stack);
    if (kind == 2) host->step_event(NF_STEP_EVENT_COMPILE);
    if (kind == 1 && !stack->empty() && stack->back().isPtrType()) {
        open_steps.push_back(stack->back().internalToPointer());
        host->step_event(NF_STEP_EVENT_OPTIMIZER_BEGIN);
    }
}

void region_exit(const c10::OperatorHandle &op, c10::DispatchKeySet ks, torch::jit::Stack *stack) {
    bool ours = !open_steps.empty() && !stack->empty() && stack->back().isPtrType() &&
                stack->back().internalToPointer() == open_steps.back();
    op.redispatchBoxed(after_us(ks), stack);
    if (ours) {
        open_steps.pop_back();
        host->step_event(NF_STEP_EVENT_OPTIMIZER_END);
    }
}

void install_regions() {
    if (host->step_event == nullptr) return; // NAFLOPS_STEP=off
    auto *lib = new torch::Library(torch::Library::IMPL, "profiler", c10::DispatchKey::BackendSelect,
                                   __FILE__, __LINE__);
    auto &dispatcher = c10::Dispatcher::singleton();
    auto enter = dispatcher.findOp(c10::OperatorName("profiler::_record_function_enter_new", ""));
    auto exit = dispatcher.findOp(c10::OperatorName("profiler::_record_function_exit", "_RecordFunction"));
    if (!enter || !exit || enter->hasKernelForDispatchKey(c10::DispatchKey::BackendSelect) ||
        exit->hasKernelForDispatchKey(c10::DispatchKey::BackendSelect))
        return; // not this torch's record_function: no steps from optimizers
    lib->impl("_record_function_enter_new", torch::CppFunction::makeFromBoxedFunction<&region_enter>());
    lib->impl("_record_function_exit._RecordFunction",
              torch::CppFunction::makeFromBoxedFunction<&region_exit>());
}

template <Formula F>
torch::CppFunction boxed() {
    return torch::CppFunction::makeFromBoxedFunction<&kernel<F>>();
}

// The boxed kernel of formula f, from a table of one per formula.
template <size_t... I>
torch::CppFunction boxed_for(Formula f, std::index_sequence<I...>) {
    using Make = torch::CppFunction (*)();
    static constexpr Make make[] = {&boxed<static_cast<Formula>(I)>...};
    return make[f]();
}

torch::CppFunction boxed_for(Formula f) { return boxed_for(f, std::make_index_sequence<F_COUNT>{}); }

// The unboxed kernel of a default overload of the four products, else the boxed one.
torch::CppFunction kernel_of(Formula f, bool default_overload) {
    if (default_overload) {
        switch (f) {
        case F_MM: return torch::CppFunction(TORCH_FN(mm_kernel));
        case F_BMM: return torch::CppFunction(TORCH_FN(bmm_kernel));
        case F_ADDMM: return torch::CppFunction(TORCH_FN(addmm_kernel));
        case F_BADDBMM: return torch::CppFunction(TORCH_FN(baddbmm_kernel));
        default: break;
        }
    }
    return boxed_for(f);
}

// Our kernels for every overload of the registry's ops (never unregistered: the
// observer stays loaded for the life of the process).
void install() {
    auto *lib = new torch::Library(torch::Library::IMPL, "aten", c10::DispatchKey::BackendSelect,
                                   __FILE__, __LINE__);
    auto &dispatcher = c10::Dispatcher::singleton();
    for (const auto &name : dispatcher.getAllOpNames()) {
        for (const auto &r : registry) {
            if (name.name != r.name) continue;
            auto handle = dispatcher.findOp(name);
            // A kernel there already (none in torch): leave the op to it.
            if (!handle || handle->hasKernelForDispatchKey(c10::DispatchKey::BackendSelect)) break;
            std::string qualified = name.name.substr(6);  // without "aten::"
            if (!name.overload_name.empty()) qualified += "." + name.overload_name;
            lib->impl(qualified.c_str(), kernel_of(r.f, name.overload_name.empty()));
            break;
        }
    }
}

}  // namespace

// One observer serves a torch version under any CPython its wheel supports, but it is
// compiled with one CPython's headers: inline code from them (pybind11's, through
// torch's headers) calls _PyThreadState_UncheckedGet, which CPython 3.13 renamed
// PyThreadState_GetUnchecked. Where the process has the old name (3.12 and before),
// the dynamic linker binds to it first and this weak copy is never called; on 3.13 it
// forwards to the new name. Built with 3.13's headers, nothing calls the old name.
#if PY_VERSION_HEX < 0x030D0000
extern "C" __attribute__((weak, visibility("default"))) PyThreadState *_PyThreadState_UncheckedGet(void) {
    using get_fn = PyThreadState *(*)(void);
    static get_fn get = reinterpret_cast<get_fn>(dlsym(RTLD_DEFAULT, "PyThreadState_GetUnchecked"));
    return get != nullptr ? get() : PyGILState_GetThisThreadState();
}
#endif

extern "C" __attribute__((visibility("default"))) int naflops_observer_start(
    const nf_observer_host *h) {
    if (h == nullptr || h->abi != NF_OBSERVER_ABI) return -1;
    host = h;
    try {
        install();
        install_natten();
        install_regions();
    } catch (const std::exception &e) {
        char line[256];
        snprintf(line, sizeof line, "could not register the libtorch observer (%s); the whole-model count is off", e.what());
        h->say(line);
        return -1;
    }
    return 0;
}

// Only the optimizer's steps (NAFLOPS_WHOLE_MODEL=0): the region kernels, no counting.
extern "C" __attribute__((visibility("default"))) int naflops_observer_steps(const nf_observer_host *h) {
    if (h == nullptr || h->abi != NF_OBSERVER_ABI || host != nullptr) return -1;
    host = h;
    try {
        install_regions();
    } catch (...) {
        return -1;
    }
    return 0;
}

extern "C" __attribute__((visibility("default"))) int naflops_observer_counts_natten(void) {
    return natten_installed.load() ? 1 : 0;
}

extern "C" __attribute__((visibility("default"))) void naflops_observer_natten_enter(void) {
    natten_seq_start = at::sequence_number::peek();
    natten_entered = true;
}

extern "C" __attribute__((visibility("default"))) void naflops_observer_natten_leave(void) {
    if (!natten_entered) return;
    natten_entered = false;
    uint64_t end = at::sequence_number::peek();
    if (end <= natten_seq_start) return;  // no autograd node was created (no grad)
    try {
        std::lock_guard<std::mutex> g(ranges_lock);
        auto &d = natten_ranges[at::RecordFunction::currentThreadId()];
        d.push_back({natten_seq_start, end});
        if (d.size() > RANGES_KEPT) d.pop_front();
        any_ranges.store(true, std::memory_order_relaxed);
    } catch (...) {
        give_up("could not record a NATTEN call's autograd nodes");
    }
}

/* ------------------------------------------------------------ the wrapper's fast path
 *
 * What the NATTEN wrapper (hooks/py_natten.c) would otherwise read through Python:
 * a tensor's metadata (tensor_meta.h), whether a TorchFunctionMode is on, and the
 * backward hook of a counted call, added to its autograd node as a C++ post hook
 * (a Python one costs several microseconds to register). The hook counts in C when
 * the engine runs the node; under compiled autograd, which runs no node, it hands
 * compiled autograd the Python hook it would have had (compiled_args), which counts
 * through the same reorderable builtin as before. Called with the GIL held. */

static int tensor_read(void *obj, nf_tensor_meta *m) {
    try {
        const at::Tensor &t = THPVariable_Unpack(static_cast<PyObject *>(obj));
        if (!t.defined()) return -1;
        c10::TensorImpl *impl = t.unsafeGetTensorImpl();
        m->nested = t.is_nested();
        if (m->nested || impl->has_symbolic_sizes_strides()) return m->nested ? 0 : -1;
        int64_t dim = impl->dim();
        if (dim > NF_TMETA_MAX_RANK) return -1;
        c10::IntArrayRef sizes = impl->sizes();
        for (int64_t i = 0; i < dim; i++) m->shape[i] = sizes[i];
        m->rank = static_cast<uint8_t>(dim);
        m->scalar_type = static_cast<int8_t>(t.scalar_type());
        c10::Device dev = t.device();
        m->device_type = static_cast<int8_t>(dev.type());
        m->device_index = static_cast<int8_t>(dev.index());
        m->requires_grad = t.requires_grad();
        return 0;
    } catch (...) {
        return -1;
    }
}

static int tensor_requires_grad(void *obj) {
    try {
        const at::Tensor &t = THPVariable_Unpack(static_cast<PyObject *>(obj));
        return t.defined() ? t.requires_grad() : -1;
    } catch (...) {
        return -1;
    }
}

static bool function_mode() { return at::impl::torch_function_mode_enabled(); }

/* compiled_args became const in torch 2.7. */
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 7)
#define NF_COMPILED_ARGS_CONST const
#else
#define NF_COMPILED_ARGS_CONST
#endif

namespace {
struct CountHook : torch::autograd::FunctionPostHook {
    CountHook(uint32_t order, PyObject *py_hook, void (*count)(uint32_t))
        : order_(order), py_hook_(py_hook), count_(count) {} /* py_hook: kept for the process */
    torch::autograd::variable_list operator()(const torch::autograd::variable_list &outputs,
                                              const torch::autograd::variable_list &) override {
        count_(order_);
        return outputs;
    }
    void compiled_args(torch::dynamo::autograd::CompiledNodeArgs &args) NF_COMPILED_ARGS_CONST override {
        Py_INCREF(py_hook_);
        args.add_post_hook(c10::SafePyObject(py_hook_, getPyInterpreter()));
    }
    uint32_t order_;
    PyObject *py_hook_;
    void (*count_)(uint32_t);
};
}  // namespace

static int hook_backward(void *const *outs, int n, uint32_t order, void *py_hook,
                         void (*count)(uint32_t)) {
    try {
        torch::autograd::Node *node = nullptr; /* kept alive by the outputs */
        for (int i = 0; i < n; i++) {
            const at::Tensor &t = THPVariable_Unpack(static_cast<PyObject *>(outs[i]));
            if (!t.defined()) return -1;
            auto fn = t.grad_fn(); /* a shared_ptr, an intrusive_ptr from torch 2.15 */
            if (!fn) return -1;
            if (node == nullptr) node = fn.get();
            else if (fn.get() != node) return 1;
        }
        if (node == nullptr) return -1;
        node->add_post_hook(std::make_unique<CountHook>(order, static_cast<PyObject *>(py_hook), count));
        return 0;
    } catch (...) {
        return -1;
    }
}

static const nf_tensor_reader reader = {tensor_read, tensor_requires_grad, function_mode, hook_backward};

extern "C" __attribute__((visibility("default"))) const nf_tensor_reader *naflops_tensor_reader(void) {
    return &reader;
}
