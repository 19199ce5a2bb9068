#!/usr/bin/env bash
# Compile-checks the AdnetDCNv2 TensorRT adapter (dcnv2_plugin.cpp + plugin_base.h) against one TensorRT include/
# directory, without TensorRT libraries or a GPU: it needs only the headers (TensorRT, CUDA, dcnv2_core.h and the
# generated contract header).
#
#   plugins/dcnv2/compile_check.sh TRT_INCLUDE_DIR
#
# Steps: (1) generate build/include/dcnv2_contract.h, (2) compile the adapter to an object with the flags of
# `make plugin` plus -Werror, (3) check that getCreators and setLoggerFinder are exported with C linkage and default
# visibility, (4) link the object alone into a throwaway shared library and check that every symbol it still needs
# comes from outside the adapter (TensorRT, the DCN core, CUDA, the C++ runtime).
# Environment: CXX (g++), PYTHON (python3), CUDA_INCLUDE (/usr/local/cuda/include), BUILD (build).
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 TRT_INCLUDE_DIR   (a TensorRT include/ directory holding NvInfer.h)" >&2
    exit 2
fi
trt_include=$1
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

CXX=${CXX:-g++}
PYTHON=${PYTHON:-python3}
CUDA_INCLUDE=${CUDA_INCLUDE:-/usr/local/cuda/include}
BUILD=${BUILD:-build}

if [[ ! -f $trt_include/NvInferRuntime.h ]]; then
    echo "compile-check: $trt_include has no NvInferRuntime.h; pass a TensorRT include/ directory" >&2
    exit 2
fi
if [[ ! -f $CUDA_INCLUDE/cuda_runtime_api.h ]]; then
    echo "compile-check: $CUDA_INCLUDE has no cuda_runtime_api.h; set CUDA_INCLUDE to the CUDA toolkit's include/" >&2
    exit 2
fi

"$PYTHON" -m plugins.dcnv2.contract --header "$BUILD/include/dcnv2_contract.h"

# 10.x before 10.8 defines NV_TENSORRT_MAJOR/MINOR/PATCH as numbers; later releases via TRT_*_ENTERPRISE.
version=$(awk '$1 == "#define" && $3 ~ /^[0-9]+$/ &&
    $2 ~ /^(TRT_(MAJOR|MINOR|PATCH)_ENTERPRISE|NV_TENSORRT_(MAJOR|MINOR|PATCH))$/ {v = v (v ? "." : "") $3}
    END {print v}' "$trt_include/NvInferVersion.h")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "compile-check: TensorRT ${version:-?} headers from $trt_include, $($CXX --version | head -n1)"
"$CXX" -std=c++17 -O2 -fPIC -fvisibility=hidden -Wall -Wextra -Werror \
    -isystem "$trt_include" -isystem "$CUDA_INCLUDE" -I "$BUILD/include" -I plugins/dcnv2 \
    -c plugins/dcnv2/dcnv2_plugin.cpp -o "$work/dcnv2_plugin.o"
echo "  compiled plugins/dcnv2/dcnv2_plugin.cpp (-c, -Wall -Wextra -Werror)"

for entry in getCreators setLoggerFinder; do
    if ! readelf -sW "$work/dcnv2_plugin.o" \
        | awk -v s="$entry" '$8 == s && $5 == "GLOBAL" && $6 == "DEFAULT" {f = 1} END {exit !f}'; then
        echo "compile-check: $entry is not exported (extern \"C\", default visibility)" >&2
        exit 1
    fi
done
echo "  exports: getCreators, setLoggerFinder"

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
