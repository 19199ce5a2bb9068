# Benchmarks (benchmarks/README.md), included by the top-level Makefile.
#
#   make bench                 what this machine can run: CPU -> PyTorch vs ONNX Runtime vs Triton CPU;
#                              GPU -> also PyTorch FP16, ORT CUDA EP, TensorRT (our plugin and the built-in DeformConv)
#   make bench QUICK=1         small sizes and few runs: < 3 minutes on a 2-core CPU, plus the tiling benchmark
#                              (benchmarks/tiling.py: tiled vs whole frame, memory of a 600x800 request; 1 min measured)
#   (both end with the soak, benchmarks/soak.py: the supervised CPU server under concurrency 8 for 5 min, QUICK 30 s;
#   failures and resident memory over time -> <stem>_soak.csv/.png, PASS/FAIL against "0 failures, flat memory")
#
# Variables: QUICK=1, SIZES=HxW,HxW (run on every backend, CPU ones too), DATA=NTIRE-format folder (accuracy vs
# ground truth), BENCH_OUT=results folder (default benchmarks/results), URL=host:port of a running Triton (e.g. the
# GPU server from `make serve GPU=1`) instead of the CPU one started here, CKPT= (re-exports the graphs, as for
# `make onnx`; the PyTorch reference reads its weights from build/adnet.onnx),
# BENCH_PY=python with a CUDA build of torch (+ TensorRT, Polygraphy, cuda-python) on GPU hosts (default: the venv;
# then the ONNX graphs are made first), BENCH_ARGS=any other `python -m benchmarks` flag (--help lists them),
# SCALEOUT=0 skips the scale-out part (benchmarks/scaleout.py: 1..SCALEOUT_REPLICAS local CPU replicas behind HAProxy,
# throughput vs replicas and concurrency; needs haproxy), SCALEOUT_ARGS=its other flags.

#> SCALEOUT     SCALEOUT=0: `make bench` skips the scale-out part (1..SCALEOUT_REPLICAS replicas behind HAProxy)
SCALEOUT ?= 1
#> SCALEOUT_REPLICAS most replicas of the scale-out part (default 3)
SCALEOUT_REPLICAS ?= 3
#> SCALEOUT_ARGS any other `python -m benchmarks.scaleout` flag
SCALEOUT_ARGS ?=
SCALEOUT_FLAGS = $(if $(filter-out 0 no false,$(QUICK)),--quick) --replicas $(SCALEOUT_REPLICAS) --onnx $(ONNX_FP32) \
	--out $(BENCH_OUT) --work $(BUILD)/bench/scaleout $(SCALEOUT_ARGS)
#> QUICK        QUICK=1: `make bench` with small sizes and few runs (< 3 minutes on 2 CPU cores)
QUICK ?=
#> SIZES        bench frame sizes, HxW,HxW (run on every backend)
SIZES ?=
#> DATA         bench: an NTIRE-format folder for accuracy against ground truth
DATA  ?=
#> URL          bench: host:port of a running Triton instead of the CPU one the bench starts
URL   ?=
#> BENCH_OUT    bench results folder (default benchmarks/results)
BENCH_OUT  ?= benchmarks/results
#> BENCH_PY     Python of the benchmarks (default the venv; on GPU hosts one with CUDA torch, TensorRT)
BENCH_PY   ?= $(PY)
#> BENCH_ARGS   any other `python -m benchmarks` flag, e.g. "--parts serving --concurrency 1,8"
BENCH_ARGS ?=
BENCH_USES_VENV := $(filter $(PY),$(BENCH_PY))
BENCH_FLAGS = $(if $(filter-out 0 no false,$(QUICK)),--quick) $(if $(SIZES),--sizes $(SIZES)) \
	$(if $(DATA),--data $(DATA)) $(if $(URL),--url $(URL)) \
	--out $(BENCH_OUT) --work $(BUILD)/bench \
	--onnx $(ONNX_FP32) --onnx-fp16 $(ONNX_FP16) --onnx-plugin $(ONNX_PLUGIN_FP32) --onnx-plugin-fp16 $(ONNX_PLUGIN_FP16)

# benchmarks/tiling.py measures the local server's processes, so it skips its memory part against URL=.
TILING_FLAGS = $(if $(filter-out 0 no false,$(QUICK)),--quick) $(if $(URL),--parts accuracy) \
	--out $(BENCH_OUT) --work $(BUILD)/bench/tiling --onnx $(ONNX_FP32)

.PHONY: bench

bench: $(if $(BENCH_USES_VENV),$(STAMP) $(ONNX_FILES)) $(if $(filter-out 0 no false,$(SCALEOUT)),$(STAMP) $(ONNX_FP32)) ## Benchmarks -> CSV/JSON/PNG in benchmarks/results; QUICK=1 SIZES= DATA= BENCH_OUT= URL= SCALEOUT=0
	$(BENCH_PY) -m benchmarks $(BENCH_FLAGS) $(BENCH_ARGS)
	$(BENCH_PY) -m benchmarks.tiling $(TILING_FLAGS)
	$(PY) -m benchmarks.soak $(if $(filter-out 0 no false,$(QUICK)),--quick) --out $(BENCH_OUT) --work $(BUILD)/bench/soak --onnx $(ONNX_FP32)
ifneq ($(filter-out 0 no false,$(SCALEOUT)),)
	$(PY) -m benchmarks.scaleout $(SCALEOUT_FLAGS)
endif
