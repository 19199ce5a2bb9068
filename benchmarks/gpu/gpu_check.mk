# gpu-check (benchmarks/gpu/), included by the top-level Makefile.
#
#   make gpu-check                      GPU box: env, build, correctness, sanitizer, kernel speed, whole ADNet
#                                       (about 7 minutes on an H100); without a GPU: env + build, the rest skipped
#   python -m benchmarks.gpu            the same without make (the build phase needs make, or a built library)
#
# Variables: GPU_PY=python with a CUDA build of torch (default: the venv if there is one, else python3; the venv's
# torch is CPU-only), GPU_CHECK_OUT=results folder (default benchmarks/results; build/gpucheck when no GPU phase ran),
# GPU_CHECK_ARGS (e.g. "--phases env,build,correctness").

#> GPU_PY       Python of gpu-check: one with a CUDA build of torch (default the venv, else python3)
GPU_PY        ?= $(or $(PY_IF_RUNS),python3)
#> GPU_CHECK_OUT gpu-check results folder (default benchmarks/results; build/gpucheck when no GPU phase ran)
GPU_CHECK_OUT ?=
#> GPU_CHECK_ARGS e.g. "--phases env,build,correctness"
GPU_CHECK_ARGS ?=

.PHONY: gpu-check

gpu-check: ## First contact with a GPU box: kernels, correctness, sanitizer, speed, ADNet -> benchmarks/results (GPU_PY=)
	$(GPU_PY) -m benchmarks.gpu $(if $(GPU_CHECK_OUT),--out $(GPU_CHECK_OUT)) $(GPU_CHECK_ARGS)
