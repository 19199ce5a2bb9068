// Pure core of the AdnetDCNv2 op: parameters, validation, shape rule, workspace, field (de)serialisation and
// kernel launchers. Knows nothing of TensorRT; the IPluginV3 adapter (dcnv2_plugin.cpp) only translates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "dcnv2_contract.h"  // generated from plugins/dcnv2/contract.py (build/include/)

namespace adnet {
namespace dcn {

struct Params {
    int32_t stride = kFieldDefaults[kFieldStride];
    int32_t padding = kFieldDefaults[kFieldPadding];
    int32_t dilation = kFieldDefaults[kFieldDilation];
    int32_t deformable_groups = kFieldDefaults[kFieldDeformableGroups];
};

// Tensor dims as the core sees them (TensorRT-free). Shape rule inputs come from static or runtime dims; a dim
// of -1 means "not known yet" (build time with dynamic shapes) and skips the checks that need it.
struct Dims4 {
    int64_t n, c, h, w;
};

// The element types the op supports: all tensors FP32, or all FP16 (FP32 accumulation).
enum class DataType : int32_t { kFloat32 = 0, kFloat16 = 1 };

// Types a serialised field can arrive with (the adapter maps TensorRT's PluginFieldType onto these).
enum class FieldType : int32_t { kInt32, kInt64, kInt16, kInt8, kFloat32, kFloat64, kChar, kOther };

// Empty string when valid, else a message naming the field, the bad value and the accepted range.
std::string validate(Params const& p);

// Checks the four input shapes against each other and against p (channels, dg | C, 3*dg*K offset_mask channels,
// offset_mask spatial dims = output dims, bias length, output size > 0) and the kernels' index limits (H, W below
// 2^24; H*W, Ho*Wo, C*kh*kw below 2^31). Also checks p. Unknown (-1) dims are skipped. Empty string when valid.
std::string validateShapes(Params const& p, Dims4 const& x, Dims4 const& offsetMask, Dims4 const& weight,
                           int64_t biasLength);

// Everything a launcher can check: dtype (DataType value), non-null pointers, p, and the shapes with
// offset_mask = [n, 3*dg*kh*kw, Ho, Wo] and bias = [cout] implied. Empty string when valid. Used by the C ABI.
std::string validateLaunch(int32_t dtype, void const* x, void const* offsetMask, void const* weight,
                           void const* bias, void const* y, int64_t n, int64_t c, int64_t h, int64_t w,
                           int64_t cout, int64_t kh, int64_t kw, Params const& p);

// validateLaunch for the C ABI launchers, from their scalar arguments; a failure is recorded with setLastError.
// True when the launch may proceed.
bool acceptLaunch(int32_t dtype, void const* x, void const* offsetMask, void const* weight, void const* bias,
                  void const* y, int64_t n, int64_t c, int64_t h, int64_t w, int64_t cout, int64_t kh, int64_t kw,
                  int32_t stride, int32_t padding, int32_t dilation, int32_t deformableGroups);

// Output length along one axis: floor((in + 2*pad - dil*(k-1) - 1) / stride) + 1; 0 when the input is too small
// for the kernel, -1 when `in` is unknown (-1).
int64_t outputLength(int64_t in, int64_t kernel, int32_t stride, int32_t padding, int32_t dilation);

// y = [x.n, weight.n, outputLength(x.h, weight.h, ...), outputLength(x.w, weight.w, ...)].
Dims4 outputShape(Params const& p, Dims4 const& x, Dims4 const& weight);

// Scratch memory the CUDA launcher needs (the implicit-GEMM design needs none: returns 0).
size_t workspaceSize(Params const& p, Dims4 const& x, Dims4 const& weight, DataType type);

// Field (de)serialisation in kFieldNames order: one int32 per field. fromFields does not validate (call validate).
void toFields(Params const& p, int32_t (&values)[kNumFields]);
Params fromFields(int32_t const (&values)[kNumFields]);
// Sets the named field from (type, data, length) as TensorRT hands it over; accepts any integer type holding
// one in-range value. Returns an empty string on success, else a message; unknown names are an error.
std::string setField(Params& p, char const* name, FieldType type, void const* data, int32_t length);

// Records the message that adnet_dcn_last_error() returns on this thread (the C ABI implementations call it).
void setLastError(std::string const& message);

}  // namespace dcn
}  // namespace adnet

extern "C" {

// Launchers with a C ABI (ctypes, the benchmark and the adapter call these). Pointers are device pointers,
// tensors dense NCHW; `stream` is a cudaStream_t. Return 0 on success, else a cudaError_t value (or -1 for
// invalid arguments; the message is in adnet_dcn_last_error()). All float16 pointers point to IEEE binary16
// storage (__half). dtype is a DataType value (0: float32, 1: float16). `workspace` is unused (workspaceSize() is
// 0) and may be null. Batch 0 is a no-op.
int32_t adnet_dcn_forward_cuda(int32_t dtype, void const* x, void const* offsetMask, void const* weight,
                               void const* bias, void* y, int64_t n, int64_t c, int64_t h, int64_t w,
                               int64_t cout, int64_t kh, int64_t kw, int32_t stride, int32_t padding,
                               int32_t dilation, int32_t deformableGroups, void* workspace, void* stream);

// The CPU twin: the same sampling math (shared __host__ __device__ code), the same rounding points for FP16.
// Host pointers. Return 0 on success, -1 for invalid arguments.
int32_t adnet_dcn_forward_cpu(int32_t dtype, void const* x, void const* offsetMask, void const* weight,
                              void const* bias, void* y, int64_t n, int64_t c, int64_t h, int64_t w, int64_t cout,
                              int64_t kh, int64_t kw, int32_t stride, int32_t padding, int32_t dilation,
                              int32_t deformableGroups);

// Message of the last failed call on this thread (validation text), "" if none.
char const* adnet_dcn_last_error(void);

// Helpers for bindings and tests (ctypes), in both libraries.
// validateShapes on dims given as int64[4] arrays (x, offset_mask, weight) and the bias length: 0 when valid, else
// -1 with the message in adnet_dcn_last_error().
int32_t adnet_dcn_check(int32_t stride, int32_t padding, int32_t dilation, int32_t deformableGroups,
                        int64_t const* x, int64_t const* offsetMask, int64_t const* weight, int64_t biasLength);
// setField on the parameters held in `fields` (kNumFields int32 in kFieldNames order, updated in place);
// `fieldType` is a FieldType value. 0 on success, else -1 with the message in adnet_dcn_last_error().
int32_t adnet_dcn_set_field(int32_t* fields, char const* name, int32_t fieldType, void const* data,
                            int32_t length);
// toFields(Params{}): the defaults compiled from the contract header.
void adnet_dcn_default_fields(int32_t* fields);

// CPU twin library only: float32 -> IEEE binary16 bits, round to nearest even (the twin's rounding helper).
void adnet_dcn_float_to_half(float const* in, uint16_t* out, int64_t n);
}
