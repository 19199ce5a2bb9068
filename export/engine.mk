# Engine build and verification, included by the top-level Makefile (after plugins/dcnv2/*.mk).
#
#   make engine                        GPU host with TensorRT (NGC container): C++ plugin + FP16 engine
#                                      -> model_repository/gpu/adnet/1/model.plan + model.plan.json
#   make engine ENGINE_BACKEND=rtx     CPU-only: TensorRT-RTX + the Python build-only stand-in -> build/rtx/model.plan
#   make verify-reference              any machine with the venv: ONNX Runtime FP32 outputs of build/adnet.onnx on
#                                      synthetic scenes -> build/verify/ (Polygraphy's inputs/outputs JSON)
#   make verify-engine                 GPU host: engine vs that recording (>= 50 dB PSNR-mu); needs no onnxruntime
#   make serve GPU=1                   runs gpu-serve-preflight first (export/plugin_preflight.py)
#
# Variables: SIZE=BxHxW (opt), MIN=BxHxW, MAX=BxHxW (defaults in export/profiles.py: opt 1x1060x1900, the NTIRE
# frame), WORKSPACE=MiB, OPT_LEVEL=0..5, ENGINE_OUT=path, ENGINE_PLUGIN=lib, ENGINE_ARGS=extra CLI flags,
# ENGINE_PY=python (inside an NGC container without the venv: ENGINE_PY=python3).

#> ENGINE_BACKEND tensorrt (GPU hosts, default) or rtx (TensorRT-RTX: a build check on any CPU)
ENGINE_BACKEND ?= tensorrt
ENGINE_IS_RTX  := $(filter rtx,$(ENGINE_BACKEND))
#> ENGINE_PY    Python of the engine build (in an NGC container without the venv: ENGINE_PY=python3)
ENGINE_PY      ?= $(PY)
#> ENGINE_ONNX  surgered graph the engine is built from (default build/adnet_dcn_plugin_fp16.onnx)
ENGINE_ONNX    ?= $(BUILD)/adnet_dcn_plugin_fp16.onnx
#> ENGINE_ONNX_FP32 FP32-compute surgered graph (--precision fp32 or the fp16-flag route)
ENGINE_ONNX_FP32 ?= $(BUILD)/adnet_dcn_plugin.onnx
# TensorRT-RTX plans cannot be served by Triton: they stay out of the model repository.
#> ENGINE_OUT   plan to write (default model_repository/gpu/adnet/1/model.plan; rtx: build/rtx/model.plan)
ENGINE_OUT     ?= $(if $(ENGINE_IS_RTX),$(BUILD)/rtx/model.plan,model_repository/gpu/adnet/1/model.plan)
#> ENGINE_PLUGIN plugin library the engine loads (default build/libadnet_plugins.so)
ENGINE_PLUGIN  ?= $(BUILD)/libadnet_plugins.so
#> SIZE         engine profile opt shape BxHxW (default 1x1060x1900, the NTIRE frame)
SIZE ?=
#> MIN          engine profile smallest BxHxW
MIN ?=
#> MAX          engine profile largest BxHxW
MAX ?=
#> WORKSPACE    builder workspace limit, MiB
WORKSPACE ?=
#> OPT_LEVEL    builder optimisation level 0..5 (default 3)
OPT_LEVEL ?=
#> ENGINE_ARGS  any other `python -m export.build_engine` flag
ENGINE_ARGS ?=
#> VERIFY_ARGS  any other `python -m export.verify_engine` flag
VERIFY_ARGS ?=

# Python for the engine steps: the venv (default), or the container's own python3 (ENGINE_PY=python3), which needs
# neither the venv nor `make setup`; then the ONNX files must already be in build/ (run `make onnx` elsewhere).
ENGINE_USES_VENV := $(filter $(PY),$(ENGINE_PY))
ENGINE_RUN = $(if $(ENGINE_IS_RTX),$(RTX_ENV) )$(ENGINE_PY)
# TensorRT proper links the C++ plugin (plugin.mk builds it); TensorRT-RTX uses the stand-in unless ENGINE_PLUGIN
# is given on the command line.
ENGINE_PLUGIN_GIVEN := $(filter command line,$(origin ENGINE_PLUGIN))
ENGINE_PLUGIN_ARG = $(if $(or $(ENGINE_PLUGIN_GIVEN),$(if $(ENGINE_IS_RTX),,yes)),--plugin $(ENGINE_PLUGIN))
ENGINE_DEPS := $(if $(ENGINE_USES_VENV),$(ENGINE_ONNX) $(ENGINE_ONNX_FP32)) \
	$(if $(ENGINE_IS_RTX),,$(ENGINE_PLUGIN))
ENGINE_CLI_ARGS = --backend $(ENGINE_BACKEND) --onnx $(ENGINE_ONNX) --onnx-fp32 $(ENGINE_ONNX_FP32) \
	--out $(ENGINE_OUT) $(ENGINE_PLUGIN_ARG) $(if $(SIZE),--opt $(SIZE)) $(if $(MIN),--min $(MIN)) \
	$(if $(MAX),--max $(MAX)) $(if $(WORKSPACE),--workspace $(WORKSPACE)) $(if $(OPT_LEVEL),--opt-level $(OPT_LEVEL)) \
	$(ENGINE_ARGS)

#> VERIFY_DIR   where verify-reference records (default build/verify)
VERIFY_DIR       ?= $(BUILD)/verify
VERIFY_REFERENCE := $(VERIFY_DIR)/reference.json
GPU_PLAN         := model_repository/gpu/adnet/1/model.plan

.PHONY: engine verify-engine verify-reference engine-preflight gpu-serve-preflight

# Checked first (prerequisites are made in order), so that a machine without TensorRT stops with the fix instead of
# failing somewhere in the plugin build.
engine-preflight: $(if $(ENGINE_USES_VENV),$(STAMP) $(RTX_LINK))
	@$(ENGINE_RUN) -m export.trt_compat --require $(ENGINE_BACKEND)

engine: engine-preflight $(ENGINE_DEPS) ## FP16 engine + .json sidecar (GPU); ENGINE_BACKEND=rtx: CPU check; SIZE= MIN= MAX=
	$(ENGINE_RUN) -m export.build_engine $(ENGINE_CLI_ARGS)

verify-reference: $(VERIFY_REFERENCE) ## Record ONNX Runtime FP32 reference outputs for verify-engine (any machine)

# Every graph of the export: the recording lists their hashes, so verify-engine can tell that an engine belongs to it.
$(VERIFY_REFERENCE): $(STAMP) $(ONNX_FILES)
	$(PY) -m export.verify_engine --record --reference-onnx $(BUILD)/adnet.onnx --dir $(VERIFY_DIR)

verify-engine: engine-preflight $(if $(ENGINE_USES_VENV),$(VERIFY_REFERENCE)) ## Engine vs the recorded reference: errors, PSNR-mu >= 50 dB (GPU)
	$(ENGINE_RUN) -m export.verify_engine --engine $(ENGINE_OUT) --reference $(VERIFY_REFERENCE) \
		$(if $(ENGINE_PLUGIN_GIVEN),--plugin $(ENGINE_PLUGIN)) $(VERIFY_ARGS)

# Before `make serve GPU=1`: plugin, plan and TensorRT versions as Triton will see them; the load checks run in the
# release's TensorRT container when the host has docker and a GPU but no TensorRT.
gpu-serve-preflight: $(STAMP)
	$(PY) -m export.plugin_preflight --plan $(GPU_PLAN) --plugin $(ENGINE_PLUGIN) --docker
