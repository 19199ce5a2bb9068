# Benchmarks (benchmarks/README.md), included by the top-level Makefile.
#
#   make bench                 what this machine can run: CPU -> PyTorch vs ONNX Runtime vs Triton CPU;
#                              GPU -> also PyTorch FP16, ORT CUDA EP, TensorRT (our plugin and the built-in DeformConv)
#   make bench QUICK=1         small sizes and few runs: < 3 minutes on a 2-core CPU
#
# Variables: QUICK=1, SIZES=HxW,HxW (run on every backend, CPU ones too), DATA=NTIRE-format folder (accuracy vs
# ground truth), BENCH_OUT=results folder (default benchmarks/results), URL=host:port of a running Triton (e.g. the
# GPU server from `make serve GPU=1`) instead of the CPU one started here, CKPT= (re-exports the graphs, as for
# `make onnx`; the PyTorch reference reads its weights from build/adnet.onnx),
# BENCH_PY=python with a CUDA build of torch (+ TensorRT, Polygraphy, cuda-python) on GPU hosts (default: the venv;
# then the ONNX graphs are made first), BENCH_ARGS=any other `python -m benchmarks` flag (--help lists them),
# SCALEOUT=0 skips the scale-out part (benchmarks/scaleout.py: 1..SCALEOUT_REPLICAS local CPU replicas behind HAProxy,
# throughput vs replicas and concurrency; needs haproxy), SCALEOUT_ARGS=its other flags.

BENCH_OUT  ?= benchmarks/results
BENCH_PY   ?= $(PY)
BENCH_ARGS ?=
SCALEOUT ?= 1
SCALEOUT_REPLICAS ?= 3
SCALEOUT_ARGS ?=
SCALEOUT_FLAGS = $(if $(filter-out 0 no false,$(QUICK)),--quick) --replicas $(SCALEOUT_REPLICAS) --onnx $(ONNX_FP32) \
	--out $(BENCH_OUT) --work $(BUILD)/bench/scaleout $(SCALEOUT_ARGS)
QUICK ?=
SIZES ?=
DATA  ?=
URL   ?=
BENCH_USES_VENV := $(filter $(PY),$(BENCH_PY))
BENCH_FLAGS = $(if $(filter-out 0 no false,$(QUICK)),--quick) $(if $(SIZES),--sizes $(SIZES)) \
	$(if $(DATA),--data $(DATA)) $(if $(URL),--url $(URL)) \
	--out $(BENCH_OUT) --work $(BUILD)/bench \
	--onnx $(ONNX_FP32) --onnx-fp16 $(ONNX_FP16) --onnx-plugin $(ONNX_PLUGIN_FP32) --onnx-plugin-fp16 $(ONNX_PLUGIN_FP16)

.PHONY: bench

bench: $(if $(BENCH_USES_VENV),$(STAMP) $(ONNX_FILES)) $(if $(filter-out 0 no false,$(SCALEOUT)),$(STAMP) $(ONNX_FP32)) ## Benchmarks -> CSV/JSON/PNG in benchmarks/results; QUICK=1 SIZES= DATA= BENCH_OUT= URL= SCALEOUT=0
	$(BENCH_PY) -m benchmarks $(BENCH_FLAGS) $(BENCH_ARGS)
ifneq ($(filter-out 0 no false,$(SCALEOUT)),)
	$(PY) -m benchmarks.scaleout $(SCALEOUT_FLAGS)
endif
