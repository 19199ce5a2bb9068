// The TensorRT boilerplate shared by every IPluginV3 op of this project, so that an op's file holds only its shapes,
// formats, workspace, enqueue and fields.
//
// - PluginBase<Op> (CRTP) implements IPluginV3 + IPluginV3OneCore/OneBuild/OneRuntime. Every noexcept TensorRT
//   method checks the I/O counts, forwards to a plain member of Op that throws PluginError (ADNET_REQUIRE) on bad
//   input, and turns any exception into a status code (or nullptr/false) plus one message naming the op, the
//   TensorRT call and the cause. The message goes to the execution context's error recorder when the plugin is
//   attached to one, else to the application's logger (ILoggerFinder from loadLibrary, else TensorRT's global
//   getLogger()).
// - CreatorBase<Op> implements IPluginCreatorV3One: name/version/namespace and the field table come from Op.
// - ADNET_TENSORRT_PLUGIN_LIBRARY(Creator...) makes the shared library loadable both ways TensorRT users load
//   plugins: registration at load time (dlopen, LD_PRELOAD, Triton's `plugins=`, polygraphy --plugins,
//   trtexec --staticPlugins) and the exported `getCreators` / `setLoggerFinder` entry points that
//   IPluginRegistry::loadLibrary looks up (trtexec --dynamicPlugins, plugin libraries serialised with an engine);
//   PluginLibrary (below) says how each creator is registered exactly once; `adnet_register_plugins` registers
//   explicitly (idempotent).
//
// What Op provides (all may throw PluginError):
//   static constexpr char const* kName, kVersion, kNamespace; static constexpr int32_t kNbInputs, kNbOutputs;
//   static constexpr int32_t kNbFields; static constexpr char const* const (&kFieldNames)[kNbFields];
//   static std::unique_ptr<Op> fromFields(nvinfer1::PluginFieldCollection const&);   // build and runtime phase
//   void fieldValues(int32_t (&values)[kNbFields]) const;                             // what is serialised
//   void outputTypes(DataType* out, DataType const* in) const;
//   void outputShapes(DimsExprs const* in, DimsExprs* out, IExprBuilder&) const;
//   bool supports(int32_t pos, DynamicPluginTensorDesc const* inOut) const;
//   void configure(DynamicPluginTensorDesc const* in, DynamicPluginTensorDesc const* out);
//   size_t workspace(DynamicPluginTensorDesc const* in, DynamicPluginTensorDesc const* out) const;
//   void shapeChange(PluginTensorDesc const* in, PluginTensorDesc const* out);
//   void execute(PluginTensorDesc const* inDesc, PluginTensorDesc const* outDesc, void const* const* in,
//                void* const* out, void* workspace, cudaStream_t stream) const;
// Fields are scalar INT32 (what TensorRT's ONNX parser makes of INT attributes).
#pragma once

#include <NvInferRuntime.h>

#include <dlfcn.h>
#include <unwind.h>

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

// The entry points TensorRT looks up with dlsym must stay visible when the library is built -fvisibility=hidden.
#define ADNET_PLUGIN_EXPORT __attribute__((visibility("default")))

// Throws a PluginError with `message` (a std::string expression, only built on failure) unless `cond` holds.
#define ADNET_REQUIRE(cond, message)                                                                                \
    do                                                                                                              \
    {                                                                                                               \
        if (!(cond))                                                                                                \
        {                                                                                                           \
            throw ::adnet::trt::PluginError(message);                                                               \
        }                                                                                                           \
    } while (0)

namespace adnet {
namespace trt {

// A user-facing plugin error: the message names the cause (bad field, inconsistent shapes, failed launch).
class PluginError : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

namespace detail {

inline std::atomic<nvinfer1::ILoggerFinder*>& loggerFinder() noexcept
{
    static std::atomic<nvinfer1::ILoggerFinder*> finder{nullptr};
    return finder;
}

inline nvinfer1::ILogger* logger() noexcept
{
    nvinfer1::ILogger* found = nullptr;
    if (nvinfer1::ILoggerFinder* finder = loggerFinder().load())
    {
        try
        {
            found = finder->findLogger();
        }
        catch (...)
        {
            found = nullptr;
        }
    }
    return found != nullptr ? found : ::getLogger();
}

inline void log(nvinfer1::ILogger::Severity severity, char const* message) noexcept
{
    if (nvinfer1::ILogger* sink = logger())
    {
        sink->log(severity, message);
    }
}

// Holds a counted reference to the execution context's error recorder (IErrorRecorder is reference counted).
class RecorderRef
{
public:
    RecorderRef() = default;
    explicit RecorderRef(nvinfer1::IErrorRecorder* recorder) noexcept
        : mRecorder(recorder)
    {
        if (mRecorder != nullptr)
        {
            mRecorder->incRefCount();
        }
    }
    RecorderRef(RecorderRef const& other) noexcept
        : RecorderRef(other.mRecorder)
    {
    }
    RecorderRef& operator=(RecorderRef other) noexcept
    {
        std::swap(mRecorder, other.mRecorder);
        return *this;
    }
    ~RecorderRef()
    {
        if (mRecorder != nullptr)
        {
            mRecorder->decRefCount();
        }
    }
    nvinfer1::IErrorRecorder* get() const noexcept
    {
        return mRecorder;
    }

private:
    nvinfer1::IErrorRecorder* mRecorder{nullptr};
};

// "<op> <call>: <cause>" to the recorder if there is one, else to the logger. A cause that already starts with
// "<op>: " (the core's messages do) keeps its text after that prefix.
inline void report(nvinfer1::IErrorRecorder* recorder, nvinfer1::ErrorCode code, char const* op, char const* call,
                   char const* cause) noexcept
{
    try
    {
        std::string const prefix = std::string(op) + ": ";
        std::string const text = cause;
        std::string const message = std::string(op) + " " + call + ": "
            + (text.compare(0, prefix.size(), prefix) == 0 ? text.substr(prefix.size()) : text);
        if (recorder != nullptr)
        {
            recorder->reportError(code, message.c_str());
        }
        else
        {
            log(nvinfer1::ILogger::Severity::kERROR, message.c_str());
        }
    }
    catch (...)
    {
        log(nvinfer1::ILogger::Severity::kERROR, cause);
    }
}

// Runs `body`; an exception becomes a report and `onError`.
template <typename Result, typename Body>
Result guarded(nvinfer1::IErrorRecorder* recorder, nvinfer1::ErrorCode code, char const* op, char const* call,
               Result onError, Body&& body) noexcept
{
    try
    {
        return body();
    }
    catch (std::exception const& e)
    {
        report(recorder, code, op, call, e.what());
    }
    catch (...)
    {
        report(recorder, code, op, call, "unknown exception");
    }
    return onError;
}

// The op's name, version and namespace (Op::kName, kVersion, kNamespace) for an interface that asks for them: the
// plugin's IPluginV3OneCore and its creator's IPluginCreatorV3One, so that the two cannot drift apart.
template <typename Op, typename Interface>
class NamedBy : public Interface
{
public:
    char const* getPluginName() const noexcept override
    {
        return Op::kName;
    }
    char const* getPluginVersion() const noexcept override
    {
        return Op::kVersion;
    }
    char const* getPluginNamespace() const noexcept override
    {
        return Op::kNamespace;
    }
};

}  // namespace detail

template <typename Op>
class PluginBase : public nvinfer1::IPluginV3,
                   public detail::NamedBy<Op, nvinfer1::IPluginV3OneCore>,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime
{
public:
    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override
    {
        switch (type)
        {
        case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
        case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
        case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
        }
        return nullptr;
    }

    nvinfer1::IPluginV3* clone() noexcept override
    {
        return guard<nvinfer1::IPluginV3*>("clone", nullptr, [&]() -> nvinfer1::IPluginV3* { return copy(); });
    }

    // IPluginV3OneCore: name, version and namespace come from detail::NamedBy

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override
    {
        return Op::kNbOutputs;
    }

    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
                               nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override
    {
        return status("getOutputDataTypes", [&] {
            requireCounts(nbInputs, nbOutputs);
            self().outputTypes(outputTypes, inputTypes);
        });
    }

    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const*,
                            int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                            nvinfer1::IExprBuilder& exprBuilder) noexcept override
    {
        return status("getOutputShapes", [&] {
            requireCounts(nbInputs, nbOutputs);
            ADNET_REQUIRE(nbShapeInputs == 0, "expected no shape-tensor inputs, got " + std::to_string(nbShapeInputs));
            self().outputShapes(inputs, outputs, exprBuilder);
        });
    }

    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                   int32_t nbOutputs) noexcept override
    {
        return guard<bool>("supportsFormatCombination", false, [&] {
            requireCounts(nbInputs, nbOutputs);
            ADNET_REQUIRE(pos >= 0 && pos < nbInputs + nbOutputs, "position " + std::to_string(pos) + " out of range");
            return self().supports(pos, inOut);
        });
    }

    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                            nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override
    {
        return status("configurePlugin", [&] {
            requireCounts(nbInputs, nbOutputs);
            self().configure(in, out);
        });
    }

    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                            nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override
    {
        return guard<size_t>("getWorkspaceSize", 0, [&] {
            requireCounts(nbInputs, nbOutputs);
            return self().workspace(inputs, outputs);
        });
    }

    // "stride=1 padding=1 ...": shown by trtexec/polygraphy layer info.
    char const* getMetadataString() noexcept override
    {
        return guard<char const*>("getMetadataString", nullptr, [&] {
            int32_t values[Op::kNbFields];
            self().fieldValues(values);
            std::string text;
            for (int32_t i = 0; i < Op::kNbFields; ++i)
            {
                text += (i == 0 ? "" : " ") + std::string(Op::kFieldNames[i]) + "=" + std::to_string(values[i]);
            }
            mMetadata = std::move(text);
            return mMetadata.c_str();
        });
    }

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
                          int32_t nbOutputs) noexcept override
    {
        return status("onShapeChange", [&] {
            requireCounts(nbInputs, nbOutputs);
            self().shapeChange(in, out);
        });
    }

    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                    void const* const* inputs, void* const* outputs, void* workspace,
                    cudaStream_t stream) noexcept override
    {
        return guard<int32_t>("enqueue", -1, nvinfer1::ErrorCode::kFAILED_EXECUTION, [&] {
            self().execute(inputDesc, outputDesc, inputs, outputs, workspace, stream);
            return 0;
        });
    }

    // Each execution context gets its own clone, reporting to that context's error recorder.
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override
    {
        return guard<nvinfer1::IPluginV3*>("attachToContext", nullptr, [&]() -> nvinfer1::IPluginV3* {
            std::unique_ptr<Op> attached(new Op(self()));
            attached->mRecorder = detail::RecorderRef(context != nullptr ? context->getErrorRecorder() : nullptr);
            return attached.release();
        });
    }

    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override
    {
        return guard<nvinfer1::PluginFieldCollection const*>("getFieldsToSerialize", nullptr, [&] {
            int32_t values[Op::kNbFields];
            self().fieldValues(values);
            mFieldValues.assign(values, values + Op::kNbFields);
            mFields.clear();
            for (int32_t i = 0; i < Op::kNbFields; ++i)
            {
                mFields.emplace_back(Op::kFieldNames[i], &mFieldValues[i], nvinfer1::PluginFieldType::kINT32, 1);
            }
            mFieldCollection.nbFields = Op::kNbFields;
            mFieldCollection.fields = mFields.data();
            return &mFieldCollection;
        });
    }

protected:
    PluginBase() = default;
    // Serialisation buffers point into the object, so a copy keeps only the recorder and rebuilds the rest.
    PluginBase(PluginBase const& other)
        : nvinfer1::IPluginV3(other)
        , detail::NamedBy<Op, nvinfer1::IPluginV3OneCore>(other)
        , nvinfer1::IPluginV3OneBuild(other)
        , nvinfer1::IPluginV3OneRuntime(other)
        , mRecorder(other.mRecorder)
    {
    }
    PluginBase& operator=(PluginBase const&) = delete;

private:
    Op& self() noexcept
    {
        return static_cast<Op&>(*this);
    }
    Op const& self() const noexcept
    {
        return static_cast<Op const&>(*this);
    }

    nvinfer1::IPluginV3* copy() const
    {
        return new Op(self());
    }

    static void requireCounts(int32_t nbInputs, int32_t nbOutputs)
    {
        ADNET_REQUIRE(nbInputs == Op::kNbInputs && nbOutputs == Op::kNbOutputs,
                      "expected " + std::to_string(Op::kNbInputs) + " inputs and " + std::to_string(Op::kNbOutputs)
                          + " outputs, got " + std::to_string(nbInputs) + " and " + std::to_string(nbOutputs));
    }

    template <typename Result, typename Body>
    Result guard(char const* call, Result onError, nvinfer1::ErrorCode code, Body&& body) const noexcept
    {
        return detail::guarded<Result>(mRecorder.get(), code, Op::kName, call, onError, std::forward<Body>(body));
    }
    template <typename Result, typename Body>
    Result guard(char const* call, Result onError, Body&& body) const noexcept
    {
        return guard<Result>(call, onError, nvinfer1::ErrorCode::kINVALID_ARGUMENT, std::forward<Body>(body));
    }
    // 0 on success, -1 after reporting the error.
    template <typename Body>
    int32_t status(char const* call, Body&& body) const noexcept
    {
        return guard<int32_t>(call, -1, [&] {
            body();
            return 0;
        });
    }

    detail::RecorderRef mRecorder;
    // Vectors, not arrays: Op (and so its field count) is incomplete where these members are declared.
    std::vector<int32_t> mFieldValues;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
    std::string mMetadata;
};

template <typename Op>
class CreatorBase : public detail::NamedBy<Op, nvinfer1::IPluginCreatorV3One>
{
public:
    CreatorBase() noexcept
    {
        for (int32_t i = 0; i < Op::kNbFields; ++i)
        {
            mFieldTable[i] = nvinfer1::PluginField(Op::kFieldNames[i], nullptr, nvinfer1::PluginFieldType::kINT32, 1);
        }
        mFieldNames.nbFields = Op::kNbFields;
        mFieldNames.fields = mFieldTable;
    }

    // Build phase: the ONNX parser's node attributes (only the names from getFieldNames(); missing ones keep their
    // defaults). Runtime phase: what getFieldsToSerialize() wrote.
    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                      nvinfer1::TensorRTPhase) noexcept override
    {
        try
        {
            nvinfer1::PluginFieldCollection const none{};
            return Op::fromFields(fc != nullptr ? *fc : none).release();
        }
        catch (std::exception const& e)
        {
            reportCreateError(name, e.what());
        }
        catch (...)
        {
            reportCreateError(name, "unknown exception");
        }
        return nullptr;
    }

    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override
    {
        return &mFieldNames;
    }

private:
    static void reportCreateError(char const* layer, char const* cause) noexcept
    {
        try
        {
            std::string const call = std::string("createPlugin (layer '") + (layer != nullptr ? layer : "") + "')";
            detail::report(nullptr, nvinfer1::ErrorCode::kINVALID_ARGUMENT, Op::kName, call.c_str(), cause);
        }
        catch (...)
        {
            detail::log(nvinfer1::ILogger::Severity::kERROR, cause);
        }
    }

    nvinfer1::PluginField mFieldTable[Op::kNbFields];
    nvinfer1::PluginFieldCollection mFieldNames{};
};

namespace detail {

// True when a frame of the shared object that defines `symbol` is on this thread's call stack. Used from the load-time
// constructor: when TensorRT's own library (the one defining getPluginRegistry) is on the stack, TensorRT is loading
// this library (IPluginRegistry::loadLibrary, or an engine's serialised plugin library) and will call getCreators.
inline bool onCallStack(void const* symbol) noexcept
{
    Dl_info target{};
    if (symbol == nullptr || dladdr(symbol, &target) == 0 || target.dli_fbase == nullptr)
    {
        return false;
    }
    struct Walk
    {
        void* base;
        int frames;
        bool found;
    } walk{target.dli_fbase, 0, false};
    _Unwind_Backtrace(
        [](_Unwind_Context* context, void* arg) -> _Unwind_Reason_Code {
            auto* w = static_cast<Walk*>(arg);
            Dl_info info{};
            void* const pc = reinterpret_cast<void*>(_Unwind_GetIP(context));
            if (pc != nullptr && dladdr(pc, &info) != 0 && info.dli_fbase == w->base)
            {
                w->found = true;
                return _URC_END_OF_STACK;
            }
            return ++w->frames < 128 ? _URC_NO_REASON : _URC_END_OF_STACK;
        },
        &walk);
    return walk.found;
}

}  // namespace detail

// One instance of each creator per library, shared by both loading paths, registered exactly once:
//
// - IPluginRegistry::loadLibrary (trtexec --dynamicPlugins, an engine's serialised plugin library, Python
//   load_library): TensorRT dlopens the library, then registers what getCreators returns and refuses creators that
//   are already registered. The library does not register itself then: the constructor sees TensorRT's library on
//   its call stack and leaves registration to TensorRT.
// - dlopen or LD_PRELOAD by anything else (Triton's plugins=, Polygraphy --plugins, trtexec --staticPlugins, ctypes):
//   nothing calls into the library after dlopen, so the constructor registers the creators.
// The registry is therefore never entered while TensorRT is loading the library (no lock-order question with a
// registry lock held across dlopen), and getCreators never enters it either. getCreators after a load-time
// registration (the library was dlopened first, then loadLibrary'ed) hands over no creator: they are registered.
// adnet_register_plugins() registers explicitly and is idempotent.
//
// Registration uses the creator's own namespace (REGISTER_TENSORRT_PLUGIN is not used: in TensorRT 10.x and 11.x its
// PluginRegistrar passes "" as the namespace; a V3 creator whose own namespace is "adnet" registered that way was
// found under neither namespace by TensorRT-RTX 1.7's registry). Every creator must be an IPluginCreatorV3One.
template <typename... Creators>
class PluginLibrary
{
public:
    PluginLibrary() noexcept
        : mList{static_cast<nvinfer1::IPluginCreatorInterface*>(&std::get<Creators>(mCreators))...}
    {
        if (!detail::onCallStack(reinterpret_cast<void const*>(&::getPluginRegistry)))
        {
            registerCreators();
        }
    }

    // 0 when the creators are in TensorRT's registry (registered now, earlier, or handed over to loadLibrary).
    int32_t registerCreators() noexcept
    {
        std::lock_guard<std::mutex> lock(mMutex);
        if (mState != State::kNone)
        {
            return 0;
        }
        nvinfer1::IPluginRegistry* registry = ::getPluginRegistry();
        for (int32_t i = 0; i < kCount; ++i)
        {
            if (registry == nullptr || !registry->registerCreator(*mList[i], namespaceOf(i)))
            {
                warn("could not register the plugin creator (another copy already registered?): ", i);
                for (int32_t j = 0; j < i && registry != nullptr; ++j)
                {
                    registry->deregisterCreator(*mList[j]);
                }
                return -1;
            }
        }
        mState = State::kRegistered;
        return 0;
    }

    nvinfer1::IPluginCreatorInterface* const* handOver(int32_t& nbCreators) noexcept
    {
        std::lock_guard<std::mutex> lock(mMutex);
        if (mState == State::kRegistered)
        {
            nbCreators = 0;
            return mList;
        }
        mState = State::kHandedOver;
        nbCreators = kCount;
        return mList;
    }

private:
    static constexpr int32_t kCount = static_cast<int32_t>(sizeof...(Creators));
    enum class State
    {
        kNone,        // not in the registry
        kRegistered,  // registered by this library (constructor or adnet_register_plugins)
        kHandedOver   // returned by getCreators: TensorRT registers them
    };

    char const* namespaceOf(int32_t i) const noexcept
    {
        return static_cast<nvinfer1::IPluginCreatorV3One const*>(mList[i])->getPluginNamespace();
    }

    void warn(char const* what, int32_t i) const noexcept
    {
        try
        {
            auto const* creator = static_cast<nvinfer1::IPluginCreatorV3One const*>(mList[i]);
            std::string const message = std::string(what) + creator->getPluginNamespace() + "::"
                + creator->getPluginName() + " version " + creator->getPluginVersion();
            detail::log(nvinfer1::ILogger::Severity::kWARNING, message.c_str());
        }
        catch (...)
        {
            detail::log(nvinfer1::ILogger::Severity::kWARNING, what);
        }
    }

    std::tuple<Creators...> mCreators;
    nvinfer1::IPluginCreatorInterface* mList[kCount];
    std::mutex mMutex;
    State mState{State::kNone};
};

inline void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept
{
    detail::loggerFinder().store(finder);
}

}  // namespace trt
}  // namespace adnet

// Defines the library's creators and entry points; use once per shared library, after the creators' definitions.
#define ADNET_TENSORRT_PLUGIN_LIBRARY(...)                                                                          \
    namespace {                                                                                                     \
    ::adnet::trt::PluginLibrary<__VA_ARGS__> adnetPluginLibrary;                                                    \
    }                                                                                                               \
    extern "C" ADNET_PLUGIN_EXPORT ::nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)     \
    {                                                                                                               \
        return adnetPluginLibrary.handOver(nbCreators);                                                             \
    }                                                                                                               \
    extern "C" ADNET_PLUGIN_EXPORT void setLoggerFinder(::nvinfer1::ILoggerFinder* finder)                          \
    {                                                                                                               \
        ::adnet::trt::setLoggerFinder(finder);                                                                      \
    }                                                                                                               \
    extern "C" ADNET_PLUGIN_EXPORT int32_t adnet_register_plugins()                                                 \
    {                                                                                                               \
        return adnetPluginLibrary.registerCreators();                                                               \
    }
