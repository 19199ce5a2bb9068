# Benchmarks (benchmarks/README.md), included by the top-level Makefile.
#
#   make bench                 what this machine can run: CPU -> PyTorch vs ONNX Runtime vs Triton CPU;
#                              GPU -> also PyTorch FP16, ORT CUDA EP, TensorRT (our plugin and the built-in DeformConv)
#   make bench QUICK=1         small sizes and few runs: < 3 minutes on a 2-core CPU, plus the tiling benchmark
#                              (benchmarks/tiling.py: tiled vs whole frame, memory of a 600x800 request; 1 min measured)
#
# Variables: QUICK=1, SIZES=HxW,HxW (run on every backend, CPU ones too), DATA=NTIRE-format folder (accuracy vs
# ground truth), BENCH_OUT=results folder (default benchmarks/results), URL=host:port of a running Triton (e.g. the
# GPU server from `make serve GPU=1`) instead of the CPU one started here, CKPT= (re-exports the graphs, as for
# `make onnx`; the PyTorch reference reads its weights from build/adnet.onnx),
# BENCH_PY=python with a CUDA build of torch (+ TensorRT, Polygraphy, cuda-python) on GPU hosts (default: the venv;
# then the ONNX graphs are made first), BENCH_ARGS=any other `python -m benchmarks` flag (--help lists them).

BENCH_OUT  ?= benchmarks/results
BENCH_PY   ?= $(PY)
BENCH_ARGS ?=
QUICK ?=
SIZES ?=
DATA  ?=
URL   ?=
BENCH_USES_VENV := $(filter $(PY),$(BENCH_PY))
BENCH_FLAGS = $(if $(filter-out 0 no false,$(QUICK)),--quick) $(if $(SIZES),--sizes $(SIZES)) \
	$(if $(DATA),--data $(DATA)) $(if $(URL),--url $(URL)) \
	--out $(BENCH_OUT) --work $(BUILD)/bench \
	--onnx $(ONNX_FP32) --onnx-fp16 $(ONNX_FP16) --onnx-plugin $(ONNX_PLUGIN_FP32) --onnx-plugin-fp16 $(ONNX_PLUGIN_FP16)

# benchmarks/tiling.py measures the local server's processes, so it skips its memory part against URL=.
TILING_FLAGS = $(if $(filter-out 0 no false,$(QUICK)),--quick) $(if $(URL),--parts accuracy) \
	--out $(BENCH_OUT) --work $(BUILD)/bench/tiling --onnx $(ONNX_FP32)

.PHONY: bench

bench: $(if $(BENCH_USES_VENV),$(STAMP) $(ONNX_FILES)) ## Benchmarks -> CSV/JSON/PNG in benchmarks/results; QUICK=1 SIZES= DATA= BENCH_OUT= URL=
	$(BENCH_PY) -m benchmarks $(BENCH_FLAGS) $(BENCH_ARGS)
	$(BENCH_PY) -m benchmarks.tiling $(TILING_FLAGS)
