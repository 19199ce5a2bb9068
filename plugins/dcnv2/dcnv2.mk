# Build rules of the AdnetDCNv2 plugin, included by the top-level Makefile.
BUILD     ?= build
DCN_DIR   := plugins/dcnv2
GEN_INC   := $(BUILD)/include
CONTRACT_H := $(GEN_INC)/dcnv2_contract.h

$(CONTRACT_H): $(DCN_DIR)/contract.py
	$(PYTHON_SYS) -m plugins.dcnv2.contract --header $@

# ---- CUDA kernels (nvcc only, no TensorRT) -------------------------------------------------------------------
# CUDA_HOME: $CUDA_HOME, else $CUDA_PATH, else /usr/local/cuda, else the folder above the nvcc on PATH.
CUDA_HOME ?= $(or $(CUDA_PATH),$(wildcard /usr/local/cuda),\
                 $(patsubst %/bin/nvcc,%,$(shell command -v nvcc 2>/dev/null)))
NVCC      ?= $(if $(wildcard $(CUDA_HOME)/bin/nvcc),$(CUDA_HOME)/bin/nvcc,nvcc)
# Ampere (A100, A10/A30/RTX 30), Ada (L4/L40, RTX 40), Hopper; compute_90 PTX for newer GPUs (JIT at load).
DCN_GENCODE ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_86,code=sm_86 \
               -gencode arch=compute_89,code=sm_89 -gencode arch=compute_90,code=[sm_90,compute_90]
DCN_NVCCFLAGS ?= -O3 -std=c++17 --threads 0 -Xcompiler -fPIC,-Wall,-Wextra -I$(GEN_INC) -I$(DCN_DIR)
DCN_OBJ   := $(BUILD)/dcnv2
KERNELS_LIB := $(BUILD)/libadnet_dcn_kernels.so
DCN_KERNEL_OBJS := $(DCN_OBJ)/dcnv2_kernel.o $(DCN_OBJ)/dcnv2_core.o

.PHONY: kernels twin bench-kernels

kernels: $(KERNELS_LIB) ## Build the CUDA kernels (nvcc only): build/libadnet_dcn_kernels.so + objects, sm_80/86/89/90

$(DCN_OBJ)/dcnv2_kernel.o: $(DCN_DIR)/dcnv2_kernel.cu $(DCN_DIR)/dcnv2_kernel.cuh $(DCN_DIR)/dcnv2_kernel.h \
                           $(DCN_DIR)/dcnv2_sampling.h $(DCN_DIR)/dcnv2_core.h $(CONTRACT_H)
	@mkdir -p $(@D)
	$(NVCC) $(DCN_NVCCFLAGS) $(DCN_GENCODE) -c $< -o $@

$(DCN_OBJ)/dcnv2_core.o: $(DCN_DIR)/dcnv2_core.cpp $(DCN_DIR)/dcnv2_core.h $(CONTRACT_H)
	@mkdir -p $(@D)
	$(NVCC) $(DCN_NVCCFLAGS) -c $< -o $@

# cudart is linked statically (nvcc's default): the library needs only the driver at run time.
$(KERNELS_LIB): $(DCN_KERNEL_OBJS)
	$(NVCC) -shared $(DCN_GENCODE) $^ -o $@

# ---- CPU twin (g++; the build logic and flags live in plugins/dcnv2/cpu.py, which also builds on demand) -------
DCN_PY ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON_SYS))

twin: ## Build the CPU twin build/libadnet_dcn_cpu.so (g++, OpenMP) that CI and the ONNX Runtime op run
	$(DCN_PY) -m plugins.dcnv2.cpu --build

# ---- GPU microbenchmark ----------------------------------------------------------------------------------------
BENCH_PYTHON ?= $(DCN_PY)
BENCH_ARGS ?=

bench-kernels: ## GPU: DCN kernel vs im2col+GEMM at ADNet sizes -> benchmarks/results/ (BENCH_PYTHON=cuda torch)
	$(BENCH_PYTHON) benchmarks/kernels/bench_dcn.py $(BENCH_ARGS)
