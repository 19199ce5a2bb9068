# Build rules of the AdnetDCNv2 kernels, CPU twin and kernel emulation, included by the top-level Makefile. Every
# compile of plugins/dcnv2 goes through these rules (and plugin.mk's): the Python side (plugins/dcnv2/build.py) calls
# make targets and reads the toolchain from `make dcn-config`, it never assembles a compiler command itself.
BUILD     ?= build
DCN_DIR   := plugins/dcnv2
GEN_INC   := $(BUILD)/include
CONTRACT_H := $(GEN_INC)/dcnv2_contract.h
#> DCN_PY       Python of the plugin build helpers (default the venv, else PYTHON_SYS)
DCN_PY    ?= $(or $(PY_IF_RUNS),$(PYTHON_SYS))

$(CONTRACT_H): $(DCN_DIR)/contract.py
	$(DCN_PY) -m plugins.dcnv2.contract --header $@

# ---- toolchain ---------------------------------------------------------------------------------------------------
# CUDA_HOME: $CUDA_HOME, else $CUDA_PATH, else /usr/local/cuda, else the folder above the nvcc on PATH.
#> CUDA_HOME    CUDA toolkit for nvcc (default $CUDA_HOME, $CUDA_PATH, /usr/local/cuda or nvcc's folder)
CUDA_HOME ?= $(or $(CUDA_PATH),$(wildcard /usr/local/cuda),\
                 $(patsubst %/bin/nvcc,%,$(shell command -v nvcc 2>/dev/null)))
#> NVCC         nvcc to use (default CUDA_HOME/bin/nvcc, else nvcc on PATH)
NVCC      ?= $(if $(wildcard $(CUDA_HOME)/bin/nvcc),$(CUDA_HOME)/bin/nvcc,nvcc)
#> CUDA_INCLUDE CUDA headers (default CUDA_HOME/include)
CUDA_INCLUDE ?= $(CUDA_HOME)/include

# Ampere (A100, A10/A30/RTX 30), Ada (L4/L40, RTX 40), Hopper; compute_90 PTX for newer GPUs (JIT at load).
#> DCN_GENCODE  nvcc -gencode flags of the kernels (default sm_80 sm_86 sm_89 sm_90 + compute_90 PTX)
DCN_GENCODE ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_86,code=sm_86 \
               -gencode arch=compute_89,code=sm_89 -gencode arch=compute_90,code=[sm_90,compute_90]
# DCN_WERROR=1: warnings are errors (the kernel compile test sets it).
#> DCN_WERROR   DCN_WERROR=1: compiler warnings are errors
DCN_WERROR ?=
# nvcc compiles the host side with this compiler (named explicitly, so the objects' toolchain key below holds the
# compiler nvcc really uses; nvcc's own default is whatever gcc is first on PATH).
#> DCN_CCBIN    host compiler of nvcc (default the first word of CXX)
DCN_CCBIN ?= $(firstword $(CXX))
NVCC_HOST := -ccbin $(DCN_CCBIN)
#> DCN_NVCCFLAGS nvcc flags of the kernels
DCN_NVCCFLAGS ?= -O3 -std=c++17 --threads 0 -Xcompiler -fPIC,-Wall,-Wextra \
                 $(if $(DCN_WERROR),-Werror all-warnings -Xcompiler -Werror) -I$(GEN_INC) -I$(DCN_DIR)

# CPU twin: -ffp-contract=off keeps the float32 sampling arithmetic the IEEE sequence written in dcnv2_sampling.h.
# OpenMP when the compiler has its runtime (checked when a rule needs it), plain loops otherwise.
#> TWIN_CXXFLAGS g++ flags of the CPU twin
TWIN_CXXFLAGS ?= -O3 -std=c++17 -fPIC -shared -ffp-contract=off -Wall -Wextra
DCN_OPENMP = $(shell printf 'int main(){}' | $(CXX) -fopenmp -x c++ - -o /dev/null 2>/dev/null && echo -fopenmp)

# Kernel emulation (tests/plugins/dcnv2_emulation): the kernel source as host C++ under ASan/UBSan where the
# toolchain has the sanitizer runtimes.
EMU_DIR   := tests/plugins/dcnv2_emulation
#> EMU_CXXFLAGS g++ flags of the kernel emulator (sanitizers are added where available)
EMU_CXXFLAGS ?= -std=c++20 -O1 -g -pthread -ffp-contract=off -Wall -Wextra -Wno-unknown-pragmas
DCN_SANITIZE = $(shell printf 'int main(){}' | $(CXX) -fsanitize=address,undefined -x c++ - -o /dev/null \
                 2>/dev/null && echo -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)

# Objects live in a folder keyed by the toolchain (nvcc's version, flags, targets), so that objects built by one
# toolchain (the host's nvcc) are never linked by another (the container's `make plugin`). The libraries are relinked
# whenever the key differs from the one they were built with (toolchain.id, rewritten only when it changes).
DCN_TOOLCHAIN := $(shell { $(NVCC) --version 2>/dev/null || echo no-nvcc; \
                   $(DCN_CCBIN) --version 2>/dev/null | head -n1 || echo no-host-compiler; \
                   echo '$(DCN_NVCCFLAGS) | $(DCN_GENCODE) | $(DCN_CCBIN)'; } | cksum | cut -d' ' -f1)
DCN_OBJ   := $(BUILD)/dcnv2/nvcc-$(DCN_TOOLCHAIN)
DCN_TOOLCHAIN_ID := $(BUILD)/dcnv2/toolchain.id
KERNELS_LIB := $(BUILD)/libadnet_dcn_kernels.so
TWIN_LIB  := $(BUILD)/libadnet_dcn_cpu.so
EMULATOR  := $(BUILD)/dcnv2/kernel_emulation
DCN_KERNEL_OBJS := $(DCN_OBJ)/dcnv2_kernel.o $(DCN_OBJ)/dcnv2_core.o
DCN_CORE_SRC := $(DCN_DIR)/dcnv2_core.cpp $(DCN_DIR)/dcnv2_core.h $(CONTRACT_H)
DCN_KERNEL_SRC := $(DCN_DIR)/dcnv2_kernel.cu $(DCN_DIR)/dcnv2_kernel.cuh $(DCN_DIR)/dcnv2_kernel_v2.cuh $(DCN_DIR)/dcnv2_kernel.h \
                  $(DCN_DIR)/dcnv2_sampling.h $(DCN_DIR)/dcnv2_core.h $(CONTRACT_H)

.PHONY: kernels kernel-objects twin emulator dcn-config bench-kernels check-cxx check-cuda-headers FORCE

$(DCN_TOOLCHAIN_ID): FORCE
	@mkdir -p $(@D); echo '$(DCN_TOOLCHAIN)' | cmp -s - $@ || echo '$(DCN_TOOLCHAIN)' > $@

kernels: $(KERNELS_LIB) ## Build the CUDA kernels (nvcc only): build/libadnet_dcn_kernels.so + objects, sm_80/86/89/90
kernel-objects: $(DCN_KERNEL_OBJS)

$(DCN_OBJ)/dcnv2_kernel.o: $(DCN_KERNEL_SRC)
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_HOST) $(DCN_NVCCFLAGS) $(DCN_GENCODE) -c $< -o $@

$(DCN_OBJ)/dcnv2_core.o: $(DCN_CORE_SRC)
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_HOST) $(DCN_NVCCFLAGS) -c $< -o $@

# cudart is linked statically (nvcc's default): the library needs only the driver at run time.
$(KERNELS_LIB): $(DCN_KERNEL_OBJS) $(DCN_TOOLCHAIN_ID)
	$(NVCC) $(NVCC_HOST) -shared $(DCN_GENCODE) $(DCN_KERNEL_OBJS) -o $@

check-cxx:
	@command -v $(firstword $(CXX)) >/dev/null || { echo "cannot build the AdnetDCNv2 CPU twin: C++ compiler" \
	  "'$(CXX)' not found; install g++ (apt-get install g++) or set CXX" >&2; exit 2; }

check-cuda-headers:
	@test -f $(CUDA_INCLUDE)/cuda_fp16.h || { echo "the kernel emulation needs the CUDA toolkit headers" \
	  "(cuda_fp16.h) in $(CUDA_INCLUDE): install the CUDA toolkit or set CUDA_HOME" >&2; exit 2; }

twin: $(TWIN_LIB) ## Build the CPU twin build/libadnet_dcn_cpu.so (g++, OpenMP) that CI and the ONNX Runtime op run

# Written to a temporary name and moved: a process loading the library never sees a half-written file.
$(TWIN_LIB): $(DCN_DIR)/dcnv2_cpu.cpp $(DCN_DIR)/dcnv2_sampling.h $(DCN_CORE_SRC) | check-cxx
	@mkdir -p $(@D)
	$(CXX) $(TWIN_CXXFLAGS) $(DCN_OPENMP) -I$(GEN_INC) -I$(DCN_DIR) $(filter %.cpp,$^) -o $@.$$$$.tmp \
	  && mv -f $@.$$$$.tmp $@

emulator: $(EMULATOR) ## Build the host emulation of the CUDA kernel source (g++, CUDA headers; tests run it)

$(EMULATOR): $(EMU_DIR)/kernel_emulation.cpp $(EMU_DIR)/mma.h $(DCN_KERNEL_SRC) $(DCN_CORE_SRC) \
             | check-cxx check-cuda-headers
	@mkdir -p $(@D)
	$(CXX) $(DCN_SANITIZE) $(EMU_CXXFLAGS) -I$(EMU_DIR) -I$(DCN_DIR) -I$(GEN_INC) -isystem $(CUDA_INCLUDE) \
	  $(filter %.cpp,$^) -o $@

# The toolchain as the Python side sees it (plugins/dcnv2/build.py parses these lines).
dcn-config:
	@echo "NVCC=$(shell command -v $(NVCC) 2>/dev/null)"
	@echo "CUDA_INCLUDE=$(CUDA_INCLUDE)"
	@echo "CXX=$(CXX)"
	@echo "KERNELS_LIB=$(KERNELS_LIB)"
	@echo "TWIN_LIB=$(TWIN_LIB)"
	@echo "EMULATOR=$(EMULATOR)"
	@echo "KERNEL_OBJECTS=$(DCN_KERNEL_OBJS)"

# ---- GPU microbenchmark ----------------------------------------------------------------------------------------
#> BENCH_PYTHON Python of bench-kernels: one with a CUDA build of torch
BENCH_PYTHON ?= $(DCN_PY)
#> BENCH_KERNELS_ARGS any other benchmarks/kernels/bench_dcn.py flag
BENCH_KERNELS_ARGS ?=

bench-kernels: ## GPU: DCN kernel vs im2col+GEMM at ADNet sizes -> benchmarks/results/ (BENCH_PYTHON=cuda torch)
	$(BENCH_PYTHON) benchmarks/kernels/bench_dcn.py $(BENCH_KERNELS_ARGS)

# ---- static kernel report (CI; no GPU) ------------------------------------------------------------------------
# cuobjdump and nvdisasm from PyPI (requirements.txt pins nvidia-cuda-cuobjdump / -nvdisasm), else the toolkit's.
DCN_PYPI_TOOLS = $(firstword $(wildcard $(VENV)/lib/python3*/site-packages/nvidia/cu13/bin))
#> CUOBJDUMP    cuobjdump of kernel-report (default the PyPI one in the venv, else the toolkit's)
CUOBJDUMP ?= $(firstword $(wildcard $(DCN_PYPI_TOOLS)/cuobjdump $(CUDA_HOME)/bin/cuobjdump))
#> NVDISASM     nvdisasm of kernel-report (default as CUOBJDUMP)
NVDISASM  ?= $(firstword $(wildcard $(DCN_PYPI_TOOLS)/nvdisasm $(CUDA_HOME)/bin/nvdisasm))
#> DCN_REPORT_GENCODE architectures kernel-report reads (default sm_80 sm_90)
DCN_REPORT_GENCODE ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
DCN_REPORT := $(BUILD)/kernel-report

.PHONY: kernel-report check-report-tools

$(DCN_OBJ)/dcnv2_kernel_probe.o: $(DCN_DIR)/dcnv2_kernel_probe.cu $(DCN_KERNEL_SRC)
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_HOST) $(DCN_NVCCFLAGS) $(DCN_REPORT_GENCODE) -c $< -o $@

check-report-tools:
	@if [ -z "$(CUOBJDUMP)" ] || [ -z "$(NVDISASM)" ]; then \
	  echo "kernel-report: cuobjdump/nvdisasm not found: run make setup (requirements.txt pins" \
	    "nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm) or install the CUDA toolkit" >&2; exit 2; fi

# The tools are checked first (before any compile); the planner's numbers come from the kernels library itself.
kernel-report: check-report-tools $(DCN_OBJ)/dcnv2_kernel.o $(DCN_OBJ)/dcnv2_kernel_probe.o $(KERNELS_LIB) ## Registers, shared memory, spills, occupancy and the gather's SASS mix (sm_80, sm_90) -> build/kernel-report/
	$(DCN_PY) -m plugins.dcnv2.kernel_report --kernels $(DCN_OBJ)/dcnv2_kernel.o \
	  --probes $(DCN_OBJ)/dcnv2_kernel_probe.o --library $(KERNELS_LIB) --cuobjdump $(CUOBJDUMP) \
	  --nvdisasm $(NVDISASM) --out $(DCN_REPORT)
