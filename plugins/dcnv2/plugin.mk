# Build rules of the AdnetDCNv2 TensorRT plugin library (IPluginV3 adapter + pure core + CUDA kernels), included by
# the top-level Makefile after dcnv2.mk (uses BUILD, DCN_DIR, GEN_INC, CONTRACT_H from there, PYTHON_SYS from the
# Makefile). TensorRT comes from TRT_ROOT, else from the places the NGC TensorRT/Triton images and tarball installs
# use; `make plugin TRT_INCLUDE=... TRT_LIB=...` overrides the search.

#> TRT_ROOT     TensorRT install (include/ + lib/) for the plugin; default: the NGC images' paths
TRT_ROOT     ?=
TRT_MULTIARCH := $(shell uname -m)-linux-gnu
TRT_INCLUDE_SEARCH = $(if $(TRT_ROOT),$(TRT_ROOT)/include,/usr/include/$(TRT_MULTIARCH) /usr/local/tensorrt/include)
TRT_LIB_SEARCH = $(if $(TRT_ROOT),$(TRT_ROOT)/lib $(TRT_ROOT)/lib64,/usr/lib/$(TRT_MULTIARCH) /usr/local/tensorrt/lib)
#> TRT_INCLUDE  folder of NvInfer.h (overrides TRT_ROOT's); TRT_LIB: folder of libnvinfer.so
TRT_INCLUDE  ?= $(firstword $(foreach d,$(TRT_INCLUDE_SEARCH),$(if $(wildcard $(d)/NvInfer.h),$(d))))
TRT_LIB      ?= $(firstword $(foreach d,$(TRT_LIB_SEARCH),$(if $(wildcard $(d)/libnvinfer.so),$(d))))
# The TensorRT core library to link: -lnvinfer (TensorRT 10/11); TensorRT-RTX tests pass its libtensorrt_rtx.so.1.
#> PLUGIN_LDLIBS TensorRT core library to link (default -lnvinfer)
PLUGIN_LDLIBS ?= -lnvinfer

# CUDA_INCLUDE, NVCC, DCN_GENCODE and DCN_KERNEL_OBJS (core + CUDA kernel objects, -fPIC) come from dcnv2.mk.

#> PLUGIN_CXXFLAGS g++ flags of the plugin adapter
PLUGIN_CXXFLAGS ?= -std=c++17 -O2 -fPIC -fvisibility=hidden -Wall -Wextra
PLUGIN_INCLUDES = -isystem $(TRT_INCLUDE) -isystem $(CUDA_INCLUDE) -I$(GEN_INC) -I$(DCN_DIR)
# The adapter object is keyed like the kernel objects, by the C++ compiler, its flags and the TensorRT headers'
# version (NvInferVersion.h), on top of the nvcc key; the library is relinked when the key changes.
DCN_PLUGIN_TOOLCHAIN := $(shell { $(CXX) --version 2>/dev/null | head -n1; echo '$(PLUGIN_CXXFLAGS)'; \
                          cat $(TRT_INCLUDE)/NvInferVersion.h 2>/dev/null; echo $(DCN_TOOLCHAIN); } | cksum | cut -d' ' -f1)
DCN_PLUGIN_OBJ := $(BUILD)/dcnv2/plugin-$(DCN_PLUGIN_TOOLCHAIN)/dcnv2_plugin.o
DCN_PLUGIN_ID  := $(BUILD)/dcnv2/plugin-toolchain.id
DCN_PLUGIN_SO  := $(BUILD)/libadnet_plugins.so

.PHONY: plugin compile-check check-tensorrt

$(DCN_PLUGIN_ID): FORCE
	@mkdir -p $(@D); echo '$(DCN_PLUGIN_TOOLCHAIN)' | cmp -s - $@ || echo '$(DCN_PLUGIN_TOOLCHAIN)' > $@

plugin: $(DCN_PLUGIN_SO) ## Build build/libadnet_plugins.so (needs TensorRT: NGC container, or TRT_ROOT=/path)

check-tensorrt:
	@if [ -z "$(TRT_INCLUDE)" ] || [ ! -f "$(TRT_INCLUDE)/NvInfer.h" ] || [ -z "$(TRT_LIB)" ]; then \
	  echo "TensorRT not found: build inside the NGC TensorRT container (nvcr.io/nvidia/tensorrt:<ver>-py3)" \
	    "or set TRT_ROOT=/path/to/TensorRT" >&2; \
	  echo "  (looked for NvInfer.h in: $(TRT_INCLUDE_SEARCH); libnvinfer.so in: $(TRT_LIB_SEARCH))" >&2; \
	  exit 1; \
	fi

$(DCN_PLUGIN_OBJ): $(DCN_DIR)/dcnv2_plugin.cpp $(DCN_DIR)/plugin_base.h $(DCN_DIR)/dcnv2_core.h $(CONTRACT_H) \
                   | check-tensorrt
	@mkdir -p $(@D)
	$(CXX) $(PLUGIN_CXXFLAGS) $(PLUGIN_INCLUDES) -c $< -o $@

# Linked by nvcc like the kernels library (cudart static: only the driver is needed at run time).
# --no-undefined: a symbol missing from the core/kernel objects fails here, not at dlopen inside TensorRT.
$(DCN_PLUGIN_SO): $(DCN_PLUGIN_OBJ) $(DCN_KERNEL_OBJS) $(DCN_PLUGIN_ID) | check-tensorrt
	$(NVCC) $(NVCC_HOST) -shared $(DCN_GENCODE) $(DCN_PLUGIN_OBJ) $(DCN_KERNEL_OBJS) -o $@ -L$(TRT_LIB) $(PLUGIN_LDLIBS) \
	  -Xlinker --no-undefined
	@echo "plugin: $@ (TensorRT from $(TRT_INCLUDE), $(TRT_LIB))"

# The script compiles with exactly the flags of `make plugin` (plus -Werror) that it gets from here.
compile-check: $(CONTRACT_H) ## Compile the TensorRT adapter against headers only: TRT_INCLUDE=/path/to/TensorRT/include
	@if [ -z "$(TRT_INCLUDE)" ]; then \
	  echo "compile-check: set TRT_INCLUDE=/path/to/TensorRT/include" \
	    "(e.g. include/ of NVIDIA/TensorRT at a release tag)" >&2; \
	  exit 1; \
	fi
	@CXX="$(CXX)" PLUGIN_CXXFLAGS="$(PLUGIN_CXXFLAGS) -Werror" PLUGIN_INCLUDES="$(PLUGIN_INCLUDES)" \
	  CUDA_INCLUDE="$(CUDA_INCLUDE)" $(DCN_DIR)/compile_check.sh "$(TRT_INCLUDE)"
