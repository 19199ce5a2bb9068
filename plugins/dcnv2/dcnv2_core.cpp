// Pure core of the AdnetDCNv2 op (see dcnv2_core.h): parameter and shape validation, the shape rule, field
// (de)serialisation, the thread-local last error, and the C ABI helpers shared by the kernels and twin libraries.
#include "dcnv2_core.h"

#include <cstring>
#include <limits>
#include <string>

namespace adnet {
namespace dcn {
namespace {

constexpr int64_t kUnknown = -1;
constexpr int64_t kMaxPlane = std::numeric_limits<int32_t>::max();  // int32 indexing inside a plane / row block
constexpr int64_t kMaxSide = int64_t{1} << 24;                       // float32 positions are exact below 2^24
// The fast path's segment table (dcnv2_kernel_v2.cuh): C*9/8 entries of 16 bytes in shared memory (18 KB at most),
// tap positions i*dilation, j*dilation held in 16 bits.
constexpr int64_t kFastMaxChannels = 1024;
constexpr int32_t kFastMaxDilation = 16383;

thread_local std::string tLastError;

bool known(int64_t v) { return v != kUnknown; }

std::string str(int64_t v) { return std::to_string(v); }

std::string dimsText(Dims4 const& d)
{
    return "[" + str(d.n) + ", " + str(d.c) + ", " + str(d.h) + ", " + str(d.w) + "]";
}

int32_t& fieldRef(Params& p, int32_t index)
{
    switch (index) {
    case kFieldStride: return p.stride;
    case kFieldPadding: return p.padding;
    case kFieldDilation: return p.dilation;
    default: return p.deformable_groups;
    }
}

std::string checkField(int32_t index, int64_t value)
{
    if (value < kFieldMinima[index] || value > std::numeric_limits<int32_t>::max()) {
        return std::string("AdnetDCNv2: ") + kFieldNames[index] + " = " + str(value)
               + " is out of range: it must be >= " + str(kFieldMinima[index]) + " (and fit in int32)";
    }
    return {};
}

char const* fieldTypeName(FieldType type)
{
    switch (type) {
    case FieldType::kInt32: return "INT32";
    case FieldType::kInt64: return "INT64";
    case FieldType::kInt16: return "INT16";
    case FieldType::kInt8: return "INT8";
    case FieldType::kFloat32: return "FLOAT32";
    case FieldType::kFloat64: return "FLOAT64";
    case FieldType::kChar: return "CHAR";
    default: return "an unsupported type";
    }
}

std::string checkDims(char const* name, Dims4 const& d)
{
    for (int64_t v : {d.n, d.c, d.h, d.w}) {
        if (v < kUnknown) {
            return std::string("AdnetDCNv2: ") + name + " has a negative dimension: " + dimsText(d);
        }
    }
    return {};
}

}  // namespace

std::string validate(Params const& p)
{
    int32_t values[kNumFields];
    toFields(p, values);
    for (int32_t i = 0; i < kNumFields; ++i) {
        std::string e = checkField(i, values[i]);
        if (!e.empty()) {
            return e;
        }
    }
    return {};
}

int64_t outputLength(int64_t in, int64_t kernel, int32_t stride, int32_t padding, int32_t dilation)
{
    if (!known(in) || !known(kernel)) {
        return kUnknown;
    }
    int64_t const span = in + 2 * int64_t{padding} - int64_t{dilation} * (kernel - 1) - 1;
    if (span < 0 || stride < 1) {
        return 0;
    }
    return span / stride + 1;
}

bool Problem::known() const
{
    for (Dims4 const& d : {x, offsetMask, weight}) {
        for (int64_t v : {d.n, d.c, d.h, d.w}) {
            if (v < 0) return false;
        }
    }
    return biasLength >= 0;
}

Problem makeProblem(Params const& p, DataType type, Dims4 const& x, Dims4 const& offsetMask, Dims4 const& weight,
                    int64_t biasLength)
{
    Problem q;
    q.params = p;
    q.dtype = static_cast<int32_t>(type);
    q.x = x;
    q.offsetMask = offsetMask;
    q.weight = weight;
    q.biasLength = biasLength;
    // Ho/Wo come from the offsets (as in TensorRT's own ModulatedDeformConv2d plugin); validate() checks that they
    // are the convolution's output size.
    q.y = Dims4{x.n, weight.n, offsetMask.h, offsetMask.w};
    auto product = [](int64_t a, int64_t b) { return known(a) && known(b) ? a * b : kUnknown; };
    q.k = product(weight.h, weight.w);
    q.cg = known(x.c) && p.deformable_groups > 0 ? x.c / p.deformable_groups : kUnknown;
    q.hw = product(x.h, x.w);
    q.howo = product(q.y.h, q.y.w);
    q.pixels = product(x.n, q.howo);
    q.reduction = product(x.c, q.k);
    return q;
}

Problem makeProblem(AdnetDcnProblem const& d)
{
    Params p;
    p.stride = d.stride;
    p.padding = d.padding;
    p.dilation = d.dilation;
    p.deformable_groups = d.deformable_groups;
    auto dims = [](int64_t const (&v)[4]) { return Dims4{v[0], v[1], v[2], v[3]}; };
    Problem q = makeProblem(p, DataType::kFloat32, dims(d.x), dims(d.offset_mask), dims(d.weight), d.bias_length);
    q.dtype = d.dtype;
    q.xFormat = d.x_format;
    q.offsetMaskFormat = d.offset_mask_format;
    q.yFormat = d.y_format;
    q.variant = d.variant;
    return q;
}

bool Problem::fastPath() const
{
    return xFormat == static_cast<int32_t>(Format::kChannelsLast) && variant != static_cast<int32_t>(Variant::kV1);
}

namespace {

constexpr int32_t kLinear = static_cast<int32_t>(Format::kLinear);
constexpr int32_t kChannelsLast = static_cast<int32_t>(Format::kChannelsLast);

bool vectorChannels(int64_t channels) { return known(channels) && channels > 0 && channels % kChannelsLastVector == 0; }

// Why x cannot be channels-last for this problem ("" when it can). Unknown dims pass unless `requireKnown`.
std::string channelsLastRefusal(Problem const& q, bool requireKnown)
{
    if (q.type() != DataType::kFloat16) return "channels-last tensors must be float16";
    bool const dimsKnown = known(q.cg) && known(q.weight.h) && known(q.weight.w);
    if (!dimsKnown) {
        return requireKnown ? "channels-last x needs C, deformable_groups and the kernel size known at build time"
                            : std::string();
    }
    if (!vectorChannels(q.cg)) {
        return "channels-last x needs C/deformable_groups a multiple of 8, got C = " + str(q.x.c)
               + ", deformable_groups = " + str(q.params.deformable_groups);
    }
    if (!(q.weight.h == 3 && q.weight.w == 3)) {
        return "channels-last x needs a 3x3 kernel, got " + str(q.weight.h) + "x" + str(q.weight.w);
    }
    if (q.x.c > kFastMaxChannels) {
        return "channels-last x needs C <= " + str(kFastMaxChannels) + ", got C = " + str(q.x.c);
    }
    if (q.params.dilation > kFastMaxDilation) {
        return "channels-last x needs dilation <= " + str(kFastMaxDilation) + ", got "
               + str(q.params.dilation);
    }
    return {};
}

}  // namespace

bool formatSupported(Problem const& q, int32_t position)
{
    bool const f16 = q.type() == DataType::kFloat16;
    bool const xLast = q.xFormat == kChannelsLast;
    switch (position) {
    case 0: return q.xFormat == kLinear || (q.xFormat == kChannelsLast && channelsLastRefusal(q, true).empty());
    case 1:
        return q.offsetMaskFormat == kLinear
               || (q.offsetMaskFormat == kChannelsLast && f16 && xLast && vectorChannels(q.offsetMask.c));
    case 2:
    case 3: return true;  // weight and bias have no format in the problem: always linear
    case 4: return q.yFormat == kLinear || (q.yFormat == kChannelsLast && f16 && xLast && vectorChannels(q.weight.n));
    default: return false;
    }
}

std::string validate(Problem const& q)
{
    Params const& p = q.params;
    Dims4 const& x = q.x;
    Dims4 const& offsetMask = q.offsetMask;
    Dims4 const& weight = q.weight;
    std::string const pre = "AdnetDCNv2: ";
    if (q.dtype != static_cast<int32_t>(DataType::kFloat32) && q.dtype != static_cast<int32_t>(DataType::kFloat16)) {
        return pre + "dtype " + str(q.dtype) + " is not supported: use 0 (float32) or 1 (float16)";
    }
    for (int32_t f : {q.xFormat, q.offsetMaskFormat, q.yFormat}) {
        if (f != kLinear && f != kChannelsLast) {
            return pre + "format " + str(f) + " is not supported: use 0 (linear NCHW) or 1 (channels-last NHWC)";
        }
    }
    if (q.variant < 0 || q.variant > static_cast<int32_t>(Variant::kV2)) {
        return pre + "variant " + str(q.variant) + " is not supported: use 0 (best), 1 (v1) or 2 (v2)";
    }
    std::string e = validate(p);
    if (e.empty()) e = checkDims("x", x);
    if (e.empty()) e = checkDims("offset_mask_logits", offsetMask);
    if (e.empty()) e = checkDims("weight", weight);
    if (!e.empty()) {
        return e;
    }
    if (known(x.c) && x.c < 1) return pre + "x must have at least one channel, got " + dimsText(x);
    if ((known(x.h) && x.h < 1) || (known(x.w) && x.w < 1)) return pre + "x has an empty image: " + dimsText(x);
    if ((known(weight.n) && weight.n < 1) || (known(weight.h) && weight.h < 1) || (known(weight.w) && weight.w < 1)) {
        return pre + "weight [Cout, C, kh, kw] must have Cout, kh, kw >= 1, got " + dimsText(weight);
    }
    if (known(weight.c) && known(x.c) && weight.c != x.c) {
        return pre + "weight " + dimsText(weight) + " has " + str(weight.c) + " input channels but x " + dimsText(x)
               + " has " + str(x.c) + "; weight must be [Cout, C, kh, kw] (weight groups = 1)";
    }
    if (known(x.c) && x.c % p.deformable_groups != 0) {
        return pre + "deformable_groups = " + str(p.deformable_groups) + " must divide the input channels C = "
               + str(x.c);
    }
    if (known(x.n) && known(offsetMask.n) && x.n != offsetMask.n) {
        return pre + "offset_mask_logits batch " + str(offsetMask.n) + " differs from x batch " + str(x.n);
    }
    if (known(q.k) && known(offsetMask.c)) {
        int64_t const expected = (kOffsetBlocks + kMaskBlocks) * int64_t{p.deformable_groups} * q.k;
        if (offsetMask.c != expected) {
            return pre + "offset_mask_logits has " + str(offsetMask.c) + " channels, expected " + str(expected)
                   + " = 3*deformable_groups*kh*kw = 3*" + str(p.deformable_groups) + "*" + str(q.k)
                   + " (2*dg*kh*kw offsets, then dg*kh*kw mask logits)";
        }
    }
    int64_t const ho = outputLength(x.h, weight.h, p.stride, p.padding, p.dilation);
    int64_t const wo = outputLength(x.w, weight.w, p.stride, p.padding, p.dilation);
    if ((known(ho) && ho < 1) || (known(wo) && wo < 1)) {
        return pre + "output would be empty (" + str(ho) + "x" + str(wo) + "): input " + str(x.h) + "x" + str(x.w)
               + " is too small for kernel " + str(weight.h) + "x" + str(weight.w) + " with padding "
               + str(p.padding) + ", dilation " + str(p.dilation) + ", stride " + str(p.stride);
    }
    if ((known(ho) && known(offsetMask.h) && offsetMask.h != ho)
        || (known(wo) && known(offsetMask.w) && offsetMask.w != wo)) {
        return pre + "offset_mask_logits spatial size " + str(offsetMask.h) + "x" + str(offsetMask.w)
               + " must equal the output size " + str(ho) + "x" + str(wo);
    }
    if (known(q.biasLength) && known(weight.n) && q.biasLength != weight.n) {
        return pre + "bias has " + str(q.biasLength) + " elements, expected Cout = " + str(weight.n);
    }
    // Index limits of the kernels (int32 offsets inside planes; float32 positions).
    if ((known(x.h) && x.h >= kMaxSide) || (known(x.w) && x.w >= kMaxSide)) {
        return pre + "input " + str(x.h) + "x" + str(x.w) + " is too large: H and W must be below 2^24";
    }
    if (known(q.hw) && q.hw > kMaxPlane) {
        return pre + "input plane " + str(x.h) + "x" + str(x.w) + " has more than 2^31-1 pixels";
    }
    if (known(ho) && known(wo) && ho * wo > kMaxPlane) {
        return pre + "output plane " + str(ho) + "x" + str(wo) + " has more than 2^31-1 pixels";
    }
    if (known(x.c) && known(q.k)
        && (x.c > kMaxPlane || q.k > kMaxPlane || q.reduction > kMaxPlane
            || 3 * int64_t{p.deformable_groups} * q.k > kMaxPlane)) {
        return pre + "C*kh*kw = " + str(x.c) + "*" + str(weight.h) + "*" + str(weight.w) + " is too large";
    }
    if (known(weight.n) && weight.n > kMaxPlane) {
        return pre + "Cout = " + str(weight.n) + " is too large";
    }
    if (q.xFormat == kChannelsLast) {
        if (q.variant == static_cast<int32_t>(Variant::kV1)) {
            return pre + "the v1 kernel reads NCHW only: pass linear tensors, or variant 0/2 for channels-last x";
        }
        std::string const refusal = channelsLastRefusal(q, false);
        if (!refusal.empty()) {
            return pre + refusal + " (use linear NCHW tensors otherwise)";
        }
        if (known(q.hw) && known(x.c) && q.hw * x.c > kMaxPlane) {
            return pre + "channels-last input " + str(x.h) + "x" + str(x.w) + "x" + str(x.c)
                   + " has more than 2^31-1 elements per image";
        }
        if (known(q.howo) && known(offsetMask.c) && q.howo * offsetMask.c > kMaxPlane) {
            return pre + "offset_mask_logits " + str(offsetMask.c) + "x" + str(ho) + "x" + str(wo)
                   + " has more than 2^31-1 elements per image (32-bit offsets of the fast path)";
        }
    } else if (q.offsetMaskFormat == kChannelsLast || q.yFormat == kChannelsLast) {
        return pre + "channels-last offset_mask_logits or y need channels-last x (the fast path)";
    }
    if (q.offsetMaskFormat == kChannelsLast && known(offsetMask.c) && !vectorChannels(offsetMask.c)) {
        return pre + "channels-last offset_mask_logits needs a multiple of 8 channels, got " + str(offsetMask.c)
               + " (3*kh*kw*deformable_groups: deformable_groups a multiple of 8 for 3x3)";
    }
    if (q.yFormat == kChannelsLast && known(weight.n) && !vectorChannels(weight.n)) {
        return pre + "channels-last y needs Cout a multiple of 8, got " + str(weight.n);
    }
    return {};
}

std::string validateLaunch(Problem const& q, AdnetDcnTensors const& t)
{
    std::string e = validate(q);
    if (!e.empty()) {
        return e;
    }
    if (!q.known()) {
        return "AdnetDCNv2: launch dims must be known and non-negative, got x " + dimsText(q.x) + ", offset_mask "
               + dimsText(q.offsetMask) + ", weight " + dimsText(q.weight) + ", bias " + str(q.biasLength);
    }
    char const* names[] = {"x", "offset_mask_logits", "weight", "bias", "y"};
    void const* pointers[] = {t.x, t.offset_mask, t.weight, t.bias, t.y};
    for (int i = 0; i < 5; ++i) {
        if (pointers[i] == nullptr && (q.x.n > 0 || i == 2 || i == 3)) {
            return std::string("AdnetDCNv2: the ") + names[i] + " pointer is null";
        }
    }
    return {};
}

void toFields(Params const& p, int32_t (&values)[kNumFields])
{
    Params copy = p;
    for (int32_t i = 0; i < kNumFields; ++i) {
        values[i] = fieldRef(copy, i);
    }
}

Params fromFields(int32_t const (&values)[kNumFields])
{
    Params p;
    for (int32_t i = 0; i < kNumFields; ++i) {
        fieldRef(p, i) = values[i];
    }
    return p;
}

std::string setField(Params& p, char const* name, FieldType type, void const* data, int32_t length)
{
    if (name == nullptr) {
        return "AdnetDCNv2: a plugin field has no name";
    }
    int32_t index = -1;
    std::string known_names;
    for (int32_t i = 0; i < kNumFields; ++i) {
        if (std::strcmp(name, kFieldNames[i]) == 0) {
            index = i;
        }
        known_names += (i ? ", " : "") + std::string(kFieldNames[i]);
    }
    std::string const pre = std::string("AdnetDCNv2: field '") + name + "' ";
    if (index < 0) {
        return std::string("AdnetDCNv2: unknown field '") + name + "'; the fields are " + known_names;
    }
    if (length != 1) {
        return pre + "must hold exactly one value, got length " + str(length);
    }
    if (data == nullptr) {
        return pre + "has no data";
    }
    int64_t value = 0;
    switch (type) {
    case FieldType::kInt32: { int32_t v; std::memcpy(&v, data, sizeof v); value = v; break; }
    case FieldType::kInt64: { int64_t v; std::memcpy(&v, data, sizeof v); value = v; break; }
    case FieldType::kInt16: { int16_t v; std::memcpy(&v, data, sizeof v); value = v; break; }
    case FieldType::kInt8: { int8_t v; std::memcpy(&v, data, sizeof v); value = v; break; }
    default:
        return pre + "must be an integer (one integer of type INT8, INT16, INT32 or INT64; ONNX INT attributes "
               "arrive as INT32), got " + fieldTypeName(type);
    }
    std::string e = checkField(index, value);
    if (!e.empty()) {
        return e;
    }
    fieldRef(p, index) = static_cast<int32_t>(value);
    return {};
}

void setLastError(std::string const& message) { tLastError = message; }

bool acceptLaunch(AdnetDcnProblem const* desc, AdnetDcnTensors const* tensors, Problem& problem)
{
    if (desc == nullptr || tensors == nullptr) {
        setLastError("AdnetDCNv2: the problem and tensors arguments must not be null");
        return false;
    }
    problem = makeProblem(*desc);
    std::string const e = validateLaunch(problem, *tensors);
    if (!e.empty()) {
        setLastError(e);
        return false;
    }
    return true;
}

}  // namespace dcn
}  // namespace adnet

namespace dcn = adnet::dcn;

extern "C" char const* adnet_dcn_last_error(void) { return dcn::tLastError.c_str(); }

extern "C" int32_t adnet_dcn_check(AdnetDcnProblem const* problem)
{
    if (problem == nullptr) {
        dcn::setLastError("AdnetDCNv2: adnet_dcn_check needs a problem");
        return -1;
    }
    std::string const e = dcn::validate(dcn::makeProblem(*problem));
    if (!e.empty()) {
        dcn::setLastError(e);
        return -1;
    }
    return 0;
}

extern "C" int32_t adnet_dcn_supports(AdnetDcnProblem const* problem, int32_t position)
{
    return problem != nullptr && dcn::formatSupported(dcn::makeProblem(*problem), position) ? 1 : 0;
}

extern "C" int64_t adnet_dcn_output_length(int64_t in, int64_t kernel, int32_t stride, int32_t padding,
                                           int32_t dilation)
{
    return dcn::outputLength(in, kernel, stride, padding, dilation);
}

extern "C" int32_t adnet_dcn_set_field(int32_t* fields, char const* name, int32_t fieldType, void const* data,
                                       int32_t length)
{
    if (fields == nullptr) {
        dcn::setLastError("AdnetDCNv2: adnet_dcn_set_field needs a fields array");
        return -1;
    }
    int32_t values[dcn::kNumFields];
    std::memcpy(values, fields, sizeof values);
    dcn::Params p = dcn::fromFields(values);
    bool const typeKnown = fieldType >= 0 && fieldType <= static_cast<int32_t>(dcn::FieldType::kOther);
    std::string const e = dcn::setField(p, name, typeKnown ? static_cast<dcn::FieldType>(fieldType)
                                                           : dcn::FieldType::kOther, data, length);
    if (!e.empty()) {
        dcn::setLastError(e);
        return -1;
    }
    dcn::toFields(p, values);
    std::memcpy(fields, values, sizeof values);
    return 0;
}

extern "C" void adnet_dcn_default_fields(int32_t* fields)
{
    int32_t values[dcn::kNumFields];
    dcn::toFields(dcn::Params{}, values);
    std::memcpy(fields, values, sizeof values);
}
