"""Everything that can run the ADNet pipeline, behind one small interface.

A backend takes the public contract's inputs (LDR [1, 3, H, W, 3], EV [1, 3]) and returns linear HDR, so that
latency and accuracy are measured on exactly what a client gets:

    prepared = backend.prepare(frames)    # inputs placed where the backend reads them (GPU memory for CUDA ones)
    backend.run(prepared[i])              # one inference; CUDA backends may return before the GPU is done
    backend.synchronize()                 # wait for the device
    backend.infer(frame) -> [H, W, 3]     # one inference, host numpy out (accuracy)

`timer` says how latency is taken: "cuda-events" (device time between two events around run(), inputs and output
in GPU memory) or "wall" (host clock around a synchronous call, host copies included).

`available_backends()` builds every backend this machine can run and returns, for each one it cannot, the reason.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

import numpy as np

from client import contract
from benchmarks.inputs import Frame

__all__ = ["Backend", "TorchPipeline", "OnnxRuntime", "TensorRTEngine", "TritonGrpc", "Unavailable",
           "torch_cuda_reason", "ort_cuda_reason", "tensorrt_reason", "PYTORCH_FP32_CPU", "PYTORCH_FP32_CUDA"]

PYTORCH_FP32_CPU = "pytorch-fp32-cpu"
PYTORCH_FP32_CUDA = "pytorch-fp32-cuda"


class Unavailable(Exception):
    """A backend cannot run on this machine; the message says why and what would make it run."""


class Backend:
    name = "backend"       # stable identifier (CSV, JSON, plots)
    label = "backend"      # human-readable
    device = "cpu"         # "cpu" | "cuda"
    precision = "fp32"     # compute precision of the network
    timer = "wall"         # "wall" | "cuda-events"
    note = ""              # anything a reader of the numbers must know

    def prepare(self, frames: list[Frame]) -> list[Any]:
        return [(f.ldr, f.ev) for f in frames]

    def run(self, prepared: Any) -> Any:
        raise NotImplementedError

    def synchronize(self) -> None:
        pass

    def infer(self, frame: Frame) -> np.ndarray:
        raise NotImplementedError

    def release(self) -> None:
        """Drop per-size buffers (GPU memory) between sizes."""

    def unsupported(self, h: int, w: int) -> Optional[str]:
        """Why this backend cannot run an H x W frame (recorded as a skipped row), or None."""
        return None

    def close(self) -> None:
        self.release()

    def describe(self) -> dict:
        return {"name": self.name, "label": self.label, "device": self.device, "precision": self.precision,
                "timer": self.timer, "note": self.note}


# ---- PyTorch eager ---------------------------------------------------------------------------------------------

def torch_cuda_reason() -> Optional[str]:
    """None when torch sees a CUDA GPU, else why not."""
    import torch

    if torch.version.cuda is None:
        return (f"torch {torch.__version__} is a CPU-only build (the pinned .venv); run with a CUDA build of torch, "
                f"e.g. `make bench BENCH_PY=/path/to/python-with-cuda-torch`")
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is False)"
    return None


class TorchPipeline(Backend):
    """export.pipeline.ADNetPipeline in eager mode: the reference implementation (FP32) and PyTorch FP16 (GPU)."""

    def __init__(self, net, device: str = "cpu", precision: str = "fp32"):
        import torch

        from export.pipeline import ADNetPipeline

        if device == "cuda":
            reason = torch_cuda_reason()
            if reason:
                raise Unavailable(reason)
        if device == "cpu" and precision != "fp32":
            raise Unavailable("PyTorch FP16 eager is measured on GPUs only (CPU half-precision convolutions are "
                              "emulated and not a deployment target)")
        self.torch = torch
        dtype = {"fp32": torch.float32, "fp16": torch.float16}[precision]
        # ADNetPipeline casts the network it is given in place: each backend gets its own copy.
        self.model = ADNetPipeline(copy.deepcopy(net).float(), dtype).eval().to(device)
        self.device, self.precision = device, precision
        self.name = f"pytorch-{precision}-{device}"
        self.label = f"PyTorch eager {precision.upper()} ({'GPU' if device == 'cuda' else 'CPU'})"
        self.timer = "cuda-events" if device == "cuda" else "wall"
        if device == "cuda":
            self.note = (f"cuDNN TF32 for convolutions: {torch.backends.cudnn.allow_tf32} (torch default)"
                         if precision == "fp32" else "")
        else:
            self.note = f"{torch.get_num_threads()} threads"

    def prepare(self, frames):
        t = self.torch
        return [(t.from_numpy(f.ldr).to(self.device), t.from_numpy(f.ev).to(self.device)) for f in frames]

    def run(self, prepared):
        with self.torch.inference_mode():
            return self.model(*prepared)

    def synchronize(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def infer(self, frame):
        out = self.run(self.prepare([frame])[0])
        return out[0].float().cpu().numpy()

    def release(self):
        if self.device == "cuda":
            self.torch.cuda.empty_cache()


# ---- ONNX Runtime ----------------------------------------------------------------------------------------------

def ort_cuda_reason() -> Optional[str]:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return (f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (providers: "
                f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu on the GPU host")
    return None


class OnnxRuntime(Backend):
    """An ONNX graph of the pipeline in ONNX Runtime: CPU EP (the Triton CPU model's settings: intra-op threads =
    cores, one inter-op thread), CUDA EP, or the surgered graph with its AdnetDCNv2 nodes on the plugin's CPU twin."""

    def __init__(self, path: Path, *, provider: str = "cpu", name: str, label: str, precision: str = "fp32"):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise Unavailable(f"{path} not found: export it with `make onnx`")
        self.name, self.label, self.precision = name, label, precision
        self.device = "cuda" if provider == "cuda" else "cpu"
        if provider == "twin":
            from export import ort_plugin

            self.session = ort_plugin.session(path)
            self.note = "AdnetDCNv2 nodes run on the plugin's C++ CPU twin through a Python custom op"
        else:
            options = ort.SessionOptions()
            options.inter_op_num_threads = 1  # as model_repository/cpu/adnet/1/model.py
            if provider == "cuda":
                reason = ort_cuda_reason()
                if reason:
                    raise Unavailable(reason)
                providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
            else:
                providers = ["CPUExecutionProvider"]
            self.session = ort.InferenceSession(str(path), options, providers=providers)
            used = self.session.get_providers()
            if provider == "cuda" and used[0] != "CUDAExecutionProvider":
                raise Unavailable(f"onnxruntime did not enable the CUDA EP for {path} (got {used})")
            self.note = ("host inputs/outputs; nodes the CUDA EP lacks (e.g. DeformConv) fall back to the CPU"
                         if provider == "cuda" else f"ONNX Runtime {ort.__version__}, CPU EP")
        self.ldr_dtype = {"tensor(uint8)": "uint8", "tensor(float16)": "float16"}.get(
            {i.name: i.type for i in self.session.get_inputs()}.get(contract.INPUT_LDR), "uint8")

    def prepare(self, frames):
        return [{contract.INPUT_LDR: f.ldr, contract.INPUT_EV: f.ev} for f in frames]

    def run(self, prepared):
        return self.session.run(None, prepared)[0]

    def infer(self, frame):
        return self.run(self.prepare([frame])[0])[0]


# ---- TensorRT --------------------------------------------------------------------------------------------------

def tensorrt_reason() -> Optional[str]:
    """None when TensorRT proper and a GPU are usable in this process, else why not."""
    from export import trt_compat
    from export.errors import PipelineError

    try:
        trt_compat.load("tensorrt")
        trt_compat.require_gpu()
    except (PipelineError, ImportError) as exc:
        return " ".join(str(exc).split()).split(", e.g.")[0]  # without the multi-line docker example
    return None


class TensorRTEngine(Backend):
    """A pipeline plan (export.engine_runner checks its sidecar, loads the plugin library and deserialises it).
    With a CUDA build of torch, inputs and output live in GPU memory and CUDA events time execute_async_v3 alone, on
    an execution context of its own (the runner's Polygraphy TrtRunner keeps its own for infer); otherwise
    EngineRunner.infer is timed on the host (copies included). `unsupported_sizes`: {"HxW": reason} this engine
    cannot run (e.g. the built-in DeformConv's workspace overflow)."""

    def __init__(self, plan: Path, *, name: str, label: str, note: str = "",
                 unsupported_sizes: Optional[dict] = None):
        reason = tensorrt_reason()
        if reason:
            raise Unavailable(reason)
        plan = Path(plan)
        if not plan.is_file():
            raise Unavailable(f"{plan} not found: build it on this GPU host (`make plugin engine`)")
        from export.engine_runner import EngineRunner

        self.runner = EngineRunner(plan)
        self.name, self.label, self.device, self.precision = name, label, "cuda", "fp16"
        self.note = note
        self.unsupported_sizes = dict(unsupported_sizes or {})
        self.torch = None
        self.context = None
        try:
            import torch

            if torch.cuda.is_available():
                self.torch = torch
                self.context = self.runner.engine.create_execution_context()
        except ImportError:
            pass
        self.timer = "cuda-events" if self.torch else "wall"
        self.ldr_dtype = str(self.runner.dtype(contract.INPUT_LDR))

    def unsupported(self, h, w):
        reason = self.unsupported_sizes.get(f"{h}x{w}")
        if reason:
            return reason
        lo, _, hi = self.runner.profile(contract.INPUT_LDR)
        if not (lo[2] <= h <= hi[2] and lo[3] <= w <= hi[3]):
            return f"{h}x{w} is outside the engine's profile ({lo[2]}x{lo[3]} .. {hi[2]}x{hi[3]})"
        return None

    def prepare(self, frames):
        if self.torch is None:
            return [(f.ldr, f.ev) for f in frames]
        t = self.torch
        return [(t.from_numpy(f.ldr).cuda(), t.from_numpy(f.ev).cuda()) for f in frames]

    def run(self, prepared):
        if self.torch is None:
            return self.runner.infer(*prepared)
        ldr, ev = prepared
        ctx = self.context
        ctx.set_input_shape(contract.INPUT_LDR, tuple(ldr.shape))
        ctx.set_input_shape(contract.INPUT_EV, tuple(ev.shape))
        out = self.torch.empty(tuple(ctx.get_tensor_shape(contract.OUTPUT_HDR)), dtype=self.torch.float32,
                               device="cuda")
        ctx.set_tensor_address(contract.INPUT_LDR, ldr.data_ptr())
        ctx.set_tensor_address(contract.INPUT_EV, ev.data_ptr())
        ctx.set_tensor_address(contract.OUTPUT_HDR, out.data_ptr())
        if not ctx.execute_async_v3(self.torch.cuda.current_stream().cuda_stream):
            raise RuntimeError(f"{self.name}: execute_async_v3 failed")
        return out

    def synchronize(self):
        if self.torch is not None:
            self.torch.cuda.synchronize()

    def infer(self, frame):
        return self.runner.infer(frame.ldr, frame.ev)[0]

    def release(self):
        if self.torch is not None:
            self.torch.cuda.empty_cache()

    def close(self):
        self.release()
        self.runner.close()


# ---- Triton (accuracy through the server) ----------------------------------------------------------------------

class TritonGrpc(Backend):
    """The served model through plain gRPC (tritonclient.grpc), for the accuracy part."""

    def __init__(self, url: str, *, name: str = "triton-cpu", label: str = "Triton (python backend + ORT, CPU)"):
        import tritonclient.grpc as grpcclient

        self.grpc = grpcclient
        self.client = grpcclient.InferenceServerClient(url)
        self.name, self.label = name, label
        self.note = f"gRPC {url}"

    def infer(self, frame):
        from tritonclient.utils import np_to_triton_dtype

        g = self.grpc
        inputs = [g.InferInput(contract.INPUT_LDR, list(frame.ldr.shape), np_to_triton_dtype(frame.ldr.dtype)),
                  g.InferInput(contract.INPUT_EV, list(frame.ev.shape), "FP32")]
        inputs[0].set_data_from_numpy(frame.ldr)
        inputs[1].set_data_from_numpy(frame.ev)
        result = self.client.infer(contract.MODEL_NAME, inputs,
                                   outputs=[g.InferRequestedOutput(contract.OUTPUT_HDR)], client_timeout=600)
        return result.as_numpy(contract.OUTPUT_HDR)[0]

    def close(self):
        self.client.close()

