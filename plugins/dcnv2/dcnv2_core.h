// Pure core of the AdnetDCNv2 op: parameters, the problem (shapes + derived sizes), validation, shape rule, field
// (de)serialisation and the C ABI of the launchers. Knows nothing of TensorRT; the IPluginV3 adapter
// (dcnv2_plugin.cpp), the CUDA launcher, the CPU twin and the Python bindings (plugins/dcnv2/abi.py) all describe a
// call with one AdnetDcnProblem and turn it into one Problem.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "dcnv2_contract.h"  // generated from plugins/dcnv2/contract.py (build/include/)

extern "C" {

// One call, as the C ABI and ctypes see it (plugins/dcnv2/abi.py mirrors this layout). Dims are the logical NCHW
// dims of each tensor; -1 means "not known yet" (build time with dynamic shapes: adnet_dcn_check skips the checks
// that need it; the launchers reject it). The output is y = [x[0], weight[0], offset_mask[2], offset_mask[3]].
// Formats (Format values): 0 linear (dense NCHW), 1 channels-last (dense NHWC: TensorRT's kHWC8 with C a multiple
// of 8, torch's channels_last); weight and bias are always linear. variant (Variant values): 0 the best kernel for
// the problem, 1 the v1 kernel (NCHW only), 2 the v2 fast path where it applies (else the generic kernel).
typedef struct AdnetDcnProblem {
    int32_t dtype;  // DataType value: 0 float32, 1 float16 (every tensor has this type)
    int32_t stride, padding, dilation, deformable_groups;
    int64_t x[4];            // [B, C, H, W]
    int64_t offset_mask[4];  // [B, 3*dg*kh*kw, Ho, Wo]
    int64_t weight[4];       // [Cout, C, kh, kw]
    int64_t bias_length;     // Cout
    int32_t x_format, offset_mask_format, y_format;
    int32_t variant;
} AdnetDcnProblem;

// Device (CUDA launcher) or host (CPU twin) pointers of the five tensors.
typedef struct AdnetDcnTensors {
    void const* x;
    void const* offset_mask;
    void const* weight;
    void const* bias;
    void* y;
} AdnetDcnTensors;
}

namespace adnet {
namespace dcn {

struct Params {
    int32_t stride = kFieldDefaults[kFieldStride];
    int32_t padding = kFieldDefaults[kFieldPadding];
    int32_t dilation = kFieldDefaults[kFieldDilation];
    int32_t deformable_groups = kFieldDefaults[kFieldDeformableGroups];
};

// Tensor dims as the core sees them (TensorRT-free); -1 = unknown.
struct Dims4 {
    int64_t n, c, h, w;
};

// The element types the op supports: all tensors FP32, or all FP16 (FP32 accumulation).
enum class DataType : int32_t { kFloat32 = 0, kFloat16 = 1 };

// Memory formats of x, offset_mask and y (see AdnetDcnProblem).
enum class Format : int32_t { kLinear = 0, kChannelsLast = 1 };
// Kernel choice (see AdnetDcnProblem): the fast path (v2) needs FP16, channels-last x, C/dg a multiple of 8, a
// 3x3 kernel, C <= 1024 and dilation <= 16383; everything else runs the generic kernel, which is v1.
enum class Variant : int32_t { kBest = 0, kV1 = 1, kV2 = 2 };
constexpr int32_t kChannelsLastVector = 8;  // channels per 128-bit FP16 vector

// Types a serialised field can arrive with (the adapter maps TensorRT's PluginFieldType onto these).
enum class FieldType : int32_t { kInt32, kInt64, kInt16, kInt8, kFloat32, kFloat64, kChar, kOther };

// One forward problem: the parameters, the four input shapes, the output shape and the sizes derived from them,
// computed once by makeProblem. Every user (validation, launch planning, the twin, the adapter) reads these.
struct Problem {
    Params params;
    int32_t dtype = 0;  // DataType value as given (validate rejects anything else)
    Dims4 x{}, offsetMask{}, weight{}, y{};
    int64_t biasLength = 0;
    int32_t xFormat = 0, offsetMaskFormat = 0, yFormat = 0;  // Format values
    int32_t variant = 0;                                      // Variant value
    // Derived; meaningful when the dims they come from are known.
    int64_t k = 0;          // taps, kh*kw
    int64_t cg = 0;         // channels per deformable group, C/dg
    int64_t hw = 0;         // H*W
    int64_t howo = 0;       // Ho*Wo
    int64_t pixels = 0;     // B*Ho*Wo output pixels
    int64_t reduction = 0;  // C*kh*kw rows of the GEMM
    DataType type() const { return static_cast<DataType>(dtype); }
    bool known() const;     // every dim known (a launch needs that)
    bool fastPath() const;  // the v2 kernel runs (x channels-last and not forced to v1); validate() checks the rest
};

Problem makeProblem(AdnetDcnProblem const& desc);
Problem makeProblem(Params const& p, DataType type, Dims4 const& x, Dims4 const& offsetMask, Dims4 const& weight,
                    int64_t biasLength);

// Empty string when valid, else a message naming the field, the bad value and the accepted range.
std::string validate(Params const& p);

// Checks the parameters, the dtype and the shapes against each other (channels, dg | C, 3*dg*K offset_mask
// channels, offset_mask spatial dims = the convolution's output size, bias length, output size > 0) and the kernels'
// index limits (H, W below 2^24; H*W, Ho*Wo, C*kh*kw below 2^31). Unknown (-1) dims skip the checks that need them.
// Empty string when valid.
std::string validate(Problem const& problem);

// Whether the op serves input `position` (0-3 inputs in contract order, 4 = y) in the format and type the problem
// gives it, knowing only the formats of positions before it (TensorRT asks in position order): linear FP32/FP16
// everywhere; channels-last FP16 for x where the fast path serves the problem (see Variant), and for
// offset_mask / y when x is channels-last and their channel count is a multiple of 8.
bool formatSupported(Problem const& problem, int32_t position);

// validate(problem) plus what a launch needs: every dim known and non-null pointers (y and x, offset_mask may be
// null for an empty batch).
std::string validateLaunch(Problem const& problem, AdnetDcnTensors const& tensors);

// Output length along one axis: floor((in + 2*pad - dil*(k-1) - 1) / stride) + 1; 0 when the input is too small
// for the kernel, -1 when `in` is unknown (-1).
int64_t outputLength(int64_t in, int64_t kernel, int32_t stride, int32_t padding, int32_t dilation);

// Field (de)serialisation in kFieldNames order: one int32 per field. fromFields does not validate (call validate).
void toFields(Params const& p, int32_t (&values)[kNumFields]);
Params fromFields(int32_t const (&values)[kNumFields]);
// Sets the named field from (type, data, length) as TensorRT hands it over; accepts any integer type holding
// one in-range value. Returns an empty string on success, else a message; unknown names are an error.
std::string setField(Params& p, char const* name, FieldType type, void const* data, int32_t length);

// Records the message that adnet_dcn_last_error() returns on this thread (the C ABI implementations call it).
void setLastError(std::string const& message);

// makeProblem + validateLaunch for the C ABI launchers; a failure is recorded with setLastError. True when the
// launch may proceed.
bool acceptLaunch(AdnetDcnProblem const* desc, AdnetDcnTensors const* tensors, Problem& problem);

}  // namespace dcn
}  // namespace adnet

extern "C" {

// The launchers (ctypes, the benchmark and the adapter call these). Tensors are dense NCHW; `stream` is a
// cudaStream_t. Return 0 on success, else a cudaError_t value (or -1 for invalid arguments; the message is in
// adnet_dcn_last_error()). float16 pointers point to IEEE binary16 storage (__half). An empty batch is a no-op.
int32_t adnet_dcn_forward_cuda(AdnetDcnProblem const* problem, AdnetDcnTensors const* tensors, void* stream);

// The CPU twin: the same sampling math (shared __host__ __device__ code), the same rounding points for FP16.
// Host pointers. Return 0 on success, -1 for invalid arguments.
int32_t adnet_dcn_forward_cpu(AdnetDcnProblem const* problem, AdnetDcnTensors const* tensors);

// CUDA kernels library only (host code, no device needed): the fast path's dynamic shared memory per block in
// bytes for `problem`, the weights resident when the block then fits `resident_budget` bytes (the launcher passes
// what keeps two blocks per SM); *resident_weights is set to 1 or 0. -1 with the message in adnet_dcn_last_error()
// when the problem is invalid, has unknown dims or is not a fast-path problem.
int64_t adnet_dcn_fast_shared_bytes(AdnetDcnProblem const* problem, int64_t resident_budget,
                                    int32_t* resident_weights);

// Message of the last failed call on this thread (validation text), "" if none.
char const* adnet_dcn_last_error(void);

// Helpers for bindings and adapters written in other languages (the Python stand-in plugin), in both libraries.
// formatSupported: 1 when served, 0 when not.
int32_t adnet_dcn_supports(AdnetDcnProblem const* problem, int32_t position);
// validate(makeProblem(*problem)): 0 when valid, else -1 with the message in adnet_dcn_last_error().
int32_t adnet_dcn_check(AdnetDcnProblem const* problem);
// outputLength (the shape rule on one axis).
int64_t adnet_dcn_output_length(int64_t in, int64_t kernel, int32_t stride, int32_t padding, int32_t dilation);
// setField on the parameters held in `fields` (kNumFields int32 in kFieldNames order, updated in place);
// `fieldType` is a FieldType value. 0 on success, else -1 with the message in adnet_dcn_last_error().
int32_t adnet_dcn_set_field(int32_t* fields, char const* name, int32_t fieldType, void const* data,
                            int32_t length);
// toFields(Params{}): the defaults compiled from the contract header.
void adnet_dcn_default_fields(int32_t* fields);

// CPU twin library only: float32 -> IEEE binary16 bits, round to nearest even (the twin's rounding helper).
void adnet_dcn_float_to_half(float const* in, uint16_t* out, int64_t n);
}
