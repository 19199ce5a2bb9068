# Model artifact image for the `gpu` overlay: the Triton model repository (config.pbtxt + the FP16 plan) and the
# AdnetDCNv2 plugin, which the pod's initContainer copies into an emptyDir. The plan and the plugin must come from
# TensorRT 10.5 (nvcr.io/nvidia/tensorrt:24.10-py3, see README "GPU hosts"), on the GPU model the pods run on.
# Build from the repository root after `make plugin engine`:
#
#   docker build -f deploy/docker/model.Dockerfile -t REGISTRY/adnet/adnet-model:0.1.0 .
#
# Not built where this project is developed and tested (no container engine, no GPU).
FROM busybox:1.36.1
COPY model_repository/gpu/adnet/config.pbtxt /artifacts/models/adnet/config.pbtxt
COPY model_repository/gpu/adnet/1/model.plan /artifacts/models/adnet/1/model.plan
COPY build/libadnet_plugins.so /artifacts/plugins/libadnet_plugins.so
USER 1000:1000
