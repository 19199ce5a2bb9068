# CPU image of the ADNet service (the `cpu` overlay): the stack `make serve` runs, i.e. Python 3.11.7 (this
# project's interpreter), the tritonserver 2.51 binary and python backend from nvidia-pytriton 0.7.0, ONNX Runtime
# 1.32 and the server manager, with the pipeline ONNX baked in. Build from the repository root after `make onnx`:
#
#   make onnx CKPT=/path/to/best_checkpoint.pth
#   docker build -f deploy/docker/cpu.Dockerfile -t REGISTRY/adnet/adnet-triton-cpu:0.1.0 .
#
# No container engine runs where this project is developed and tested: this file has not been built there.
# tests/deploy/test_manifests.py checks what it can: the pins come from requirements.txt, the paths and user match
# the cpu overlay. Pin the base image by digest in your own build (FROM python:3.11.7-slim-bookworm@sha256:...).
FROM python:3.11.7-slim-bookworm

# What `ldd` lists outside the wheels' own bundled libraries (tritonserver, the python backend stub, ONNX Runtime,
# OpenCV).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libexpat1 libstdc++6 zlib1g \
 && rm -rf /var/lib/apt/lists/*

# uid/gid 1000: the pod's securityContext (runAsNonRoot).
RUN groupadd --gid 1000 adnet && useradd --uid 1000 --gid 1000 --no-create-home --shell /usr/sbin/nologin adnet

# The serving subset of requirements.txt at its exact pins: no torch, no export or engine stack. The manager
# imports the client library (channel arguments, the canary), which brings tqdm and OpenCV (image I/O).
COPY requirements.txt /tmp/requirements.txt
RUN grep -E '^(numpy|protobuf|onnx|onnxruntime|tritonclient\[grpc\]|setuptools|nvidia-pytriton|tqdm|opencv-python-headless)==' \
        /tmp/requirements.txt > /tmp/serve-requirements.txt \
 && pip install --no-cache-dir --disable-pip-version-check -r /tmp/serve-requirements.txt \
 && rm /tmp/requirements.txt /tmp/serve-requirements.txt

WORKDIR /opt/adnet
COPY client/ client/
COPY model_repository/ model_repository/
COPY build/adnet.onnx model/adnet.onnx

# The root filesystem is read-only in the pod: no bytecode caches; the manager stages into /opt/adnet/build (an
# emptyDir there).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 1000:1000
EXPOSE 8000 8001 8002 8003
CMD ["python", "-m", "model_repository.server", "--host", "0.0.0.0", "--onnx", "/opt/adnet/model/adnet.onnx"]
