# ADNet deployment pipeline. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

#> PYTHON_SYS   the Python that creates the venv (default python3; 3.10-3.13)
PYTHON_SYS ?= python3
#> VENV         the virtual environment `make setup` creates and every target uses (default .venv)
VENV       ?= .venv
PY         := $(VENV)/bin/python
# The venv's Python when it actually starts, else empty. A repository mounted into a container keeps the host's
# .venv, whose python is a symlink to an interpreter the container lacks: $(wildcard) still matches that dangling
# link, so the defaults below ask the interpreter to run instead (deferred: evaluated only where a default is used).
PY_IF_RUNS = $(shell test -x $(PY) && $(PY) -c '' 2>/dev/null && echo $(PY))
STAMP      := $(VENV)/.requirements.stamp
# TensorRT-RTX's ONNX parser dlopens libtensorrt_rtx.so (unversioned; the wheel ships only .so.1) and aborts the
# process without it: setup links it here, and Python must start with this folder on LD_LIBRARY_PATH.
RTX_LINK_DIR := $(VENV)/lib/tensorrt_rtx_links
RTX_LINK   := $(RTX_LINK_DIR)/libtensorrt_rtx.so
RTX_ENV    = LD_LIBRARY_PATH=$(abspath $(RTX_LINK_DIR))$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}
#> PYTEST_ARGS  extra pytest arguments for test / test-fast, e.g. "-k serving -x"
PYTEST_ARGS ?=

#> BUILD        folder of every build output (default build; `make clean` removes it)
BUILD      ?= build
#> CKPT         official ADNet checkpoint (.pth) to export; empty: seeded random weights. Remembered: given once,
#>                later make calls use it until you pass another (CKPT= goes back to random weights)
#> LDR_DTYPE    LDR input type of the export: uint8 (8-bit sources, default) or float16. Remembered like CKPT
# The chosen CKPT / LDR_DTYPE persist in build/params.mk: a value on the command line wins and is written back.
PARAMS_FILE := $(BUILD)/params.mk
-include $(PARAMS_FILE)
CKPT       ?=
LDR_DTYPE  ?= uint8
PARAMS_NOW = CKPT=$(or $(CKPT),(random weights)) LDR_DTYPE=$(LDR_DTYPE)
ifeq ($(filter $(LDR_DTYPE),uint8 float16),)
$(error LDR_DTYPE=$(LDR_DTYPE) is not uint8 or float16: pass LDR_DTYPE=uint8 or LDR_DTYPE=float16)
endif
ifneq ($(filter command line,$(origin CKPT) $(origin LDR_DTYPE)),)
$(shell mkdir -p $(BUILD) && printf 'CKPT := %s\nLDR_DTYPE := %s\n' '$(CKPT)' '$(LDR_DTYPE)' > $(PARAMS_FILE))
endif
EXPORT_SRC := $(addprefix export/,adnet.py dcn.py checkpoint.py errors.py pipeline.py to_onnx.py surgery.py) \
              client/contract.py client/hdr_math.py plugins/dcnv2/contract.py
EXPORT_ARGS = $(if $(CKPT),--checkpoint $(CKPT)) --ldr-dtype $(LDR_DTYPE)
# The exported pipeline graphs (standard DeformConv) and their surgered twins (AdnetDCNv2 nodes).
ONNX_FP32  := $(BUILD)/adnet.onnx
ONNX_FP16  := $(BUILD)/adnet_fp16.onnx
ONNX_PLUGIN_FP32 := $(BUILD)/adnet_dcn_plugin.onnx
ONNX_PLUGIN_FP16 := $(BUILD)/adnet_dcn_plugin_fp16.onnx
# The 16-bit twin served beside `adnet` (model adnet_16bit, LDR FP16): 16-bit sources keep their precision by default.
ONNX_16BIT := $(BUILD)/adnet_16bit.onnx
ONNX_FILES := $(ONNX_FP32) $(ONNX_FP16) $(ONNX_PLUGIN_FP32) $(ONNX_PLUGIN_FP16) $(ONNX_16BIT)

.PHONY: help setup setup-debian test test-fast demo clean onnx serve deploy-check FORCE

help: ## List the targets and every parameter
	@echo "Targets:"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo; echo "Parameters (make TARGET NAME=value; CKPT and LDR_DTYPE are remembered in $(PARAMS_FILE)):"
	@awk '/^#>   / {sub(/^#> +/, ""); printf "  %-18s %s\n", "", $$0; next} \
	  /^#> / {name = $$2; $$1 = ""; $$2 = ""; sub(/^ +/, ""); printf "  \033[33m%-18s\033[0m %s\n", name, $$0}' $(MAKEFILE_LIST)
	@$(if $(wildcard $(PARAMS_FILE)),echo; echo "Remembered now: $(PARAMS_NOW)")

setup: $(STAMP) $(RTX_LINK) setup-debian ## Create .venv with the pinned CPU dependencies, haproxy + promtool from Debian (idempotent)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@touch $@
	@echo "setup: $(VENV) is ready"

# Order-only: (re)made when missing or dangling, not whenever the stamp is newer than the library.
$(RTX_LINK): | $(STAMP)
	$(PY) -m export.trt_compat --link-rtx $(RTX_LINK_DIR)

# Debian packages for the deployment checks: HAProxy balances gRPC over local replicas (deploy/balancer), promtool
# (package prometheus; the server is not started) evaluates the autoscaling query. Installed when missing and apt-get
# can run as root; otherwise the tests that need them skip and say so.
DEBIAN_TOOLS := haproxy:haproxy promtool:prometheus
setup-debian:
	@missing=""; for pair in $(DEBIAN_TOOLS); do tool=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v $$tool >/dev/null || test -x /usr/sbin/$$tool || missing="$$missing $$pkg"; done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends $$missing >/dev/null || \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; } || \
	  { echo "setup: apt-get could not install$$missing"; exit 1; }; \
	  echo "setup: installed$$missing from Debian"; \
	else echo "setup: missing Debian packages$$missing and apt-get needs root: install them for the deployment checks"; fi

test: $(STAMP) $(RTX_LINK) ## Run the CPU test suite (includes real TensorRT-RTX engine builds)
	$(RTX_ENV) $(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) $(RTX_LINK) ## The unit tests only (no ADNet export, server or engine build): < 2 min
	$(RTX_ENV) $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

onnx: $(ONNX_FILES) ## Export ONNX (fp32 + fp16, the 16-bit twin) and the plugin graphs; CKPT=path (else random weights), LDR_DTYPE=uint8|float16

# Re-export when CKPT or LDR_DTYPE change, not only when sources do.
ONNX_ARGS_STAMP := $(BUILD)/.onnx-args
$(ONNX_ARGS_STAMP): FORCE
	@mkdir -p $(@D); echo '$(EXPORT_ARGS)' | cmp -s - $@ || echo '$(EXPORT_ARGS)' > $@

$(ONNX_FP32): ONNX_PRECISION := fp32
$(ONNX_FP16): ONNX_PRECISION := fp16
$(ONNX_FP32) $(ONNX_FP16): $(STAMP) $(EXPORT_SRC) $(CKPT) $(ONNX_ARGS_STAMP)
	$(PY) -m export.to_onnx $(EXPORT_ARGS) --precision $(ONNX_PRECISION) --out $@

$(ONNX_16BIT): $(STAMP) $(EXPORT_SRC) $(CKPT) $(ONNX_ARGS_STAMP)
	$(PY) -m export.to_onnx $(if $(CKPT),--checkpoint $(CKPT)) --ldr-dtype float16 --precision fp32 --out $@

ifneq ($(CKPT),)
$(CKPT):
	@echo "error: CKPT=$(CKPT) not found: pass the path of the official checkpoint, or CKPT= for random weights" >&2; exit 1
endif

$(ONNX_PLUGIN_FP32): $(ONNX_FP32)
$(ONNX_PLUGIN_FP16): $(ONNX_FP16)
$(ONNX_PLUGIN_FP32) $(ONNX_PLUGIN_FP16):
	$(PY) -m export.surgery $< $@

#> HOST         listen address of `make serve` (default 127.0.0.1; beyond loopback clients need the token)
HOST       ?= 127.0.0.1
#> GRPC_PORT    gRPC port of serve / demo (default 8001; a busy port is refused)
GRPC_PORT  ?= 8001
#> HTTP_PORT    HTTP port of serve / demo (default 8000)
HTTP_PORT  ?= 8000
#> METRICS_PORT Prometheus metrics port of serve / demo (default 8002)
METRICS_PORT ?= 8002
#> GPU          GPU=1: `make serve` runs the plugin pre-flight and prints/runs the NGC Triton command
#> HEALTH_PORT  the server manager's health port: GET /ready (a recent canary inference passed), /live (default 8003)
HEALTH_PORT ?= 8003
#> ADMIN_TOKEN_FILE file holding the restricted endpoints' token for `make serve` (default: one is generated)
ADMIN_TOKEN_FILE ?=
SERVE_ARGS = --host $(HOST) --grpc-port $(GRPC_PORT) --http-port $(HTTP_PORT) --metrics-port $(METRICS_PORT) \
	--health-port $(HEALTH_PORT) $(if $(ADMIN_TOKEN_FILE),--admin-token-file $(ADMIN_TOKEN_FILE))

#> REPLICAS     REPLICAS=N (N > 1): `make serve` runs N CPU replicas behind HAProxy on GRPC_PORT (only gRPC is
#>              balanced; model_repository/replicas.py)
REPLICAS   ?= 1
#> REPLICA_PORT replica i listens on REPLICA_PORT + 4i .. + 4i + 3 (HTTP, gRPC, metrics, health; default 8100)
REPLICA_PORT ?= 8100
MULTI_REPLICA = $(filter-out 0 1,$(REPLICAS))

serve: $(STAMP) $(if $(GPU),gpu-serve-preflight,$(ONNX_FP32) $(ONNX_16BIT)) ## Serve `adnet` (+ its 16-bit twin adnet_16bit on CPU) with Triton: CPU (default, supervised, /ready on HEALTH_PORT) until Ctrl-C; ADMIN_TOKEN_FILE=; REPLICAS=3: three behind HAProxy; GPU=1: plugin pre-flight, then prints/runs the NGC command
ifneq ($(and $(MULTI_REPLICA),$(if $(GPU),,1)),)
	$(PY) -m model_repository.replicas --onnx $(BUILD)/adnet.onnx --replicas $(REPLICAS) \
		--first-port $(REPLICA_PORT) --host $(HOST) --grpc-port $(GRPC_PORT)
else
	$(PY) -m model_repository.server $(SERVE_ARGS) --onnx $(BUILD)/adnet.onnx $(if $(GPU),--gpu --preflight-done)
endif

demo: $(STAMP) $(ONNX_FP32) $(ONNX_16BIT) ## CPU demo: export, start Triton, run the client on client/samples -> out/, stop
	$(PY) -m model_repository.demo --onnx $(BUILD)/adnet.onnx --out out \
		--grpc-port $(GRPC_PORT) --http-port $(HTTP_PORT) --metrics-port $(METRICS_PORT)

deploy-check: $(STAMP) ## Render the Kubernetes overlays (kubectl kustomize) and validate them strictly, offline
	$(PY) -m deploy.check

clean: ## Remove build outputs and the remembered CKPT / LDR_DTYPE (keeps .venv)
	rm -rf build out .pytest_cache

# Plugin build rules (kernels, CPU twin, TensorRT plugin) live beside the plugin sources.
include plugins/dcnv2/dcnv2.mk
include plugins/dcnv2/plugin.mk

# Engine build and verification (TensorRT on GPU hosts, TensorRT-RTX on CPU-only CI).
include export/engine.mk

# Benchmarks (latency, serving, accuracy; `make bench QUICK=1` on a CPU).
include benchmarks/bench.mk

# First contact with a GPU machine (kernels, correctness, speed, whole ADNet in PyTorch): `make gpu-check`.
include benchmarks/gpu/gpu_check.mk
