#!/usr/bin/env bash
# Compile-checks the AdnetDCNv2 TensorRT adapter (dcnv2_plugin.cpp + plugin_base.h) against one TensorRT include/
# directory, without TensorRT libraries or a GPU: it needs only the headers (TensorRT, CUDA, dcnv2_core.h and the
# generated contract header). Run it through make, which owns the flags and generates the contract header:
#
#   make compile-check TRT_INCLUDE=/path/to/TensorRT/include
#
# Steps: (1) compile the adapter to an object with the flags of `make plugin` plus -Werror, (2) check that
# getCreators and setLoggerFinder are exported with C linkage and default visibility, (3) link the object alone into a
# throwaway shared library and check that every symbol it still needs comes from outside the adapter (TensorRT, the
# DCN core, CUDA, the C++ runtime).
# Environment (set by `make compile-check`): CXX, PLUGIN_CXXFLAGS, PLUGIN_INCLUDES, CUDA_INCLUDE.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 TRT_INCLUDE_DIR   (a TensorRT include/ directory holding NvInfer.h)" >&2
    exit 2
fi
trt_include=$1
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

if [[ -z ${PLUGIN_CXXFLAGS:-} || -z ${PLUGIN_INCLUDES:-} || -z ${CXX:-} || -z ${CUDA_INCLUDE:-} ]]; then
    echo "compile-check: run it through make (make compile-check TRT_INCLUDE=$trt_include), which passes the" \
        "compiler and flags of make plugin" >&2
    exit 2
fi

if [[ ! -f $trt_include/NvInferRuntime.h ]]; then
    echo "compile-check: $trt_include has no NvInferRuntime.h; pass a TensorRT include/ directory" >&2
    exit 2
fi
if [[ ! -f $CUDA_INCLUDE/cuda_runtime_api.h ]]; then
    echo "compile-check: $CUDA_INCLUDE has no cuda_runtime_api.h; set CUDA_INCLUDE to the CUDA toolkit's include/" >&2
    exit 2
fi

# 10.x before 10.8 defines NV_TENSORRT_MAJOR/MINOR/PATCH as numbers; later releases via TRT_*_ENTERPRISE.
version=$(awk '$1 == "#define" && $3 ~ /^[0-9]+$/ &&
    $2 ~ /^(TRT_(MAJOR|MINOR|PATCH)_ENTERPRISE|NV_TENSORRT_(MAJOR|MINOR|PATCH))$/ {v = v (v ? "." : "") $3}
    END {print v}' "$trt_include/NvInferVersion.h")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "compile-check: TensorRT ${version:-?} headers from $trt_include, $($CXX --version | head -n1)"
# shellcheck disable=SC2086 # the flags are word lists
"$CXX" $PLUGIN_CXXFLAGS $PLUGIN_INCLUDES -c plugins/dcnv2/dcnv2_plugin.cpp -o "$work/dcnv2_plugin.o"
echo "  compiled plugins/dcnv2/dcnv2_plugin.cpp ($PLUGIN_CXXFLAGS)"

for entry in getCreators setLoggerFinder adnet_register_plugins; do
    if ! readelf -sW "$work/dcnv2_plugin.o" \
        | awk -v s="$entry" '$8 == s && $5 == "GLOBAL" && $6 == "DEFAULT" {f = 1} END {exit !f}'; then
        echo "compile-check: $entry is not exported (extern \"C\", default visibility)" >&2
        exit 1
    fi
done
echo "  exports: getCreators, setLoggerFinder, adnet_register_plugins"

"$CXX" -shared -o "$work/libcheck.so" "$work/dcnv2_plugin.o"
# Anything still undefined that belongs to the adapter itself (its classes, vtables) would be a bug here.
own=$(nm -DC --undefined-only "$work/libcheck.so" | grep -E 'adnet::trt|PluginBase|CreatorBase|DCNv2Plugin' || true)
if [[ -n $own ]]; then
    echo "compile-check: the adapter leaves its own symbols undefined:" >&2
    echo "$own" >&2
    exit 1
fi
# The C and C++ runtimes' own symbols are left out of the list.
runtime='^(_Z(St|NSt|NKSt|dl|nw|Sa|Sd|Sn|TI|TV|N9__gnu_cxx|N10__cxxabiv)|__|_ITM_|_Unwind|std|mem|str|abort|'
runtime+='malloc|free)'
needed=$(nm -D --undefined-only "$work/libcheck.so" | awk '{print $2}' | grep -Ev "$runtime" | c++filt \
    | sed 's/\[abi:cxx11\]//; s/(.*//' | sort | tr '\n' ' ')
echo "  linked alone into a shared library; it needs from outside: $needed"
echo "compile-check: OK (TensorRT ${version:-?})"
