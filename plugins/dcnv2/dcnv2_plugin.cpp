// AdnetDCNv2 as a TensorRT IPluginV3: translates TensorRT's shapes, types and fields to the pure core
// (dcnv2_core.h) and launches its CUDA kernel. Boilerplate (status codes, logging, registration) is in plugin_base.h.
#include "plugin_base.h"

#include "dcnv2_core.h"
#include "dcnv2_kernel.h"

#include <cuda_runtime_api.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>

namespace adnet {
namespace trt {
namespace {

namespace dcn = ::adnet::dcn;
using nvinfer1::DataType;
using nvinfer1::DimsExprs;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::IExprBuilder;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;
using nvinfer1::PluginTensorDesc;

constexpr int32_t kX = 0;
constexpr int32_t kOffsetMask = 1;
constexpr int32_t kWeight = 2;
constexpr int32_t kBias = 3;

dcn::FieldType coreFieldType(PluginFieldType type)
{
    switch (type)
    {
    case PluginFieldType::kINT32: return dcn::FieldType::kInt32;
    case PluginFieldType::kINT64: return dcn::FieldType::kInt64;
    case PluginFieldType::kINT16: return dcn::FieldType::kInt16;
    case PluginFieldType::kINT8: return dcn::FieldType::kInt8;
    case PluginFieldType::kFLOAT32: return dcn::FieldType::kFloat32;
    case PluginFieldType::kFLOAT64: return dcn::FieldType::kFloat64;
    case PluginFieldType::kCHAR: return dcn::FieldType::kChar;
    default: return dcn::FieldType::kOther;
    }
}

std::string typeName(DataType type)
{
    switch (type)
    {
    case DataType::kFLOAT: return "FP32";
    case DataType::kHALF: return "FP16";
    case DataType::kBF16: return "BF16";
    case DataType::kFP8: return "FP8";
    case DataType::kINT8: return "INT8";
    case DataType::kINT32: return "INT32";
    case DataType::kINT64: return "INT64";
    case DataType::kBOOL: return "BOOL";
    case DataType::kUINT8: return "UINT8";
    default: return "DataType " + std::to_string(static_cast<int32_t>(type));
    }
}

bool supportedType(DataType type)
{
    return type == DataType::kFLOAT || type == DataType::kHALF;
}

dcn::DataType coreDataType(DataType type)
{
    ADNET_REQUIRE(supportedType(type), "tensors are " + typeName(type) + "; AdnetDCNv2 runs in FP32 or FP16");
    return type == DataType::kHALF ? dcn::DataType::kFloat16 : dcn::DataType::kFloat32;
}

std::string dimsText(nvinfer1::Dims const& dims)
{
    std::string text = "[";
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        text += (i == 0 ? "" : ",") + std::to_string(dims.d[i]);
    }
    return text + "]";
}

// The build-time constants of a dims expression, -1 where a dim is only known at run time.
nvinfer1::Dims knownDims(DimsExprs const& exprs)
{
    nvinfer1::Dims dims{};
    dims.nbDims = exprs.nbDims;
    for (int32_t i = 0; i < exprs.nbDims && i < nvinfer1::Dims::MAX_DIMS; ++i)
    {
        dims.d[i] = exprs.d[i]->isConstant() ? exprs.d[i]->getConstantValue() : -1;
    }
    return dims;
}

void requireRank(nvinfer1::Dims const& dims, int32_t input)
{
    int32_t const rank = input == kBias ? 1 : 4;
    ADNET_REQUIRE(dims.nbDims == rank, std::string(dcn::kInputNames[input]) + " must have rank " + std::to_string(rank)
                                           + ", got " + dimsText(dims));
}

dcn::Dims4 dims4(nvinfer1::Dims const& dims)
{
    return dcn::Dims4{dims.d[0], dims.d[1], dims.d[2], dims.d[3]};
}

using InputDims = std::array<nvinfer1::Dims, dcn::kNumInputs>;
constexpr int32_t kOutput = dcn::kNumInputs;  // y's position in supportsFormatCombination

// The core's format for a TensorRT format: channel-last FP16 (kHWC8, and kHWC, which is the same memory when C is a
// multiple of 8, as the core requires) or linear; -1 for anything else.
int32_t coreFormat(nvinfer1::TensorFormat format)
{
    switch (format)
    {
    case nvinfer1::TensorFormat::kLINEAR: return static_cast<int32_t>(dcn::Format::kLinear);
    case nvinfer1::TensorFormat::kHWC8:
    case nvinfer1::TensorFormat::kHWC: return static_cast<int32_t>(dcn::Format::kChannelsLast);
    default: return -1;
    }
}

// The core's problem for these dims (-1 where unknown), this type and these formats (x, offset_mask, y); checks the
// ranks first.
dcn::Problem problemOf(dcn::Params const& params, DataType type, InputDims const& dims,
                       std::array<int32_t, 3> const& formats = {0, 0, 0})
{
    for (int32_t i = 0; i < dcn::kNumInputs; ++i)
    {
        requireRank(dims[i], i);
    }
    dcn::Problem problem = dcn::makeProblem(params, coreDataType(type), dims4(dims[kX]), dims4(dims[kOffsetMask]),
                                            dims4(dims[kWeight]), dims[kBias].d[0]);
    problem.xFormat = formats[0];
    problem.offsetMaskFormat = formats[1];
    problem.yFormat = formats[2];
    return problem;
}

template <typename Desc>
nvinfer1::PluginTensorDesc const& plain(Desc const& d)
{
    if constexpr (std::is_same_v<Desc, DynamicPluginTensorDesc>)
    {
        return d.desc;
    }
    else
    {
        return d;
    }
}

// The problem of a configured or running plugin: dims, type and formats from the tensor descriptions.
template <typename Desc>
dcn::Problem problemOf(dcn::Params const& params, Desc const* in, Desc const* out)
{
    InputDims dims{};
    for (int32_t i = 0; i < dcn::kNumInputs; ++i)
    {
        dims[i] = plain(in[i]).dims;
    }
    return problemOf(params, plain(in[kX]).type, dims,
                     {coreFormat(plain(in[kX]).format), coreFormat(plain(in[kOffsetMask]).format),
                      coreFormat(plain(out[0]).format)});
}

class DCNv2Plugin final : public PluginBase<DCNv2Plugin>
{
public:
    static constexpr char const* kName = dcn::kPluginName;
    static constexpr char const* kVersion = dcn::kPluginVersion;
    static constexpr char const* kNamespace = dcn::kPluginNamespace;
    static constexpr int32_t kNbInputs = dcn::kNumInputs;
    static constexpr int32_t kNbOutputs = dcn::kNumOutputs;
    static constexpr int32_t kNbFields = dcn::kNumFields;
    static constexpr char const* const (&kFieldNames)[kNbFields] = dcn::kFieldNames;

    explicit DCNv2Plugin(dcn::Params const& params)
        : mParams(params)
    {
    }

    static std::unique_ptr<DCNv2Plugin> fromFields(PluginFieldCollection const& fc)
    {
        dcn::Params params;
        for (int32_t i = 0; i < fc.nbFields; ++i)
        {
            nvinfer1::PluginField const& field = fc.fields[i];
            ADNET_REQUIRE(field.name != nullptr, "field " + std::to_string(i) + " has no name");
            std::string const error
                = dcn::setField(params, field.name, coreFieldType(field.type), field.data, field.length);
            ADNET_REQUIRE(error.empty(), error);
        }
        std::string const error = dcn::validate(params);
        ADNET_REQUIRE(error.empty(), error);
        return std::make_unique<DCNv2Plugin>(params);
    }

    void fieldValues(int32_t (&values)[kNbFields]) const
    {
        dcn::toFields(mParams, values);
    }

    // y has the type of x; the inputs must agree (a strongly typed network passes them through unchanged).
    void outputTypes(DataType* out, DataType const* in) const
    {
        ADNET_REQUIRE(supportedType(in[kX]),
                      "x is " + typeName(in[kX]) + "; all four inputs must be FP32, or all FP16");
        for (int32_t i = 1; i < kNbInputs; ++i)
        {
            ADNET_REQUIRE(in[i] == in[kX], std::string(dcn::kInputNames[i]) + " is " + typeName(in[i]) + " but x is "
                                               + typeName(in[kX]) + "; all four inputs must be FP32, or all FP16");
        }
        out[0] = in[kX];
    }

    // y = [B, Cout, Ho, Wo] with Ho, Wo those of offset_mask_logits (as TensorRT's ModulatedDeformConv2d plugin
    // does): B, H and W may stay dynamic, and the core checks that Ho, Wo are the convolution's output size.
    void outputShapes(DimsExprs const* in, DimsExprs* out, IExprBuilder&) const
    {
        // Fails while the network is being parsed when the dims known by then (usually the channels) disagree.
        InputDims known{};
        for (int32_t i = 0; i < kNbInputs; ++i)
        {
            known[i] = knownDims(in[i]);
        }
        requireValid(problemOf(mParams, DataType::kFLOAT, known));
        out[0].nbDims = 4;
        out[0].d[0] = in[kX].d[0];
        out[0].d[1] = in[kWeight].d[0];
        out[0].d[2] = in[kOffsetMask].d[2];
        out[0].d[3] = in[kOffsetMask].d[3];
    }

    // All four inputs and the output FP32, or all FP16. Linear everywhere; FP16 channel-last (kHWC8 / kHWC) for x
    // when the fast path serves the problem, then also for offset_mask and y (the core's formatSupported), so that
    // TensorRT needs no reformat next to the plugin whichever format its FP16 neighbours pick. TensorRT asks in
    // position order: only the types and formats of positions up to `pos` are decided.
    bool supports(int32_t pos, DynamicPluginTensorDesc const* inOut) const
    {
        PluginTensorDesc const& desc = inOut[pos].desc;
        if (!supportedType(desc.type) || (pos > 0 && desc.type != inOut[0].desc.type) || coreFormat(desc.format) < 0)
        {
            return false;
        }
        if ((pos == kWeight || pos == kBias) && desc.format != nvinfer1::TensorFormat::kLINEAR)
        {
            return false;
        }
        InputDims dims{};
        for (int32_t i = 0; i < kNbInputs; ++i)
        {
            dims[i] = inOut[i].desc.dims;
        }
        std::array<int32_t, 3> formats{0, 0, 0};
        formats[0] = coreFormat(inOut[kX].desc.format);
        if (pos >= kOffsetMask)
        {
            formats[1] = coreFormat(inOut[kOffsetMask].desc.format);
        }
        if (pos == kOutput)
        {
            formats[2] = coreFormat(desc.format);
        }
        return dcn::formatSupported(problemOf(mParams, inOut[kX].desc.type, dims, formats), pos);
    }

    // Build time: dims may still hold -1 (dynamic B/H/W); the core skips the checks that need them, and
    // shapeChange repeats the check with real dims.
    void configure(DynamicPluginTensorDesc const* in, DynamicPluginTensorDesc const* out)
    {
        requireValid(problemOf(mParams, in, out));
    }

    // The kernels need no scratch memory: the implicit GEMM keeps its columns in shared memory.
    size_t workspace(DynamicPluginTensorDesc const*, DynamicPluginTensorDesc const*) const
    {
        return 0;
    }

    void shapeChange(PluginTensorDesc const* in, PluginTensorDesc const* out)
    {
        requireValid(problemOf(mParams, in, out));
    }

    void execute(PluginTensorDesc const* inDesc, PluginTensorDesc const* outDesc, void const* const* in,
                 void* const* out, void*, cudaStream_t stream) const
    {
        dcn::Problem const problem = problemOf(mParams, inDesc, outDesc);
        AdnetDcnTensors const tensors{in[kX], in[kOffsetMask], in[kWeight], in[kBias], out[0]};
        std::string const error = dcn::validateLaunch(problem, tensors);
        ADNET_REQUIRE(error.empty(), error);
        cudaError_t const status = dcn::forwardCuda(problem, tensors, stream);
        ADNET_REQUIRE(status == cudaSuccess, std::string("CUDA launch failed: ") + cudaGetErrorName(status) + ": "
                                                 + cudaGetErrorString(status));
    }

private:
    static void requireValid(dcn::Problem const& problem)
    {
        std::string const error = dcn::validate(problem);
        ADNET_REQUIRE(error.empty(), error);
    }

    dcn::Params mParams;
};

using DCNv2Creator = CreatorBase<DCNv2Plugin>;

}  // namespace
}  // namespace trt
}  // namespace adnet

ADNET_TENSORRT_PLUGIN_LIBRARY(adnet::trt::DCNv2Creator)
